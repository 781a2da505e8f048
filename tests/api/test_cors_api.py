"""CORS (`PARLEY_CORS_ORIGINS`) and `OPTIONS` on every route."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from app.api.cors import EXPOSED_HEADERS, REQUEST_HEADERS
from app.openapi_export import render
from app.settings import Settings
from tests.api.helpers import assert_problem
from tests.conftest import running_app

ORIGIN = "http://127.0.0.1:5173"
PREFLIGHT_HEADERS = "authorization,content-type,idempotency-key,if-match,last-event-id,x-request-id"


def _operations() -> list[tuple[str, str]]:
    """(concrete path, METHOD) for every operation of the document."""
    spec: dict[str, Any] = json.loads(render())
    out = []
    for path, ops in spec["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        out += [(concrete, method.upper()) for method in ops]
    return out


async def test_without_origins_no_cors_header_and_options_lists_allow(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory()) as c:
        r = await c.options("/conversations")
        assert r.status_code == 204
        assert r.headers["allow"] == "GET, HEAD, OPTIONS, POST"
        r = await c.options("/conversations/abc")
        assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "PATCH", "DELETE", "OPTIONS"}
        # the same list as a 405's Allow, OPTIONS added (tester-2 U5: HEAD was missing)
        for path in ("/conversations/abc", "/healthz", "/users/alice/export"):
            options, refused = await c.options(path), await c.put(path)
            assert refused.status_code == 405
            methods = set(refused.headers["allow"].split(", ")) | {"OPTIONS"}
            assert set(options.headers["allow"].split(", ")) == methods, path
        r = await c.options(
            "/conversations",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
        )
        assert not [h for h in r.headers if h.startswith("access-control-")], r.headers
        r = await c.get("/packs", headers={"Origin": ORIGIN})
        assert r.status_code == 200
        assert "access-control-allow-origin" not in r.headers
        assert_problem(await c.options("/no/such/path"), 404, "not_found")


async def test_every_operation_answers_a_preflight(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(cors_origins=[ORIGIN])) as c:
        for path, method in _operations():
            r = await c.options(
                path,
                headers={
                    "Origin": ORIGIN,
                    "Access-Control-Request-Method": method,
                    "Access-Control-Request-Headers": PREFLIGHT_HEADERS,
                },
            )
            assert r.status_code == 200, (path, method, r.text)
            assert r.headers["access-control-allow-origin"] == ORIGIN
            assert method in r.headers["access-control-allow-methods"].split(", ")
            allowed = {h.lower() for h in r.headers["access-control-allow-headers"].split(", ")}
            assert set(PREFLIGHT_HEADERS.split(",")) <= allowed
            assert "Origin" in r.headers["vary"]


async def test_responses_expose_the_headers_clients_read(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(cors_origins=[ORIGIN])) as c:
        c.headers["Origin"] = ORIGIN
        r = await c.post(
            "/conversations",
            json={"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "u"},
        )
        assert r.status_code == 201
        assert r.headers["access-control-allow-origin"] == ORIGIN
        exposed = {h.strip() for h in r.headers["access-control-expose-headers"].split(",")}
        assert exposed == set(EXPOSED_HEADERS)
        assert exposed == {"X-Run-Id", "ETag", "Retry-After", "Location", "X-Request-ID"}
        r = await c.post(f"/conversations/{r.json()['id']}/messages", json={"content": "hi"})
        assert r.status_code == 200 and r.headers["x-run-id"]
        assert r.headers["access-control-allow-origin"] == ORIGIN
        # errors carry the CORS headers too, or a page could not read the problem
        r = await c.get("/conversations/missing")
        assert_problem(r, 404, "conversation_not_found")
        assert r.headers["access-control-allow-origin"] == ORIGIN


async def test_other_origins_are_refused(settings_factory: Callable[..., Settings]) -> None:
    async with running_app(settings_factory(cors_origins=[ORIGIN])) as c:
        r = await c.options(
            "/conversations",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
        body = assert_problem(r, 400, "cors_rejected")
        assert "origin" in body["detail"]
        assert "access-control-allow-origin" not in r.headers
        r = await c.get("/packs", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        r = await c.options(
            "/conversations",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-not-used",
            },
        )
        assert "headers" in assert_problem(r, 400, "cors_rejected")["detail"]


async def test_wildcard_origin(settings_factory: Callable[..., Settings]) -> None:
    async with running_app(settings_factory(cors_origins=["*"])) as c:
        r = await c.get("/packs", headers={"Origin": "http://anything.example:1234"})
        assert r.headers["access-control-allow-origin"] == "*"


def test_request_headers_cover_what_the_api_reads() -> None:
    """Every header parameter of the document (and the bearer key) can be preflighted."""
    spec = json.loads(render())
    names = {
        p["name"].lower()
        for ops in spec["paths"].values()
        for op in ops.values()
        for p in op.get("parameters", [])
        if p["in"] == "header"
    }
    assert names | {"authorization"} <= {h.lower() for h in REQUEST_HEADERS}


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("", []),
        ("http://a.example,https://b.example:8443", ["http://a.example", "https://b.example:8443"]),
        ('["http://127.0.0.1:3000"]', ["http://127.0.0.1:3000"]),
        ("*", ["*"]),
    ],
)
def test_origins_from_env(monkeypatch: pytest.MonkeyPatch, raw: str, parsed: list[str]) -> None:
    monkeypatch.setenv("PARLEY_CORS_ORIGINS", raw)
    assert Settings().cors_origins == parsed


@pytest.mark.parametrize(
    "bad", ["http://a.example/", "a.example", "ftp://a.example", "http://a.example/app"]
)
def test_what_is_not_an_origin_is_refused(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("PARLEY_CORS_ORIGINS", bad)
    with pytest.raises(ValueError, match="not an origin"):
        Settings()
