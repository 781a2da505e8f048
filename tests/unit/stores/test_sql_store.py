"""SqlStore specifics the contract suite cannot see: SQLite setup and writer serialization,
migrations on reopen, and `StoreUnavailable` when PostgreSQL is down or goes away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa

from app.domain import utcnow
from app.errors import HeadConflict, StoreUnavailable
from app.stores.sql import SqlStore
from tests.contract.builders import append, chain, conversation, grow
from tests.services import scratch_postgres_database


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path}/parley.db")
    await store.open()
    yield store
    await store.close()


async def test_open_creates_the_directory_and_sets_up_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "er" / "parley.db"
    store = SqlStore(f"sqlite+aiosqlite:///{db}")
    await store.open()
    try:
        assert db.exists()
        async with store.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar_one() >= 1000
            version = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
            assert version == _head_revision()
        await store.ping()
    finally:
        await store.close()
        await store.close()  # idempotent


async def test_unusable_sqlite_path_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SqlStore(f"sqlite+aiosqlite:///{blocker}/parley.db")
    with pytest.raises(StoreUnavailable):
        await store.open()


async def test_reopening_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/parley.db"
    first = SqlStore(url)
    await first.open()
    c = await first.create_conversation(conversation())
    await first.close()
    second = SqlStore(url)
    await second.open()  # migrations already at head: a no-op
    try:
        assert await second.get_conversation(c.id, now=utcnow()) == c
    finally:
        await second.close()


async def test_many_concurrent_writers_never_see_database_is_locked(
    sqlite_store: SqlStore,
) -> None:
    convs = await asyncio.gather(
        *(sqlite_store.create_conversation(conversation()) for _ in range(30))
    )
    grown = await asyncio.gather(*(grow(sqlite_store, c, 3) for c in convs))
    assert all(after.message_count == 3 for after, _ in grown)


async def test_writers_of_two_engines_on_one_file_are_serialized(tmp_path: Path) -> None:
    """Two stores on one file behave like two processes: BEGIN IMMEDIATE + busy timeout."""
    url = f"sqlite+aiosqlite:///{tmp_path}/shared.db"
    one, two = SqlStore(url), SqlStore(url)
    await one.open()
    await two.open()
    try:
        # Read-then-write transactions (create checks for an expired row first) are the
        # ones that would fail with SQLITE_BUSY without BEGIN IMMEDIATE.
        created = await asyncio.gather(
            *(s.create_conversation(conversation()) for s in [one, two] * 15)
        )
        assert len({c.id for c in created}) == 30
        c = created[0]
        base, msgs = await grow(one, c, 1)
        attempts = [chain(c, msgs[0], 2) for _ in range(20)]
        results = await asyncio.gather(
            *(append(one if i % 2 else two, base, a) for i, a in enumerate(attempts)),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1, results
        assert all(isinstance(r, HeadConflict) for r in results if isinstance(r, BaseException))
    finally:
        await one.close()
        await two.close()


async def test_unopened_store_is_unavailable_for_ping() -> None:
    with pytest.raises(StoreUnavailable):
        await SqlStore("postgresql+asyncpg://postgres@127.0.0.1:1/parley").ping()


async def test_refused_postgres_connection_fails_fast() -> None:
    store = SqlStore("postgresql+asyncpg://postgres@127.0.0.1:1/parley", timeout_s=4)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.open()
    assert time.monotonic() - started < 5
    with pytest.raises(StoreUnavailable):
        await store.ping()


async def test_unanswered_postgres_connection_times_out() -> None:
    # A listening socket that never speaks the protocol: connect succeeds, startup hangs.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = SqlStore(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/x", timeout_s=1)
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable):
            await store.open()
    finally:
        server.close()
    assert time.monotonic() - started < 5


class _Proxy:
    """A TCP forwarder we can cut, to take PostgreSQL away from a running store."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.mark.postgres
