"""The `media` fixture: every MediaStore contract test runs once per backend.

Adding a backend (an object store, say) is one entry in `MEDIA_BACKENDS`: a factory from
a fresh temporary directory to an unopened store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from app.media import FilesystemMediaStore, MediaStore

MEDIA_BACKENDS: dict[str, Callable[[Path], MediaStore]] = {
    "filesystem": lambda tmp: FilesystemMediaStore(tmp / "media"),
}


@pytest.fixture(params=sorted(MEDIA_BACKENDS))
async def media(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MediaStore]:
    store = MEDIA_BACKENDS[request.param](tmp_path)
    await store.open()
    yield store
