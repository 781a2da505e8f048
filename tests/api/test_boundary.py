"""Bad input at the boundary: the documented 4xx, nothing stored, on every store backend.

One app per backend runs the whole matrix; after it, listing still shows only the
conversations created on purpose and the sentinel conversation reads back byte-identical.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from app.api.guard import GuardedRoute
from app.domain.limits import MAX_JSON_DEPTH, MAX_TTL_S, METADATA_LIMITS
from app.main import create_app
from tests.api.backends import BACKENDS, app_on
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import make_settings

SURROGATE = "a\ud83d"
NUL = "a\x00b"


def raw_json(value: Any) -> bytes:
    """JSON with escapes kept as escapes (`\\ud83d` travels as six ASCII bytes)."""
    return json.dumps(value, ensure_ascii=True).encode()


async def post_raw(
    client: httpx.AsyncClient, url: str, body: Any, method: str = "POST"
) -> httpx.Response:
    return await client.request(
        method, url, content=raw_json(body), headers={"content-type": "application/json"}
    )


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"k": value}
    return value


CREATE = {"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "carol"}

# (what is wrong, body of POST /conversations, expected status, expected code)
BAD_CREATES: list[tuple[str, dict[str, Any], int, str]] = [
    *[
        (f"{label} in {field}", {**CREATE, field: value}, 422, "validation_error")
        for label, text in (("surrogate", SURROGATE), ("nul", NUL))
        for field, value in (
            ("metadata", {"k": text}),
            ("variables", {"user_name": text}),
            ("system_prompt", text),
            ("user_id", text),
            ("conversation_id", text),
            ("prompt_name", text),
            ("model", text),
        )
    ],
    (
        "surrogate in a metadata key",
        {**CREATE, "metadata": {SURROGATE: 1}},
        422,
        "validation_error",
    ),
    ("nul in a metadata key", {**CREATE, "metadata": {NUL: 1}}, 422, "validation_error"),
    ("huge ttl", {**CREATE, "ttl_seconds": 300_000_000_000}, 422, "validation_error"),
    ("ttl over the maximum", {**CREATE, "ttl_seconds": MAX_TTL_S + 1}, 422, "validation_error"),
    ("huge int", {**CREATE, "metadata": {"n": 2**64}}, 422, "validation_error"),
    (
        "huge policy",
        {**CREATE, "context_policy": {"max_input_tokens": 2**40}},
        422,
        "validation_error",
    ),
    ("user id with a slash", {**CREATE, "user_id": "a/b"}, 422, "validation_error"),
    *[
        (f"conversation id {cid!r}", {**CREATE, "conversation_id": cid}, 422, "validation_error")
        for cid in (".", "..", ".hidden", "a/b", "", "x" * 201)
    ],
    (
        "sliding_window without max_messages",
        {**CREATE, "context_policy": {"strategy": "sliding_window"}},
        422,
        "validation_error",
    ),
    (
        "max_messages without sliding_window",
        {**CREATE, "context_policy": {"strategy": "truncate_oldest", "max_messages": 4}},
        422,
        "validation_error",
    ),
    (
        "too many metadata keys",
        {**CREATE, "metadata": {f"k{i}": i for i in range(METADATA_LIMITS.max_keys + 1)}},
        422,
        "validation_error",
    ),
    ("metadata key too long", {**CREATE, "metadata": {"k" * 129: 1}}, 422, "validation_error"),
    (
        "metadata too big",
        {**CREATE, "metadata": {"k": "x" * (METADATA_LIMITS.max_bytes + 1)}},
        422,
        "validation_error",
    ),
    (
        "metadata too deep",
        {**CREATE, "metadata": nested(METADATA_LIMITS.max_depth + 1)},
        422,
        "validation_error",
    ),
    ("JSON 300 deep", {**CREATE, "metadata": nested(300)}, 422, "json_too_deep"),
    (
        "JSON just over the depth limit",
        {**CREATE, "metadata": nested(MAX_JSON_DEPTH)},
        422,
        "json_too_deep",
    ),
]


async def check_nothing_stored(client: httpx.AsyncClient, sentinel: dict[str, Any]) -> None:
    listed = (await client.get("/conversations", params={"limit": 200})).json()["data"]
    assert sorted(c["id"] for c in listed) == sorted(["sentinel", "ok"])
    r = await client.get("/conversations/sentinel")
    assert r.json() == sentinel


@pytest.mark.parametrize("backend", BACKENDS)
async def test_bad_input_matrix(backend: str, tmp_path: Path) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        await create_conv(
            client, conversation_id="sentinel", user_id="dave", metadata={"keep": "me"}
        )
        await send(client, "sentinel", "hello")
        sentinel = (await client.get("/conversations/sentinel")).json()
        ok = await create_conv(client, conversation_id="ok", user_id="carol")

        for label, body, status, code in BAD_CREATES:
            r = await post_raw(client, "/conversations", body)
            assert r.status_code == status, (label, r.text)
            assert_problem(r, status, code)

        # Deeper than Python's own recursion limit: still the documented 422.
        deep = b'{"pack_id":"x","metadata":' + b"[" * 1200 + b"]" * 1200 + b"}"
        r = await client.post(
            "/conversations", content=deep, headers={"content-type": "application/json"}
        )
        assert_problem(r, 422, "json_too_deep")
        for constant in (b"NaN", b"Infinity", b"1e400"):
            r = await client.post(
                "/conversations",
                content=b'{"pack_id":"general-assistant","prompt_name":"chat","user_id":"c",'
                b'"metadata":{"x":' + constant + b"}}",
                headers={"content-type": "application/json"},
            )
            assert_problem(r, 400, "malformed_json")

        # Wrong or missing content type on a JSON endpoint.
        for headers, content in (
            ({"content-type": "text/plain"}, json.dumps(CREATE)),
            ({"content-type": "application/x-www-form-urlencoded"}, "pack_id=x"),
            ({}, json.dumps(CREATE)),
        ):
            r = await client.post("/conversations", content=content, headers=headers)
            body = assert_problem(r, 415, "unsupported_media_type")
            assert "application/json" in body["detail"]

        # Messages: bad text, blank text.
        turn = "/conversations/ok/messages"
        for bad in (SURROGATE, NUL, "", "   \n\t"):
            r = await post_raw(client, turn, {"content": bad})
            assert_problem(r, 422, "validation_error")
        r = await post_raw(client, turn, {"parts": [{"type": "text", "text": "  "}]})
        assert_problem(r, 422, "validation_error")
        r = await post_raw(client, turn, {"content": "hi", "metadata": {"m": SURROGATE}})
        assert_problem(r, 422, "validation_error")

        # PATCH: bad text, huge ttl, and merges that would pass the caps.
        patch = "/conversations/ok"
        for body in (
            {"metadata": {"k": SURROGATE}},
            {"metadata": {"k": NUL}},
            {"variables": {"user_name": SURROGATE}},
            {"ttl_seconds": 300_000_000_000},
            {"metadata": nested(300)},
        ):
            r = await post_raw(client, patch, body, method="PATCH")
            assert r.status_code == 422, (body if len(str(body)) < 100 else "deep", r.text)
        chunk = "x" * (METADATA_LIMITS.max_bytes // 2)
        r = await post_raw(client, patch, {"metadata": {"a": chunk}}, method="PATCH")
        assert r.status_code == 200, r.text
        r = await post_raw(client, patch, {"metadata": {"b": chunk}}, method="PATCH")
        body = assert_problem(r, 422, "validation_error")
        assert "After merging" in body["detail"]
        r = await post_raw(client, patch, {"metadata": {"a": None}}, method="PATCH")
        assert r.status_code == 200 and r.json()["metadata"] == {}

        # Path, query and header strings follow the same rule.
        assert_problem(await client.get("/conversations/a%00b"), 422, "validation_error")
        assert_problem(await client.get("/conversations/.hidden"), 422, "validation_error")
        for params in ({"user_id": NUL}, {"prefix": NUL}, {"metadata.k": NUL}, {"user_id": "a/b"}):
            r = await client.get("/conversations", params=params)
            assert_problem(r, 422, "validation_error")
        r = await client.post(turn, json={"content": "hi"}, headers={"Idempotency-Key": "a\x00"})
        assert_problem(r, 422, "validation_error")

        # Cursors: garbage is 400 invalid_cursor everywhere.
        for url_ in ("/conversations", "/packs"):
            assert_problem(
                await client.get(url_, params={"cursor": "garbage"}), 400, "invalid_cursor"
            )
        r = await client.get(turn, params={"before": "garbage"})
        assert_problem(r, 400, "invalid_cursor")

        after = (await client.get("/conversations/ok")).json()
        assert after["message_count"] == ok["message_count"] == 0
        await check_nothing_stored(client, sentinel)


async def test_ids_with_colons_stay_addressable(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client, conversation_id="user:alice:conv:42", user_id="u.s-e_r:1")
    assert (await client.get(f"/conversations/{conv['id']}")).status_code == 200
    r = await client.get("/conversations", params={"user_id": "u.s-e_r:1", "prefix": "user:al"})
    assert [c["id"] for c in r.json()["data"]] == ["user:alice:conv:42"]
    r = await client.delete("/users/u.s-e_r:1/conversations")
    assert r.json() == {"deleted": 1}


async def test_packs_page_with_a_cursor(client: httpx.AsyncClient) -> None:
    everything = (await client.get("/packs")).json()["data"]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/packs", params=params)).json()
        seen += [p["id"] for p in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [p["id"] for p in everything] and len(seen) >= 2


def test_every_route_runs_the_boundary_check(tmp_path: Path) -> None:
    """New endpoints get the check for free only if their router uses `api_router()`."""
    app = create_app(make_settings(tmp_path))

    def walk(routes: list[Any]) -> list[Any]:
        out = []
        for r in routes:
            inner = getattr(r, "original_router", None)  # FastAPI keeps included routers
            out += walk(inner.routes) if inner is not None else [r]
        return out

    api_routes = [r for r in walk(app.routes) if isinstance(r, APIRoute)]
    assert api_routes
    unguarded = [r.path for r in api_routes if not isinstance(r, GuardedRoute)]
    assert unguarded == []


async def test_a_repeated_content_type_is_refused(client: httpx.AsyncClient) -> None:
    """Two Content-Type headers: the first was used (JSON then text/plain made a
    conversation), while a proxy or WAF keeping the last sees another body type. 415 on a
    JSON endpoint and on the upload, whichever order; nothing stored."""
    body = json.dumps({**CREATE, "user_id": "ct-twice"})
    for first, second in (("application/json", "text/plain"), ("text/plain", "application/json")):
        twice = [("content-type", first), ("content-type", second)]
        r = await client.post("/conversations", content=body, headers=twice)
        problem = assert_problem(r, 415, "unsupported_media_type")
        assert problem["errors"][0]["loc"] == ["header", "Content-Type"]
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    twice = [("content-type", "image/png"), ("content-type", "application/octet-stream")]
    r = await client.post("/media", content=png, headers=twice, params={"user_id": "ct-twice"})
    assert_problem(r, 415, "unsupported_media_type")
    listed = await client.get("/conversations", params={"user_id": "ct-twice"})
    assert listed.json()["data"] == []
