"""One serving process per SQLite file: a second one (another worker, another instance)
refuses to start with a message that says what to do instead."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.stores.sqlite_owner import SqliteFileInUse, claim_sqlite_file, lock_path
from tests.conftest import REPO, make_settings, running_app
from tests.e2e.server import free_port, uvicorn_server


def test_a_second_claim_on_the_file_is_refused_until_the_first_is_released(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/sub/parley.db"
    first = claim_sqlite_file(url)
    assert first.held
    assert lock_path(tmp_path / "sub" / "parley.db").read_text() == str(os.getpid())
    with pytest.raises(SqliteFileInUse) as err:
        claim_sqlite_file(url)
    message = str(err.value)
    assert f"process {os.getpid()}" in message and "PostgreSQL or Redis" in message
    assert "--workers" in message and "PARLEY_COORDINATION_URL=redis://" in message
    first.release()
    again = claim_sqlite_file(url)
    assert again.held
    again.release()
    again.release()  # idempotent


@pytest.mark.parametrize(
    "url", ["memory://", "redis://127.0.0.1:6379/0", "postgresql+asyncpg://u@h/db"]
)
def test_other_stores_claim_nothing(url: str) -> None:
    assert not claim_sqlite_file(url).held


def test_sqlite_with_redis_coordination_claims_nothing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/parley.db"
    first = claim_sqlite_file(url, "memory://")  # in-process coordination: claimed
    assert first.held
    assert not claim_sqlite_file(url, "redis://127.0.0.1:6379/0?prefix=x:").held
    first.release()


def test_an_unusable_directory_is_left_to_the_store_to_report(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert not claim_sqlite_file(f"sqlite+aiosqlite:///{blocker}/parley.db").held


async def test_a_second_app_on_the_same_file_refuses_to_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with running_app(settings) as client:
        with pytest.raises(SqliteFileInUse):
            async with running_app(settings):
                pass
        assert (await client.get("/readyz")).status_code == 200  # the first keeps serving
    async with running_app(settings) as client:  # a restart gets the file back
        assert (await client.get("/readyz")).status_code == 200


def _serve(db: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARLEY_", "OPENAI_"))}
    env |= {"PARLEY_STATE_URL": f"sqlite+aiosqlite:///{db}", "PARLEY_PACKS_DIR": "packs"}
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"),
            *("--host", "127.0.0.1", "--port", str(port), *extra),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.e2e
def test_uvicorn_with_two_workers_on_sqlite_stops_with_the_reason(tmp_path: Path) -> None:
    proc = _serve(tmp_path / "parley.db", free_port(), "--workers", "2")
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.decode(errors="replace")
    # The worker that lost the race fails its start-up; uvicorn's supervisor then stops the
    # whole server (it exits 0 whatever the cause, so the log is what says why; `parley
    # serve --workers 2` exits 2: tests/e2e/test_serve_workers_e2e.py).
    assert "SqliteFileInUse" in text and "supports one serving process" in text, text
    assert "failed to start, stopping the parent process" in text, text


@pytest.mark.e2e
def test_a_second_instance_on_the_same_file_refuses_while_the_first_serves(
    tmp_path: Path,
) -> None:
    db = tmp_path / "parley.db"
    env = {"PARLEY_STATE_URL": f"sqlite+aiosqlite:///{db}"}
    with uvicorn_server(env) as url:
        second = _serve(db, free_port())
        out, _ = second.communicate(timeout=60)
        assert second.returncode != 0 and b"supports one serving process" in out
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200


@pytest.mark.e2e
def test_a_killed_server_leaves_no_stale_claim(tmp_path: Path) -> None:
    db = tmp_path / "parley.db"
    port = free_port()
    first = _serve(db, port)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("the first server did not become ready")
    finally:
        first.send_signal(signal.SIGKILL)  # no shutdown: the kernel drops the flock
        first.wait()
    env = {"PARLEY_STATE_URL": f"sqlite+aiosqlite:///{db}"}
    with uvicorn_server(env) as url:
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
