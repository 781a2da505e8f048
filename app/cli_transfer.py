"""`parley export` and `parley import`: conversation documents to and from a running
service, over its HTTP API (so the service's auth, checks and every store backend apply,
and the command needs only a URL and a key, never the store's credentials).

    parley export ID > f.json            GET /conversations/ID/export, streamed to stdout
    parley export --user U > f.ndjson    GET /users/U/export (NDJSON), streamed
    parley import f.json|f.ndjson|-      POST /conversations/import per document

An import file is one JSON document, or NDJSON (one document per line; each line is
sent as it is). The created ids are printed one per line; a refused document's problems
go to stderr and the command goes on with the next one, then exits with 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any, TextIO

import httpx

ClientFactory = Callable[[], httpx.AsyncClient]
TIMEOUT = httpx.Timeout(300.0, connect=10.0)


@dataclass
class TransferOptions:
    api_key: str | None = None
    conversation_id: str | None = None
    user_id: str | None = None
    pack_id: str | None = None
    pack_version: str | None = None
    prompt_name: str | None = None


def default_client_factory(url: str) -> ClientFactory:
    return lambda: httpx.AsyncClient(base_url=url, timeout=TIMEOUT)


def _headers(options: TransferOptions, **extra: str) -> dict[str, str]:
    headers = dict(extra)
    if options.api_key:
        headers["Authorization"] = f"Bearer {options.api_key}"
    return headers


def _problem(response: httpx.Response, out: TextIO, what: str) -> None:
    """One line for the problem, one per listed error (`loc: msg`)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and "code" in body:
        print(f"{what}: {response.status_code} {body['code']}: {body.get('detail', '')}", file=out)
        for item in body.get("errors") or []:
            if isinstance(item, Mapping):
                loc = ".".join(str(p) for p in item.get("loc", []))
                print(f"  {loc}: {item.get('msg', '')}", file=out)
    else:
        print(f"{what}: HTTP {response.status_code} {response.text[:200]}", file=out)


async def export_documents(
    factory: ClientFactory,
    options: TransferOptions,
    *,
    conversation_id: str | None,
    user_id: str | None,
    out: IO[bytes],
    err: TextIO,
) -> int:
    """Stream one conversation's document (or a user's NDJSON) to `out`; 0 on success."""
    path = f"/users/{user_id}/export" if user_id else f"/conversations/{conversation_id}/export"
    try:
        async with (
            factory() as client,
            client.stream("GET", path, headers=_headers(options)) as response,
        ):
            if response.status_code != 200:
                await response.aread()
                _problem(response, err, "export")
                return 1
            async for chunk in response.aiter_bytes():
                out.write(chunk)
            if not user_id:
                out.write(b"\n")
            out.flush()
    except httpx.TransportError as exc:
        print(f"export: cannot talk to the service: {exc or type(exc).__name__}", file=err)
        return 1
    return 0


def split_documents(data: bytes) -> list[bytes]:
    """The documents of an import file: the whole file if it is one JSON value, else its
    non-empty lines (NDJSON)."""
    try:
        json.loads(data)
    except ValueError:
        return [line for line in data.splitlines() if line.strip()]
    return [data]


async def import_documents(
    factory: ClientFactory,
    options: TransferOptions,
    data: bytes,
    *,
    out: TextIO,
    err: TextIO,
) -> int:
    """POST each document; print the created ids. 0 if every document was imported."""
    documents = split_documents(data)
    if options.conversation_id and len(documents) > 1:
        print("import: --conversation-id takes a file of one document", file=err)
        return 2
    params: dict[str, Any] = {
        key: value
        for key, value in (
            ("conversation_id", options.conversation_id),
            ("user_id", options.user_id),
            ("pack_id", options.pack_id),
            ("pack_version", options.pack_version),
            ("prompt_name", options.prompt_name),
        )
        if value
    }
    failed = 0
    headers = _headers(options, **{"Content-Type": "application/json"})
    try:
        async with factory() as client:
            for n, document in enumerate(documents, start=1):
                r = await client.post(
                    "/conversations/import", content=document, params=params, headers=headers
                )
                if r.status_code == 201:
                    print(r.json()["id"], file=out)
                else:
                    failed += 1
                    _problem(r, err, f"import (document {n})")
    except httpx.TransportError as exc:
        print(f"import: cannot talk to the service: {exc or type(exc).__name__}", file=err)
        return 1
    return 1 if failed else 0


def read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()
