"""`parley chat` and `parley serve` as real processes against a real uvicorn."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import REPO, free_port, uvicorn_server

pytestmark = pytest.mark.e2e


def service_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A private SQLite database, the shipped packs and a small mock-provider delay."""
    return {
        "PARLEY_STATE_URL": f"sqlite+aiosqlite:///{tmp_path}/p.db",
        "PARLEY_MEDIA_DIR": str(tmp_path / "media"),
        "PARLEY_MOCK_DELAY_MS": "5",
        **extra,
    }


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    with uvicorn_server(service_env(tmp_path)) as url:
        yield url


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


def test_chat_subprocess_against_uvicorn(server_url: str) -> None:
    conv_id = "user:e2e:conv:1"
    result = run_cli("chat", conv_id, "--create", "--url", server_url, stdin="hello\nsecond\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "echo: hello" in result.stdout and "echo: second" in result.stdout
    assert result.stdout == "echo: hello\necho: second\n"

    r = httpx.get(f"{server_url}/conversations/{conv_id}/messages", timeout=5)
    assert r.status_code == 200, r.text
    assert [(m["role"], m["content"]) for m in r.json()["data"]] == [
        ("user", "hello"),
        ("assistant", "echo: hello"),
        ("user", "second"),
        ("assistant", "echo: second"),
    ]

    missing = run_cli("chat", "no-such-conv", "--url", server_url, stdin="hi\n")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.startswith("error: conversation_not_found: ")


def test_serve_command_runs_the_service(tmp_path: Path) -> None:
    """`parley serve` takes its port from PARLEY_PORT and serves the app factory."""
    port = free_port()
    env = service_env(tmp_path, PARLEY_PORT=str(port))
    command = [sys.executable, "-m", "app.cli", "serve"]
    with uvicorn_server(env, port=port, command=command) as url:
        r = httpx.get(f"{url}/packs", timeout=5)
        assert r.status_code == 200
        assert "general-assistant" in {p["id"] for p in r.json()["data"]}
