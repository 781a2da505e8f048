"""Start real uvicorn processes of the app for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60  # generous: CI machines can be loaded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def uvicorn_server(
    env: dict[str, str],
    *,
    port: int | None = None,
    command: list[str] | None = None,
    procs: list[subprocess.Popen[bytes]] | None = None,
) -> Iterator[str]:
    """Run `uvicorn app.main:create_app --factory` (or `command`, which must listen on
    `port`) with `env` on top of a clean provider environment; yield its base URL once
    /healthz answers; stop it afterwards. `procs` receives the process (to kill it)."""
    port = port or free_port()
    child_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PARLEY_", "OPENAI_", "ANTHROPIC_"))
    }
    child_env.update(
        {"PARLEY_PACKS_DIR": str(REPO / "packs"), "PARLEY_LOG_LEVEL": "WARNING", **env}
    )
    # The server's output goes to a file, never an undrained pipe: a server that logs more
    # than a pipe buffer (64 KiB) would block on its next write and stop answering.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        cwd=REPO,
        env=child_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    if procs is not None:
        procs.append(proc)

    def output() -> str:
        log.seek(0)
        return log.read()[-8000:].decode(errors="replace")

    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.returncode}:\n{output()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the server did not become healthy in {START_TIMEOUT_S} s; "
                    f"its output so far:\n{output()}"
                )
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
