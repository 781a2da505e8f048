"""`parley serve --workers N` exits non-zero when it cannot serve (outside tester T7:
`uvicorn --workers 2` on SQLite refuses with a clear message, but its supervisor exits 0):
2 before any worker starts when the store is SQLite without Redis coordination, 3 when a
worker fails its start-up; 0 after serving and a SIGTERM. Real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import REPO, free_port
from tests.services import redis_url

pytestmark = pytest.mark.e2e


def _serve(env: dict[str, str], port: int, *extra: str) -> subprocess.Popen[str]:
    child = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PARLEY_", "OPENAI_")) and k != "WEB_CONCURRENCY"
    }
    child |= {"PARLEY_PACKS_DIR": str(REPO / "packs"), "PARLEY_LOG_LEVEL": "WARNING", **env}
    code = "import sys; from app.cli import main; sys.exit(main())"
    args = ("serve", "--host", "127.0.0.1", "--port", str(port), *extra)
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=child,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out


def test_two_workers_on_sqlite_exit_2_with_the_reason_before_starting(tmp_path: Path) -> None:
    db = tmp_path / "parley.db"
    proc = _serve({"PARLEY_STATE_URL": f"sqlite+aiosqlite:///{db}"}, free_port(), "--workers", "2")
    code, out = _finish(proc, timeout=30)
    assert code == 2, out
    assert "supports one serving process" in out and str(db) in out, out
    assert "Started parent process" not in out, out  # no worker was started
    assert not db.exists()


def test_web_concurrency_counts_as_workers(tmp_path: Path) -> None:
    db = tmp_path / "parley.db"
    proc = _serve(
        {"PARLEY_STATE_URL": f"sqlite+aiosqlite:///{db}", "WEB_CONCURRENCY": "2"}, free_port()
    )
    code, out = _finish(proc, timeout=30)
    assert code == 2 and "supports one serving process" in out, out


def test_a_worker_that_fails_its_start_up_makes_it_exit_3() -> None:
    unreachable = "postgresql+asyncpg://postgres@127.0.0.1:1/nothing-listens-here"
    proc = _serve({"PARLEY_STATE_URL": unreachable}, free_port(), "--workers", "2")
    code, out = _finish(proc)
    assert code == 3, out
    assert "failed to start" in out, out


@pytest.mark.redis
def test_two_workers_serve_and_stop_with_0() -> None:
    prefix = f"parley-test-serve-{uuid.uuid4().hex[:12]}:"
    url = redis_url()
    port = free_port()
    state = f"{url}{'&' if '?' in url else '?'}prefix={prefix}"
    proc = _serve({"PARLEY_STATE_URL": state}, port, "--workers", "2")
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).is_success:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "not healthy in 60 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        code, out = _finish(proc, timeout=60)
        assert code == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        import asyncio

        from tests.contract.cluster import delete_prefixed

        asyncio.run(delete_prefixed(url, prefix))
