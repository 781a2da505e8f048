"""`If-Match` was evaluated only by PATCH /conversations/{id} (tester-2 U1): a DELETE, a
PUT .../head or a rollback guarded with a stale ETag, or one of a deleted conversation
created again under the id, went through. RFC 9110 §13.1.1: the method is not performed
when the field is false. Now 412 `precondition_failed` there too, nothing changed; a
current ETag (or `*`) still performs it. On every backend."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.api.backends import ALL_BACKENDS, app_on
from tests.api.helpers import assert_problem
from tests.conftest import make_settings

BODY = {
    "pack_id": "general-assistant",
    "prompt_name": "chat",
    "user_id": "ifm",
    "conversation_id": "ifm-x",
}
CONV = "/conversations/ifm-x"


async def _create(client: httpx.AsyncClient) -> str:
    r = await client.post("/conversations", json=BODY)
    assert r.status_code == 201, r.text
    return r.headers["etag"]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_false_if_match_refuses_delete_head_move_and_rollback(
    backend: str, tmp_path: Path
) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        stale = await _create(client)
        r = await client.post(f"{CONV}/messages", json={"content": "hello"})
        assert r.status_code == 200, r.text
        user_id = r.json()["messages"][0]["id"]
        current = (await client.get(CONV)).headers["etag"]
        assert current != stale
        before = (await client.get(CONV)).json()

        for r in (
            await client.delete(CONV, headers={"If-Match": stale}),
            await client.put(
                f"{CONV}/head", json={"message_id": user_id}, headers={"If-Match": stale}
            ),
            await client.post(
                f"{CONV}/rollback", json={"message_id": user_id}, headers={"If-Match": stale}
            ),
            await client.delete(CONV, headers={"If-Match": '"999.000000000000"'}),
        ):
            assert_problem(r, 412, "precondition_failed")
        assert (await client.get(CONV)).json() == before

        r = await client.put(
            f"{CONV}/head", json={"message_id": user_id}, headers={"If-Match": current}
        )
        assert r.status_code == 200, r.text
        r = await client.post(
            f"{CONV}/rollback", json={"message_id": user_id}, headers={"If-Match": "*"}
        )
        assert r.status_code == 200, r.text
        r = await client.delete(CONV, headers={"If-Match": current})  # stale since the move
        assert_problem(r, 412, "precondition_failed")
        latest = (await client.get(CONV)).headers["etag"]
        assert (await client.delete(CONV, headers={"If-Match": latest})).status_code == 204


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_an_if_match_of_a_deleted_conversation_does_not_delete_its_successor(
    backend: str, tmp_path: Path
) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        old = await _create(client)
        assert (await client.delete(CONV, headers={"If-Match": old})).status_code == 204
        new = await _create(client)
        assert new != old
        assert_problem(
            await client.delete(CONV, headers={"If-Match": old}), 412, "precondition_failed"
        )
        assert (await client.get(CONV)).status_code == 200
        assert (await client.delete(CONV, headers={"If-Match": new})).status_code == 204