async def test_postgres_going_away_is_unavailable_then_recovers() -> None:
    async with scratch_postgres_database() as url:
        parts = urlsplit(url)
        proxy = _Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        await proxy.start()
        proxied = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
        store = SqlStore(proxied, timeout_s=4)
        await store.open()
        try:
            c = await store.create_conversation(conversation())
            await proxy.stop()
            with pytest.raises(StoreUnavailable):
                await store.ping()
            with pytest.raises(StoreUnavailable):
                await store.get_conversation(c.id, now=utcnow())
            with pytest.raises(StoreUnavailable):
                await grow(store, c, 1)
            await proxy.start()  # same port again
            await store.ping()
            assert await store.get_conversation(c.id, now=utcnow()) == c
        finally:
            await store.close()
            await proxy.stop()


async def _terminate_connections(url: str) -> int:
    """Kill every server connection to `url`'s database (a scratch database of this test:
    only our own connections) from an admin connection; the number killed."""
    import asyncpg

    parts = urlsplit(url)
    admin = await asyncpg.connect(urlunsplit(parts._replace(scheme="postgresql")), timeout=5)
    try:
        killed = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    return len(killed)


@pytest.mark.postgres
async def test_idle_postgres_connection_killed_by_the_server_is_replaced_unnoticed() -> None:
    # Without pool_pre_ping a connection left idle (here: any, idle_ping_s=0) is pinged
    # before use; a dead one is replaced and the call succeeds.
    async with scratch_postgres_database() as url:
        store = SqlStore(url, timeout_s=4, idle_ping_s=0.0)
        await store.open()
        try:
            c = await store.create_conversation(conversation())
            assert await _terminate_connections(url) >= 1
            await asyncio.sleep(0.2)  # the backends exit
            assert await store.get_conversation(c.id, now=utcnow()) == c
            await grow(store, c, 1)
        finally:
            await store.close()


@pytest.mark.postgres
async def test_busy_postgres_connection_killed_by_the_server_fails_one_call_then_recovers() -> None:
    # A connection used moments ago is not pinged: if the server killed it, that one call
    # is a 503 store_unavailable, never another error, and the pool reconnects for the next.
    async with scratch_postgres_database() as url:
        store = SqlStore(url, timeout_s=4, idle_ping_s=3600.0)
        await store.open()
        try:
            c = await store.create_conversation(conversation())
            assert await _terminate_connections(url) >= 1
            await asyncio.sleep(0.2)
            failures = 0
            for _ in range(3):
                try:
                    got = await store.get_conversation(c.id, now=utcnow())
                except StoreUnavailable:
                    failures += 1
                    continue
                assert got == c
                break
            else:
                pytest.fail("the store never recovered from its connections being killed")
            assert failures <= 1
            await grow(store, c, 1)
            assert (await store.get_conversation(c.id, now=utcnow())) is not None
        finally:
            await store.close()


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from app.stores.sql_engine import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


async def test_postgres_pool_is_sized_by_the_settings_and_queues_when_full() -> None:
    """PARLEY_DATABASE_POOL_SIZE / _MAX_OVERFLOW reach the engine (found by the outside
    tester: the pool was fixed at 10 + 20), and more concurrent calls than connections
    wait for one instead of failing."""
    from app.stores.factory import create_store

    async with scratch_postgres_database() as url:
        store = create_store(url, database_pool_size=2, database_max_overflow=1)
        assert isinstance(store, SqlStore)
        await store.open()
        try:
            pool = store.engine.pool
            assert pool.size() == 2  # type: ignore[attr-defined]
            assert pool._max_overflow == 1  # type: ignore[attr-defined]
            conv = conversation()
            await store.create_conversation(conv)
            now = utcnow()
            got = await asyncio.gather(
                *(store.get_conversation(conv.id, now=now) for _ in range(30))
            )
            assert {c.id for c in got if c is not None} == {conv.id}
            assert pool.checkedout() == 0  # type: ignore[attr-defined]
        finally:
            await store.close()


async def test_database_pool_settings_reach_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.lifespan
    from tests.conftest import make_settings, running_app

    real = app.lifespan.create_store
    seen: dict[str, object] = {}

    def spy(url: str, **kwargs: object) -> object:
        seen.update(kwargs)
        return real(url, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(app.lifespan, "create_store", spy)
    settings = make_settings(tmp_path, database_pool_size=3, database_max_overflow=0)
    async with running_app(settings) as c:
        assert (await c.get("/healthz")).status_code == 200
    assert (seen["database_pool_size"], seen["database_max_overflow"]) == (3, 0)
