"""Real server processes for the benchmarks: the child's exact configuration, the uvicorn
command every benchmark uses, and the server's CPU and run-queue wait read from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import REPO

# Provider settings the child must not inherit: with none of them the service uses the
# deterministic mock provider (DESIGN §10).
PROVIDER_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")
READY_PATH = "/readyz"  # Parley's readiness probe; bench/floor_app.py answers it too
READY_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def child_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any PARLEY_* or provider variable, plus
    `overrides`: the child's configuration is exactly what the benchmark says."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PARLEY_") and k not in PROVIDER_ENV
    }
    env.update(overrides)
    return env


def parley_env(state_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    """The service's configuration for a benchmark: mock provider (no provider key), the
    repository's packs, warnings only, no admission limit; everything else default
    (context policy 8,000 input tokens)."""
    return child_env(
        {
            "PARLEY_STATE_URL": state_url,
            "PARLEY_PACKS_DIR": "packs",
            "PARLEY_MEDIA_DIR": str(workdir / "media"),
            "PARLEY_LOG_LEVEL": "WARNING",
            "PARLEY_MAX_CONCURRENT_EXECUTIONS": "0",
            **extra,
        }
    )


def uvicorn_command(target: str, port: int, workers: int = 1) -> list[str]:
    """How every benchmark starts a server: one uvicorn worker unless told otherwise
    (uvloop + httptools from `uvicorn[standard]`), access log off (`--log-level warning`)."""
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return [*cmd, "--workers", str(workers)] if workers > 1 else cmd


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def process_cpu_s(pid: int) -> float | None:
    """CPU time (user + system) consumed so far by process `pid`, from /proc (Linux; None
    elsewhere). Resolution is one clock tick (10 ms), so use it on sums of many requests."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_wait_s(pid: int) -> float | None:
    """Time process `pid`'s main thread (the event loop) has spent runnable but waiting
    for a CPU, from /proc/<pid>/schedstat (Linux; None elsewhere). It grows when other
    processes compete for the CPUs, which is what makes a benchmark noisy."""
    try:
        fields = Path(f"/proc/{pid}/schedstat").read_text().split()
    except OSError:
        return None
    return int(fields[1]) / 1e9


@dataclass(frozen=True)
class Server:
    """A server process; its CPU, memory and run-queue wait include its children (the
    workers of `uvicorn --workers N`)."""

    base_url: str
    pid: int

    def cpu_s(self) -> float | None:
        return tree_cpu_s(self.pid)

    def wait_s(self) -> float | None:
        return tree_runqueue_wait_s(self.pid)

    def rss_bytes(self) -> int | None:
        return tree_rss_bytes(self.pid)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc/<pid>/task/*/children (Linux)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                todo += [int(c) for c in task.read_text().split()]
    return out


def _tree_sum(pid: int, one: Callable[[int], float | None]) -> float | None:
    values = [one(p) for p in process_tree(pid)]
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def tree_cpu_s(pid: int) -> float | None:
    return _tree_sum(pid, process_cpu_s)


def tree_runqueue_wait_s(pid: int) -> float | None:
    return _tree_sum(pid, runqueue_wait_s)


def process_rss_bytes(pid: int) -> int | None:
    """Resident set size of `pid` (VmRSS from /proc/<pid>/status)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def tree_rss_bytes(pid: int) -> int | None:
    total = _tree_sum(pid, lambda p: process_rss_bytes(p))
    return int(total) if total is not None else None


@asynccontextmanager
async def uvicorn_server(
    target: str, env: Mapping[str, str], log_path: Path, *, workers: int = 1
) -> AsyncIterator[Server]:
    """Run `uvicorn <target> --factory` in a child process from the repository root; yield
    it once `GET /readyz` answers 200; stop it (SIGTERM, then SIGKILL) on exit."""
    port = free_port()
    async with child_server(
        uvicorn_command(target, port, workers), port, env, log_path, READY_PATH
    ) as server:
        yield server


@asynccontextmanager
async def child_server(
    command: Sequence[str], port: int, env: Mapping[str, str], log_path: Path, ready_path: str
) -> AsyncIterator[Server]:
    """Run `command` (a server listening on 127.0.0.1:`port`) from the repository root;
    yield it once `GET ready_path` answers 200; stop it (SIGTERM, then SIGKILL) on exit."""
    base_url = f"http://127.0.0.1:{port}"
    log = log_path.open("wb")
    proc = await asyncio.create_subprocess_exec(
        *command,
        cwd=REPO,
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        await _wait_ready(base_url + ready_path, proc, log_path)
        yield Server(base_url, proc.pid)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def _wait_ready(url: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            if proc.returncode is not None:
                raise RuntimeError(
                    f"the server exited with {proc.returncode} before {url} was ready:\n"
                    + _tail(log_path)
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            if loop.time() > deadline:
                raise RuntimeError(
                    f"{url} not ready after {READY_TIMEOUT_S:.0f}s:\n" + _tail(log_path)
                )
            await asyncio.sleep(0.05)
