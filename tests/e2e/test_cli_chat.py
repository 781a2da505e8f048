"""`parley chat` and `parley serve` as real processes against a real uvicorn."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 10.0

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def service_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The parent's environment minus any Parley/provider configuration, plus a private
    SQLite database, the shipped packs and a small mock-provider delay."""
    drop = ("PARLEY_", "OPENAI_", "ANTHROPIC_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        PARLEY_STATE_URL=f"sqlite+aiosqlite:///{tmp_path}/p.db",
        PARLEY_PACKS_DIR=str(REPO / "packs"),
        PARLEY_MEDIA_DIR=str(tmp_path / "media"),
        PARLEY_MOCK_DELAY_MS="5",
        **extra,
    )
    return env


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def start(cmd: list[str], port: int, env: dict[str, str], log: Path) -> Server:
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop(server)
    pytest.fail(f"server did not answer /healthz within {START_TIMEOUT_S}s:\n{log.read_text()}")


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def uvicorn_server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    server = start(cmd, port, service_env(tmp_path), tmp_path / "uvicorn.log")
    yield server
    stop(server)


def run_cli(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=15,
    )


def test_chat_subprocess_against_uvicorn(uvicorn_server: Server) -> None:
    conv_id = "user:e2e:conv:1"
    result = run_cli(
        "chat", conv_id, "--create", "--url", uvicorn_server.url, stdin="hello\nsecond\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "echo: hello" in result.stdout and "echo: second" in result.stdout
    assert result.stdout == "echo: hello\necho: second\n"

    r = httpx.get(f"{uvicorn_server.url}/conversations/{conv_id}/messages", timeout=5)
    assert r.status_code == 200, r.text
    assert [(m["role"], m["content"]) for m in r.json()["data"]] == [
        ("user", "hello"),
        ("assistant", "echo: hello"),
        ("user", "second"),
        ("assistant", "echo: second"),
    ]

    missing = run_cli("chat", "no-such-conv", "--url", uvicorn_server.url, stdin="hi\n")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.startswith("error: conversation_not_found: ")


def test_serve_command_runs_the_service(tmp_path: Path) -> None:
    """`parley serve` takes its port from PARLEY_PORT and serves the app factory."""
    port = free_port()
    env = service_env(tmp_path, PARLEY_PORT=str(port))
    server = start([sys.executable, "-m", "app.cli", "serve"], port, env, tmp_path / "serve.log")
    try:
        r = httpx.get(f"{server.url}/packs", timeout=5)
        assert r.status_code == 200
        assert "general-assistant" in {p["id"] for p in r.json()["data"]}
    finally:
        stop(server)
    assert f"127.0.0.1:{port}" in server.log.read_text()
