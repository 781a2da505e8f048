"""The targets of `bench/frameworks.py`: how each is started against the mock upstream and
what one benchmark request to it is.

* `upstream`: the mock upstream itself, no framework in between: the load generator's
  ceiling on this machine (with the upstream's own cost).
* `parley-sqlite`, `parley-postgres`, `parley-redis`: `uvicorn app.main:create_app` with
  the OpenAI provider pointed at the upstream (`OPENAI_BASE_URL`, a dummy
  `OPENAI_API_KEY`, `PARLEY_DEFAULT_PROVIDER=openai`), no admission limit
  (`PARLEY_MAX_CONCURRENT_EXECUTIONS=0`), each store with its default coordination. Half
  the requests open a new conversation (`POST /conversations`, then the streamed turn,
  both inside the timed request), half continue the worker's own existing conversation
  (created with one turn before the tier, untimed).
* `langchain`: `bench/langchain_app.py` (no persistence).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.loadgen import DIALECTS, Connection, HttpError, RequestRecord, stream_request
from bench.servers import Server, child_env, parley_env, uvicorn_server
from bench.stores import STORES, provisioned_store

PROMPT = "Write a short paragraph about the history of computing."  # PromptKit's prompt
OPENAI_BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": PROMPT}], "stream": True}
CREATE_BODY = {"pack_id": "general-assistant", "prompt_name": "chat"}
TURN_BODY = {"content": PROMPT, "stream": True}
POOL_CONCURRENCY = 10  # the untimed set-up stays gentle; the tier is what is measured
POOL_ATTEMPTS = 3

# (worker index, request index, the worker's connection) -> the request's record
RequestFn = Callable[[int, int, Connection], Awaitable[RequestRecord]]


@dataclass
class Running:
    """A started target: its server, how to make request k of worker w, and what must be
    ready before a tier of `c` workers runs."""

    name: str
    server: Server
    request: RequestFn
    prepare: Callable[[int], Awaitable[None]]
    notes: dict[str, str] = field(default_factory=dict)


class ParleyClient:
    """Parley's side: conversation pool (one per worker) and the two kinds of request."""

    def __init__(self, server: Server, expected: str) -> None:
        self.server = server
        self.expected = expected
        self.pool: list[str] = []
        self.created = 0

    async def _create(self, conn: Connection) -> str:
        self.created += 1
        body = {**CREATE_BODY, "user_id": f"fw-{self.created}"}
        resp = await conn.request("POST", "/conversations", body)
        if resp.status != 201:
            raise HttpError(f"creating a conversation: HTTP {resp.status} {resp.body[:200]!r}")
        return f"/conversations/{json.loads(resp.body)['id']}/messages"

    async def prepare(self, workers: int) -> None:
        """Grow the pool to `workers` conversations, each with one turn (untimed)."""
        missing = workers - len(self.pool)
        if missing <= 0:
            return
        host, port = _host_port(self.server)
        queue = list(range(missing))

        async def prepared(conn: Connection) -> str:
            error = ""
            for _ in range(POOL_ATTEMPTS):
                try:
                    path = await self._create(conn)
                    rec = await stream_request(
                        conn, path, TURN_BODY, DIALECTS["parley"], self.expected, "pool"
                    )
                except HttpError as exc:
                    conn.close()
                    error = str(exc)
                else:
                    if rec.ok:
                        return path
                    error = rec.error or "failed"
                await asyncio.sleep(1.0)
            raise RuntimeError(f"preparing a conversation failed {POOL_ATTEMPTS} times: {error}")

        async def one() -> None:
            conn = Connection(host, port)
            try:
                while queue:
                    queue.pop()
                    self.pool.append(await prepared(conn))
            finally:
                conn.close()

        await asyncio.gather(*(one() for _ in range(min(POOL_CONCURRENCY, missing))))

    async def request(self, worker: int, k: int, conn: Connection) -> RequestRecord:
        dialect, want = DIALECTS["parley"], self.expected
        if k % 2 == 0:
            return await stream_request(conn, self._create, TURN_BODY, dialect, want, "new")
        return await stream_request(conn, self.pool[worker], TURN_BODY, dialect, want, "continue")


def _host_port(server: Server) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


def openai_requests(expected: str) -> RequestFn:
    async def request(worker: int, k: int, conn: Connection) -> RequestRecord:
        path = "/v1/chat/completions"
        return await stream_request(conn, path, OPENAI_BODY, DIALECTS["openai"], expected, "one")

    return request


async def _nothing(_: int) -> None:
    return None


TARGETS = ("upstream", "parley-sqlite", "parley-postgres", "parley-redis", "langchain")


@asynccontextmanager
async def start_target(
    name: str, upstream: Server, expected: str, workdir: Path, workers: int = 1
) -> AsyncIterator[Running]:
    """Start target `name` against `upstream`; raises `StoreSkipped` for a store that
    cannot be provisioned."""
    upstream_v1 = upstream.base_url + "/v1"
    provider_env = {"OPENAI_API_KEY": "sk-bench-not-a-key", "OPENAI_BASE_URL": upstream_v1}
    log = workdir / f"{name}.log"
    async with AsyncExitStack() as stack:
        if name == "upstream":
            yield Running(name, upstream, openai_requests(expected), _nothing)
        elif name == "langchain":
            env = child_env(provider_env)
            server = await stack.enter_async_context(
                uvicorn_server("bench.langchain_app:create_app", env, log, workers=workers)
            )
            notes = {"persistence": "none: nothing stored, no history sent (as in PromptKit's)"}
            yield Running(name, server, openai_requests(expected), _nothing, notes)
        elif name.startswith("parley-"):
            store = name.removeprefix("parley-")
            store_dir = workdir / name
            store_dir.mkdir(exist_ok=True)
            url = await stack.enter_async_context(provisioned_store(STORES[store], store_dir))
            env = parley_env(
                url,
                store_dir,
                PARLEY_DEFAULT_PROVIDER="openai",
                PARLEY_DEFAULT_MODEL="gpt-4o-mini",
                **provider_env,
            )
            server = await stack.enter_async_context(
                uvicorn_server("app.main:create_app", env, log, workers=workers)
            )
            client = ParleyClient(server, expected)
            notes = {
                "requests": "half new conversations (POST /conversations + streamed turn, "
                "timed together), half continuing the worker's own conversation",
                "store": STORES[store].description,
            }
            yield Running(name, server, client.request, client.prepare, notes)
        else:
            raise ValueError(f"unknown target {name!r}; known: {TARGETS}")
