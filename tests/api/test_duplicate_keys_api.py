"""A JSON body naming one key twice in an object is a 422 `validation_error`, nothing
stored (outside tester T2: the last one silently won, so `{"stream": true, "stream": false}`
was non-streaming and a proxy reading the first key saw another request)."""

from __future__ import annotations

import httpx

from tests.api.helpers import assert_problem, create_conv

JSON = {"content-type": "application/json"}


async def test_duplicate_keys_are_refused_anywhere_in_a_body(client: httpx.AsyncClient) -> None:
    cid = (await create_conv(client))["id"]
    url = f"/conversations/{cid}/messages"
    for body in (
        b'{"content": "first", "content": "second"}',
        b'{"content": "x", "stream": true, "stream": false}',
        b'{"content": "x", "metadata": {"a": 1, "b": 2, "a": 3}}',
    ):
        problem = assert_problem(
            await client.post(url, content=body, headers=JSON), 422, "validation_error"
        )
        assert (
            problem["errors"][0]["loc"] == ["body"]
            and "duplicate key" in problem["errors"][0]["msg"]
        )
    assert (await client.get(f"/conversations/{cid}")).json()["message_count"] == 0
    body = (
        b'{"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "a", "user_id": "b"}'
    )
    assert_problem(
        await client.post("/conversations", content=body, headers=JSON), 422, "validation_error"
    )
    r = await client.post(
        url, content=b'{"content": "x", "metadata": {"a": {"a": 1}}}', headers=JSON
    )
    assert r.status_code == 200, r.text  # the same key in different objects is fine
