"""HEAD on the GET routes (RFC 9110 §9.3.2): the status and header fields GET would send,
no body. Was a 405 everywhere but `/media/{id}`. HEAD on the SSE-only run events is a
405 with `Allow: GET` (it would follow a run for nobody)."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.api.helpers import assert_problem, create_conv, send

SAME = ("content-type", "content-length", "etag", "cache-control", "x-content-type-options")


async def _same_as_get(client: httpx.AsyncClient, url: str, **kwargs: object) -> httpx.Response:
    got = await client.get(url, **kwargs)  # type: ignore[arg-type]
    head = await client.head(url, **kwargs)  # type: ignore[arg-type]
    assert head.status_code == got.status_code, (url, head.status_code, got.text)
    assert head.content == b"", url
    for name in SAME:
        assert head.headers.get(name) == got.headers.get(name), (url, name)
    return head


async def test_head_answers_what_get_would_without_the_body(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    url = f"/conversations/{conv['id']}"
    turn = await send(client, conv["id"], "hello")
    urls = [
        url,
        "/conversations?user_id=alice",
        f"{url}/messages",
        f"{url}/messages/{turn['reply']['id']}",
        f"{url}/runs/{turn['run_id']}",
        f"{url}/branches",
        f"{url}/export",
        "/packs",
        "/packs/general-assistant",
        "/healthz",
        "/openapi.json",
    ]
    for each in urls:
        r = await _same_as_get(client, each)
        assert r.status_code == 200, each
    head = await _same_as_get(client, url)
    assert head.headers["etag"].startswith(f'"{(await client.get(url)).json()["version"]}.')
    assert int(head.headers["content-length"]) > 0


async def test_head_of_a_missing_resource_is_its_get_problem_without_a_body(
    client: httpx.AsyncClient,
) -> None:
    r = await _same_as_get(client, "/conversations/nope")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await _same_as_get(client, "/conversations?bogus=1")
    assert r.status_code == 422
    r = await client.head("/no/such/path")
    assert r.status_code == 404 and r.content == b""


async def test_head_of_the_run_event_stream_is_405_and_starts_nothing(
    client: httpx.AsyncClient,
) -> None:
    conv = await create_conv(client)
    turn = await send(client, conv["id"], "hello")
    url = f"/conversations/{conv['id']}/runs/{turn['run_id']}/events"
    r = await client.head(url)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET"
    # what the routes do not have stays a 405 too
    r = await client.request("PUT", f"/conversations/{conv['id']}")
    assert_problem(r, 405, "method_not_allowed")


async def test_the_access_line_of_a_head_names_the_method_and_the_route(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    conv = await create_conv(client)
    with caplog.at_level(logging.INFO, logger="parley.access"):
        assert (await client.head(f"/conversations/{conv['id']}")).status_code == 200
    [line] = [r for r in caplog.records if r.name == "parley.access"]
    assert (line.method, line.route) == ("HEAD", "/conversations/{conversation_id}")  # type: ignore[attr-defined]


async def test_a_405_allows_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    """RFC 9110 §15.5.6: `Allow` lists what the resource supports. Starlette named the
    first route of the path alone (`PUT /conversations/{id}` said `Allow: GET`)."""
    conv = await create_conv(client)
    url = f"/conversations/{conv['id']}"
    for method, path, allow in [
        ("PUT", url, "DELETE, GET, HEAD, PATCH"),
        ("DELETE", "/conversations", "GET, HEAD, POST"),
        ("PUT", "/packs", "GET, HEAD, POST"),
        ("DELETE", f"{url}/messages", "GET, HEAD, POST"),
        ("POST", "/healthz", "GET, HEAD"),
    ]:
        r = await client.request(method, path)
        assert_problem(r, 405, "method_not_allowed")
        assert r.headers["allow"] == allow, (method, path)
