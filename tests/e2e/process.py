"""A uvicorn process of the app that a test can signal (SIGTERM, SIGKILL) and restart on
the same port and database, unlike `tests.e2e.server.uvicorn_server`, which owns the
process for its whole block. Output goes to a file (never an undrained pipe)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import IO

import httpx

from tests.e2e.server import REPO, free_port

START_TIMEOUT_S = 120  # generous: a loaded 2-core machine is slow to import the app


class ServerProcess:
    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("PARLEY_", "OPENAI_", "ANTHROPIC_"))
            },
            "PARLEY_PACKS_DIR": str(REPO / "packs"),
            "PARLEY_LOG_LEVEL": "WARNING",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read()[-8000:].decode(errors="replace")

    def start(self) -> ServerProcess:
        assert self.proc is None or self.proc.poll() is not None
        command = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"]
        self.proc = subprocess.Popen(
            command, cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the server did not become healthy in {START_TIMEOUT_S} s:\n{self.output()}"
                )
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        """Wait for the process to exit (kill it after `timeout`); its exit code."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def server_process(env: dict[str, str]) -> Iterator[ServerProcess]:
    server = ServerProcess(env)
    try:
        yield server
    finally:
        server.stop()
        server._log.close()
