"""create_store: one URL scheme -> one backend, and clear errors for the rest."""

from __future__ import annotations

import pytest

from app.stores.factory import create_store
from app.stores.memory import MemoryStore
from app.stores.sql import SqlStore


def test_memory() -> None:
    store = create_store("memory://")
    assert isinstance(store, MemoryStore)
    assert store.capabilities.shared is False and store.capabilities.native_ttl is False


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:///./data/parley.db",
        "sqlite+aiosqlite:////var/lib/parley/parley.db",
        "postgresql+asyncpg://postgres@127.0.0.1:5432/parley",
        "postgresql+asyncpg://user:secret@db.internal/parley?ssl=require",
    ],
)
def test_sql_urls_build_an_unopened_sql_store(url: str) -> None:
    store = create_store(url)
    assert isinstance(store, SqlStore)
    assert store.capabilities.shared is True and store.capabilities.native_ttl is False
    with pytest.raises(RuntimeError):
        _ = store.engine  # nothing connects before open()


@pytest.mark.parametrize(
    "url",
    [
        "mysql+aiomysql://db/parley",
        "sqlite:///parley.db",  # the sync driver
        "postgresql://db/parley",
        "parley.db",
        "",
    ],
)
def test_unknown_scheme_names_the_supported_ones(url: str) -> None:
    with pytest.raises(ValueError) as info:
        create_store(url)
    message = str(info.value)
    for scheme in ("memory://", "sqlite+aiosqlite://", "postgresql+asyncpg://"):
        assert scheme in message


@pytest.mark.parametrize("url", ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="memory://"):
        create_store(url)
