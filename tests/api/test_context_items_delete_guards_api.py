"""Delete-all of context items cannot be reached by mistake (found by the outside tester).

`DELETE /conversations/{id}/context/items/` (the one-item
path with an empty item id, e.g. a client's unset variable) answers 307 with Location
`.../context/items`, the delete-every-item endpoint added this session (a43990b). A 307
keeps the method, so a client that follows redirects (curl -L, python-requests by
default, httpx follow_redirects=True) deletes every context item of the conversation.

Expected: the empty-id path is a 404/405/422 problem and deletes nothing. And
`DELETE .../context/items` with a body of fields (`{"ids": [...]}`, a selective delete
that does not exist) is 422 validation_error, nothing deleted.
"""

from __future__ import annotations

from pathlib import Path

from tests.api.helpers import create_conv
from tests.conftest import make_settings, running_app


async def test_delete_of_an_empty_item_id_deletes_no_item(tmp_path: Path) -> None:
    async with running_app(make_settings(tmp_path)) as client:
        cid = (await create_conv(client))["id"]
        for text in ("one", "two"):
            r = await client.post(f"/conversations/{cid}/context", json={"content": text})
            assert r.status_code == 201, r.text
        item_id = ""  # a caller's unset variable
        r = await client.delete(
            f"/conversations/{cid}/context/items/{item_id}", follow_redirects=True
        )
        left = (await client.get(f"/conversations/{cid}/context/items")).json()["data"]
        assert len(left) == 2, f"{r.status_code} after {r.history}: every item deleted"
        assert r.status_code == 404 and r.history == []
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_delete_all_items_with_a_body_of_ids_deletes_nothing(tmp_path: Path) -> None:
    async with running_app(make_settings(tmp_path)) as client:
        cid = (await create_conv(client))["id"]
        ids = []
        for text in ("one", "two"):
            r = await client.post(f"/conversations/{cid}/context", json={"content": text})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        r = await client.request(
            "DELETE", f"/conversations/{cid}/context/items", json={"ids": ids[:1]}
        )
        left = (await client.get(f"/conversations/{cid}/context/items")).json()["data"]
        assert (r.status_code, len(left)) == (422, 2), r.text
        assert r.json()["code"] == "validation_error"
        r = await client.request("DELETE", f"/conversations/{cid}/context/items", json={})
        assert r.status_code == 204  # an empty object is no fields: delete-all as without
        assert (await client.get(f"/conversations/{cid}/context/items")).json()["data"] == []
