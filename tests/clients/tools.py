"""Where the client tools are (installed by `make clients`) and what to do when one is
missing: skip loudly, or fail under CI=true (like a missing service)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO
from tests.services import service_missing

HERE = Path(__file__).resolve().parent
TS_DIR = HERE / "ts"
PYTHON_CLIENT_ENV = REPO / ".tools" / "python-client"
CHROMIUM = Path(os.environ.get("PARLEY_TEST_CHROMIUM", "/usr/bin/chromium"))
DOCUMENT = REPO / "openapi" / "openapi.json"
SERVICE_KEY = "client-session-service-key"


def python_generator() -> Path:
    exe = PYTHON_CLIENT_ENV / "bin" / "openapi-python-client"
    if not exe.exists():
        service_missing(f"{exe} is missing: run `make clients`")
    return exe


def node_tools() -> Path:
    """The folder whose node_modules holds openapi-typescript, openapi-fetch, tsc and
    playwright-core."""
    if shutil.which("node") is None:
        service_missing("node is not installed (Node.js 20 runs the TypeScript client checks)")
    if not (TS_DIR / "node_modules" / ".bin" / "tsc").exists():
        service_missing(f"{TS_DIR}/node_modules is missing: run `make clients` (npm ci)")
    return TS_DIR


def chromium() -> Path:
    if not CHROMIUM.exists():
        service_missing(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    return CHROMIUM


def run(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a tool; fail the test with its output when it fails."""
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    )
    return proc
