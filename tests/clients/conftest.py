"""Fixtures of the client tests: the playground's browser server (one for both suites), and
a short temporary directory for Chromium."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.playground_server import playground_server

__all__ = ["browser_tmp", "playground_server"]


@pytest.fixture
def browser_tmp() -> Iterator[Path]:
    """The TMPDIR of a browser run. Chromium puts its singleton socket under its profile
    directory and aborts when that path exceeds a socket address (107 bytes): pytest's
    `tmp_path` under pytest-xdist (`.../popen-gw0/<test name>/`) is too long for it."""
    path = Path(tempfile.mkdtemp(prefix="pbr-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
