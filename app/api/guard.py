"""The one boundary check every route gets: text rules for every string a request carries
(path, query, headers, JSON body), JSON depth/number rules, and `application/json` as the
only body type of JSON endpoints (415 otherwise).

Routers are built with `api_router()`, whose route class runs the check before FastAPI
parses parameters, so a new endpoint is covered without doing anything
(`tests/api/test_boundary.py` fails if a route is not a `GuardedRoute`).
The body is parsed here once and handed to FastAPI through the request's JSON cache.
"""

from __future__ import annotations

import asyncio
import functools
import json
import weakref
from collections import Counter
from collections.abc import Callable, Coroutine
from email.message import Message as MimeHeader
from typing import Any

from fastapi import APIRouter, Request, Response, params
from fastapi.routing import APIRoute

from app.domain.limits import MAX_JSON_DEPTH, JsonTooDeepError, json_problems, text_problem
from app.errors import InvalidRequest, JsonTooDeep, MalformedJSON, UnsupportedContentType
from app.json_text import finite_float, refuse_constant

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Bodies larger than this are parsed and scanned in a worker thread, off the event loop.
THREAD_BODY_BYTES = 64 * 1024


def is_json_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    return _is_json_type(content_type)


@functools.lru_cache(maxsize=64)
def _is_json_type(content_type: str) -> bool:
    """A pure function of the field's text, parsed by the email package (~5 us, twice per
    JSON request: the guard and the body reader); clients send few distinct values."""
    header = MimeHeader()
    header["content-type"] = content_type
    if header.get_content_maintype() != "application":
        return False
    subtype = header.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


