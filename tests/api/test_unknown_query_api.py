"""A query parameter the operation does not take is a 422 naming it, as an unknown body
field is (outside tester T8: `?userid=alice`, a typo of `user_id`, was ignored and the
listing was every user's; `?metadata.=1` was dropped silently)."""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import assert_problem, create_conv


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/conversations", {"userid": "alice"}),
        ("/conversations", {"user_id": "alice", "prefx": "zzz"}),
        ("/conversations", {"metadata.": "1"}),
        ("/packs", {"limitt": "5"}),
    ],
)
async def test_unknown_query_parameters_are_refused(
    client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    r = await client.get(path, params=params)
    body = assert_problem(r, 422, "validation_error")
    bad = [e["loc"] for e in body["errors"]]
    assert bad == [["query", k] for k in params if k not in ("user_id",)]


async def test_declared_and_prefixed_parameters_still_work(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client, metadata={"channel": "web"})
    r = await client.get(
        "/conversations", params={"user_id": conv["user_id"], "metadata.channel": "web"}
    )
    assert r.status_code == 200 and [c["id"] for c in r.json()["data"]] == [conv["id"]]
    r = await client.get(f"/conversations/{conv['id']}/messages", params={"after": "x"})
    assert_problem(r, 422, "validation_error")  # the parameter is `before`
    r = await client.get(f"/conversations/{conv['id']}/messages", params={"limit": 5})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("path", "query", "repeated"),
    [
        ("/conversations", "user_id=alice&user_id=bob", ["user_id"]),
        ("/conversations", "limit=1&user_id=bob&limit=5", ["limit"]),
        ("/conversations", "metadata.a=1&metadata.a=2", ["metadata.a"]),
        ("/packs", "limit=1&limit=2", ["limit"]),
    ],
)
async def test_a_repeated_query_parameter_is_refused(
    client: httpx.AsyncClient, path: str, query: str, repeated: list[str]
) -> None:
    """`?user_id=alice&user_id=bob` listed bob's conversations (FastAPI takes the last)
    while a gateway checking the first saw alice's: refused, like a repeated JSON key."""
    await create_conv(client, user_id="alice")
    await create_conv(client, user_id="bob")
    r = await client.get(f"{path}?{query}")
    body = assert_problem(r, 422, "validation_error")
    assert [e["loc"] for e in body["errors"]] == [["query", k] for k in repeated]
