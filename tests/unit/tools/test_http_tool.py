"""`live` tools against a real HTTP server on loopback (the loopback network allowed
explicitly; the backend fails the test on any non-loopback connection)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.tools import ToolRegistry
from tests.unit.tools.helpers import (
    LoopbackOnlyBackend,
    checked,
    fixture_pack,
    pack_with,
    settings,
    table_resolver,
)
from tests.unit.tools.http_peer import HttpPeer, http_peer

WEATHER_PACK = "sdk__examples__tools__tools.pack.json"


@pytest.fixture
async def peer() -> AsyncIterator[HttpPeer]:
    async with http_peer() as p:
        yield p


def loopback_registry(spec: dict[str, Any], **values: Any) -> ToolRegistry:
    return ToolRegistry(
        checked(spec),
        settings(tool_allowed_networks=["127.0.0.0/8"], **values),
        network_backend=LoopbackOnlyBackend(),
        resolver=table_resolver({"localhost": ["127.0.0.1"]}),
        environ={"WEATHER_KEY": "k-123"},
    )


async def test_get_weather_request_is_mapped_and_the_response_filtered(peer: HttpPeer) -> None:
    peer.handler = lambda r: (
        200,
        {},
        json.dumps(
            {
                "current": {"temp_c": 21, "summary": "sunny", "station": "LFPG"},
                "internal": "do not show",
            }
        ).encode(),
    )
    tools = loopback_registry(
        {
            "tools": {
                "get_weather": {
                    "http": {
                        "url": peer.url + "/v1/weather/{{.country}}",
                        "method": "GET",
                        "headers": {"X-Static": "fixed"},
                        "headers_from_env": ["X-Api-Key=WEATHER_KEY"],
                        "timeout_ms": 5000,
                        "request": {
                            "query_params": ["city"],
                            "static_query": {"units": "metric"},
                            "static_headers": {"X-Client": "parley"},
                        },
                        "response": {
                            "body_mapping": "{temp: current.temp_c, summary: current.summary}"
                        },
                    }
                }
            }
        }
    )
    toolset = tools.toolset(fixture_pack(WEATHER_PACK), "assistant")
    bound = toolset.get("get_weather")
    assert bound is not None and bound.mode == "live" and bound.runs_on_server
    assert bound.spec.parameters["required"] == ["city", "country"]  # the pack's schema
    outcome = await toolset.execute("get_weather", {"city": "Paris", "country": "FR"})
    await tools.aclose()
    assert not outcome.is_error, outcome.output
    assert outcome.output == {"temp": 21, "summary": "sunny"}
    assert outcome.latency_ms > 0
    [request] = peer.requests
    assert (request.method, request.path) == ("GET", "/v1/weather/FR")
    assert request.query == {"city": ["Paris"], "units": ["metric"]}
    assert request.headers["x-static"] == "fixed"
    assert request.headers["x-api-key"] == "k-123"
    assert request.headers["x-client"] == "parley"
    assert request.body == b""


async def test_post_body_mapping_static_body_exclude_and_header_params(peer: HttpPeer) -> None:
    tools = loopback_registry(
        {
            "tools": {
                "lookup_user": {
                    "http": {
                        "url": peer.url + "/users/search",
                        "method": "POST",
                        "request": {
                            "header_params": {"X-Trace": "trace-{{.trace}}"},
                            "exclude": ["debug"],
                            "static_body": {"source": "parley"},
                            "body_mapping": "{query: {full_name: name}, origin: source}",
                        },
                    }
                }
            }
        }
    )
    pack = pack_with({"lookup_user": {"description": "Find a user"}}, ["lookup_user"])
    toolset = tools.toolset(pack, "main")
    outcome = await toolset.execute(
        "lookup_user", {"name": "John Smith", "trace": "t1", "debug": True}
    )
    await tools.aclose()
    assert outcome.output == {"ok": True}
    [request] = peer.requests
    assert request.method == "POST" and request.headers["x-trace"] == "trace-t1"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {"query": {"full_name": "John Smith"}, "origin": "parley"}


async def test_without_mapping_get_sends_query_and_post_sends_json(peer: HttpPeer) -> None:
    tools = loopback_registry(
        {
            "tools": {
                "q": {"http": {"url": peer.url + "/q", "method": "GET"}},
                "b": {"http": {"url": peer.url + "/b/{{.id}}"}},  # method defaults to POST
            }
        }
    )
    pack = pack_with({"q": {"description": "q"}, "b": {"description": "b"}}, ["q", "b"])
    toolset = tools.toolset(pack, "main")
    await toolset.execute("q", {"n": 2, "flag": True, "name": "a b"})
    await toolset.execute("b", {"id": "x/../y", "value": 1.5})
    await tools.aclose()
    get, post = peer.requests
    assert get.query == {"n": ["2"], "flag": ["true"], "name": ["a b"]}
    assert (post.method, post.raw_path) == ("POST", "/b/x%2F..%2Fy")
    assert json.loads(post.body) == {"value": 1.5}


async def test_http_errors_non_json_and_redaction(peer: HttpPeer) -> None:
    replies = {
        "/missing": (404, {}, b'{"error": "no such city"}'),
        "/text": (200, {"content-type": "text/plain"}, b"plain words"),
        "/secret": (200, {}, b'{"name": "x", "token": "s3cr3t"}'),
    }
    peer.handler = lambda r: replies[r.path]
    spec = {
        "tools": {
            "missing": {"http": {"url": peer.url + "/missing", "method": "GET"}},
            "text": {"http": {"url": peer.url + "/text", "method": "GET"}},
            "secret": {"http": {"url": peer.url + "/secret", "method": "GET", "redact": ["token"]}},
        }
    }
    tools = loopback_registry(spec)
    pack = pack_with({n: {"description": n} for n in spec["tools"]}, list(spec["tools"]))
    toolset = tools.toolset(pack, "main")
    missing = await toolset.execute("missing", {})
    text = await toolset.execute("text", {})
    secret = await toolset.execute("secret", {})
    await tools.aclose()
    assert missing.is_error and missing.output.startswith("HTTP 404")
    assert text.output == {"result": "plain words"}
    assert secret.output == {"name": "x", "token": "[REDACTED]"}


async def test_large_responses_are_cut_with_a_note_or_refused_when_mapped(peer: HttpPeer) -> None:
    peer.handler = lambda r: (200, {}, json.dumps({"data": "x" * 5000}).encode())
    spec = {
        "tools": {
            "plain": {"http": {"url": peer.url + "/p", "method": "GET"}},
            "mapped": {
                "http": {
                    "url": peer.url + "/m",
                    "method": "GET",
                    "response": {"body_mapping": "data"},
                }
            },
        }
    }
    tools = loopback_registry(spec, tool_max_result_bytes=1000)
    pack = pack_with(
        {"plain": {"description": "p"}, "mapped": {"description": "m"}}, ["plain", "mapped"]
    )
    toolset = tools.toolset(pack, "main")
    plain = await toolset.execute("plain", {})
    mapped = await toolset.execute("mapped", {})
    await tools.aclose()
    assert not plain.is_error and plain.output.startswith('{"data": "xxx')
    assert "[truncated by Parley" in plain.output and len(plain.output) < 1200
    assert mapped.is_error and "too large to redact or map" in mapped.output


async def test_multimodal_binary_response_is_a_clear_tool_error(peer: HttpPeer) -> None:
    peer.handler = lambda r: (200, {"content-type": "image/png"}, b"\x89PNG\r\n")
    tools = loopback_registry(
        {
            "tools": {
                "snap": {
                    "http": {
                        "url": peer.url + "/snap",
                        "method": "GET",
                        "multimodal": {"enabled": True, "accept_types": ["image/png"]},
                    }
                }
            }
        }
    )
    toolset = tools.toolset(pack_with({"snap": {"description": "s"}}, ["snap"]), "main")
    outcome = await toolset.execute("snap", {})
    await tools.aclose()
    assert outcome.is_error and "image/png" in outcome.output and "media" in outcome.output
    assert peer.requests[0].headers["accept"] == "image/png"


async def test_timeout_is_a_tool_error_within_the_deadline(peer: HttpPeer) -> None:
    async def slow(r: Any) -> Any:
        await asyncio.sleep(3)
        return (200, {}, b"{}")

    peer.handler = slow
    tools = loopback_registry(
        {
            "tools": {
                "slow": {"http": {"url": peer.url + "/slow", "method": "GET", "timeout_ms": 300}}
            }
        }
    )
    toolset = tools.toolset(pack_with({"slow": {"description": "s"}}, ["slow"]), "main")
    outcome = await toolset.execute("slow", {})
    await tools.aclose()
    assert outcome.is_error and "timed out" in outcome.output
    assert 250 <= outcome.latency_ms < 2000


async def test_cross_origin_redirect_drops_configured_headers() -> None:
    async with http_peer() as first, http_peer() as second:
        first.handler = lambda r: (307, {"location": f"http://localhost:{second.port}/next"}, b"")
        tools = loopback_registry(
            {
                "tools": {
                    "r": {
                        "http": {
                            "url": first.url + "/start",
                            "method": "GET",
                            "headers_from_env": ["X-Api-Key=WEATHER_KEY"],
                        }
                    }
                }
            }
        )
        toolset = tools.toolset(pack_with({"r": {"description": "r"}}, ["r"]), "main")
        outcome = await toolset.execute("r", {})
        await tools.aclose()
    assert outcome.output == {"ok": True}
    assert first.requests[0].headers["x-api-key"] == "k-123"
    assert "x-api-key" not in second.requests[0].headers


async def test_missing_url_argument_and_invalid_arguments_are_tool_errors(peer: HttpPeer) -> None:
    tools = loopback_registry(
        {"tools": {"get_weather": {"http": {"url": peer.url + "/w/{{.country}}", "method": "GET"}}}}
    )
    toolset = tools.toolset(fixture_pack(WEATHER_PACK), "assistant")
    invalid = await toolset.execute("get_weather", {"city": "Paris"})
    await tools.aclose()
    assert (
        invalid.is_error and "invalid arguments" in invalid.output and "country" in invalid.output
    )
    assert peer.requests == []


async def test_redirect_loops_end_as_a_tool_error(peer: HttpPeer) -> None:
    peer.handler = lambda r: (302, {"location": "/again"}, b"")
    tools = loopback_registry(
        {"tools": {"loop": {"http": {"url": peer.url + "/start", "method": "GET"}}}}
    )
    toolset = tools.toolset(pack_with({"loop": {"description": "l"}}, ["loop"]), "main")
    outcome = await toolset.execute("loop", {})
    await tools.aclose()
    assert outcome.is_error and outcome.output == "more than 5 redirects"
    assert len(peer.requests) == 6
