"""Review R-I: no operation declared the `ETag` response header in the OpenAPI document,
yet `If-Match` asks clients to send one back (a generated client could not read it).
Now each operation that sends an ETag declares it on its success responses, and no other
does: the operations below are every one that sends it (a conversation's: create, get,
PATCH, fork, import, head moves; media's: download and its HEAD), each checked against
what it actually sends, and a few that send none against their declaration."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests import media_samples as samples
from tests.api.openapi_rules import committed_document, operations
from tests.conftest import make_settings, running_app

BODY = {"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "u"}
CONV = "/conversations/{conversation_id}"


def _declared(doc: dict[str, object], method: str, path: str, status: int) -> bool:
    op = doc["paths"][path][method]  # type: ignore[index]
    return "ETag" in op["responses"][str(status)].get("headers", {})


async def test_the_operations_that_send_an_etag_declare_it_and_no_other_does(
    tmp_path: Path,
) -> None:
    doc = committed_document()
    sent: dict[tuple[str, str], httpx.Response] = {}
    async with running_app(make_settings(tmp_path)) as c:
        r = await c.post("/conversations", json={**BODY, "conversation_id": "et"})
        sent["post", "/conversations"] = r
        cid = r.json()["id"]
        one = f"/conversations/{cid}"
        sent["get", CONV] = await c.get(one)
        sent["patch", CONV] = await c.patch(one, json={"metadata": {"a": "1"}})
        r = await c.post(f"{one}/messages", json={"content": "hi"})
        sent["post", CONV + "/messages"] = r
        user_id = r.json()["messages"][0]["id"]
        sent["post", CONV + "/rollback"] = await c.post(
            f"{one}/rollback", json={"message_id": user_id}
        )
        sent["put", CONV + "/head"] = await c.put(f"{one}/head", json={"message_id": user_id})
        sent["post", CONV + "/checkpoints"] = await c.post(f"{one}/checkpoints", json={})
        sent["post", CONV + "/fork"] = await c.post(
            f"{one}/fork", json={"conversation_id": "et-fork"}
        )
        r = await c.get(f"{one}/export")
        sent["get", CONV + "/export"] = r
        sent["post", "/conversations/import"] = await c.post(
            "/conversations/import", params={"conversation_id": "et-import"}, json=r.json()
        )
        png = samples.png_of_size(1000)
        r = await c.post(
            "/media", params={"user_id": "u"}, files={"file": ("a.png", png, "image/png")}
        )
        sent["post", "/media"] = r
        media = f"/media/{r.json()['media_id']}"
        sent["get", "/media/{media_id}"] = await c.get(media)
        sent["head", "/media/{media_id}"] = await c.head(media)

    for (method, path), r in sent.items():
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        assert ("etag" in r.headers) == _declared(doc, method, path, r.status_code), (
            f"{method.upper()} {path}: sends ETag {r.headers.get('etag')!r}, declares "
            f"{_declared(doc, method, path, r.status_code)}"
        )
    declaring = {
        (method, path)
        for path, method, op in operations(doc)
        for status, response in op["responses"].items()
        if status[0] == "2" and "ETag" in response.get("headers", {})
    }
    assert declaring == {key for key, r in sent.items() if "etag" in r.headers}
