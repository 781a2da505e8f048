"""`create_store(url)`: the one place a state URL becomes a `StateStore` (DESIGN §4)."""

from __future__ import annotations

from urllib.parse import urlsplit

from app.stores.base import StateStore

SUPPORTED_SCHEMES = (
    "memory://",
    "sqlite+aiosqlite:///path/to/file.db",
    "postgresql+asyncpg://user:password@host:5432/db",
)


def create_store(url: str) -> StateStore:
    """A store for `url`, not yet opened (call `await store.open()`).

    Backends are imported lazily so that choosing one never imports another's driver.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from app.stores.memory import MemoryStore

        return MemoryStore()
    if scheme in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        from app.stores.sql import SqlStore

        return SqlStore(url)
    if scheme in ("redis", "rediss"):
        raise ValueError(
            "redis backend not available yet; use sqlite+aiosqlite or postgresql+asyncpg"
        )
    raise ValueError(
        f"Unsupported state store URL scheme {scheme or url!r}; supported: "
        + ", ".join(SUPPORTED_SCHEMES)
    )
