"""HEAD against a real uvicorn (tester-2 U2): the in-process ASGI client never looks at
the scope's method, uvicorn does (it decides from it whether a response has a body)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import uvicorn_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    db: Path = tmp_path_factory.mktemp("head") / "parley.db"
    with uvicorn_server({"PARLEY_STATE_URL": f"sqlite+aiosqlite:///{db}"}) as url:
        yield int(url.rsplit(":", 1)[1])


def _exchange(port: int, raw: bytes) -> bytes:
    """Send `raw` on one connection; everything the server writes until it goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        s.settimeout(1.5)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass  # the connection stayed open: keep-alive
        return out


@pytest.mark.parametrize(
    "path", ["/healthz", "/conversations?user_id=alice", "/users/alice/export"]
)
def test_head_then_get_on_one_keep_alive_connection(port: int, path: str) -> None:
    host = b"Host: 127.0.0.1\r\n"
    out = _exchange(
        port,
        b"HEAD " + path.encode() + b" HTTP/1.1\r\n" + host + b"\r\n"
        b"GET " + path.encode() + b" HTTP/1.1\r\n" + host + b"\r\n",
    )
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 2, out[:2000]  # the GET is answered too
    head, rest = out.split(b"\r\n\r\n", 1)
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:200]  # no body bytes after HEAD
    assert b"content-type: " in head.lower()  # the GET's header fields
    if "export" not in path:  # a streamed GET has no length to tell: none on its HEAD
        assert b"content-length: " in head.lower()