class DuplicateKeyError(Exception):
    """A JSON object names one key twice (not a ValueError: `json.loads` must not turn
    it into a syntax error)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook`: RFC 8259 leaves duplicate names to the parser, and parsers
    differ (first wins, last wins), so a proxy or WAF reading the first `content` would
    see another request than we do (outside tester T2: `{"stream": true, "stream": false}`
    was silently non-streaming). Refused instead. Costs ~2 us per small body (measured)."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return value


def parse_json_body(body: bytes) -> Any:
    """Parse and check a JSON body; raises the ParleyError the client should get."""
    try:
        value = json.loads(
            body,
            parse_constant=refuse_constant,
            parse_float=finite_float,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise _too_deep() from None
    except DuplicateKeyError as exc:
        problem = {"loc": ["body"], "msg": f"duplicate key {exc.key!r} in a JSON object"}
        raise InvalidRequest(
            "The request body names a key twice in one object.", errors=[problem]
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedJSON(f"Request body is not valid JSON: {exc}") from None
    try:
        problems = json_problems(value, loc=("body",))
    except JsonTooDeepError:
        raise _too_deep() from None
    if problems:
        raise InvalidRequest(
            "The request body contains values that are not allowed.", errors=problems
        )
    return value


async def parse_json_body_async(body: bytes) -> Any:
    """`parse_json_body`, in a worker thread for a body over `THREAD_BODY_BYTES`."""
    if len(body) > THREAD_BODY_BYTES:
        return await asyncio.to_thread(parse_json_body, body)
    return parse_json_body(body)


def _too_deep() -> JsonTooDeep:
    return JsonTooDeep(f"JSON bodies may nest at most {MAX_JSON_DEPTH} objects/arrays deep.")


def check_strings(request: Request) -> None:
    """The text rule for path parameters, query parameters (names and values) and headers."""
    problems: list[dict[str, Any]] = []
    for name, value in request.path_params.items():
        if isinstance(value, str) and (msg := text_problem(value)):
            problems.append({"loc": ["path", name], "msg": msg})
    for name, value in request.query_params.multi_items():
        if msg := text_problem(name) or text_problem(value):
            problems.append({"loc": ["query", name], "msg": msg})
    for name, value in request.headers.items():
        if msg := text_problem(value):
            problems.append({"loc": ["header", name], "msg": msg})
    if problems:
        raise InvalidRequest("The request contains values that are not allowed.", errors=problems)


async def check_request(request: Request, *, takes_json: bool) -> None:
    check_strings(request)
    if request.method not in BODY_METHODS:
        return
    if len(request.headers.getlist("content-type")) > 1:
        # Ambiguous: the first was used while a proxy or WAF keeping the last saw another
        # body type (JSON read as text/plain, or another multipart boundary): refused.
        raise UnsupportedContentType(
            "Send one Content-Type header, not several.",
            errors=[{"loc": ["header", "Content-Type"], "msg": "sent more than once"}],
        )
    if not takes_json:
        return
    body = await request.body()
    content_type = request.headers.get("content-type")
    if not body and not content_type:
        return  # no body at all: FastAPI reports a missing required body as usual
    if not is_json_type(content_type):
        raise UnsupportedContentType(
            f"This endpoint takes application/json; got {content_type or 'no Content-Type'}.",
            extra={"accept": ["application/json"]},
        )
    if not body:
        return
    request._json = await parse_json_body_async(
        body
    )  # Starlette's cache: FastAPI reads the parsed body from here


Handler = Callable[[Request], Coroutine[Any, Any, Response]]

# Query parameters an operation reads by prefix rather than by name.
QUERY_PREFIXES: dict[str, tuple[str, ...]] = {"listConversations": ("metadata.",)}


def _query_names(dependant: Any) -> frozenset[str]:
    names = {f.alias for f in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


def check_query_names(request: Request, known: frozenset[str], prefixes: tuple[str, ...]) -> None:
    """A query parameter the operation does not have is a 422, as an unknown body field is
    (outside tester T8: a misspelt filter such as `?userid=alice` was ignored, so the
    listing was every user's)."""
    if len(pairs := request.query_params.multi_items()) != len(request.query_params):
        _refuse_repeated([name for name, _ in pairs])
    unknown = [
        name
        for name in dict.fromkeys(request.query_params)
        if name not in known and not any(name.startswith(p) and name != p for p in prefixes)
    ]
    if unknown:
        allowed = ", ".join(sorted(known) + [f"{p}KEY" for p in prefixes]) or "none"
        raise InvalidRequest(
            "The request has query parameters this operation does not take.",
            errors=[
                {
                    "loc": ["query", name],
                    "msg": f"unknown parameter (this operation takes: {allowed})",
                }
                for name in unknown
            ],
        )


def _refuse_repeated(names: list[str]) -> None:
    """A query parameter given twice (`?user_id=alice&user_id=bob`): FastAPI took the last
    while a proxy or gateway checking the first saw another request, as with a repeated
    JSON key or header. No operation takes a list parameter; one that does would have to
    be let through here."""
    repeated = [name for name, count in Counter(names).items() if count > 1]
    raise InvalidRequest(
        "The request repeats query parameters.",
        errors=[{"loc": ["query", name], "msg": "sent more than once"} for name in repeated],
    )


class GuardedRoute(APIRoute):
    """Also honours the serving app's `dependency_overrides` (review F5). FastAPI reads
    them through the route's `dependency_overrides_provider`, which `include_router` sets
    to the app when it copies each route; `app.main.add_routes` adds the routers' own
    routes instead (no per-request branch), which are shared by every app of the process
    (tests build many), so no one app can be their provider. Each app gets a handler of
    its own instead, made on its first request with that app as the provider."""

    def get_route_handler(self) -> Handler:
        takes_json = self.body_field is not None and not isinstance(
            self.body_field.field_info, params.Form
        )
        handlers: weakref.WeakKeyDictionary[Any, Handler] = weakref.WeakKeyDictionary()
        known = _query_names(self.dependant)
        prefixes = QUERY_PREFIXES.get(self.operation_id or "", ())

        async def guarded(request: Request) -> Response:
            if request.query_params:
                check_query_names(request, known, prefixes)
            await check_request(request, takes_json=takes_json)
            app = request.app
            handler = handlers.get(app)
            if handler is None:
                handler = handlers[app] = self._handler_for(app)
            return await handler(request)

        return guarded

    def _handler_for(self, app: Any) -> Handler:
        """FastAPI's handler of this route, with `app` as its overrides' provider (the
        attribute is set just for the build: no await in between)."""
        shared = self.dependency_overrides_provider
        self.dependency_overrides_provider = app
        try:
            return super().get_route_handler()
        finally:
            self.dependency_overrides_provider = shared


def api_router(**kwargs: Any) -> APIRouter:
    """An `APIRouter` whose routes run the boundary check."""
    return APIRouter(route_class=GuardedRoute, **kwargs)
