"""`make` resolves the real interpreter once and syncs `.venv` only when the lock or the
project changes, so a second `make run`/`make test` rebuilds nothing (pyenv shims used to
make uv rebuild `.venv` on every call)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO,
        # not the flags of a `make -s test` this may run under (silent mode hides
        # "Nothing to be done")
        env={
            **{
                k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")
            },
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def shim(tmp_path: Path) -> str:
    """A pyenv-like shim: a script in front of the real interpreter."""
    path = tmp_path / "python3"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_an_installed_environment_is_up_to_date_for_make(shim: str) -> None:
    if shutil.which("make") is None or not (REPO / ".venv" / ".parley-synced-dev").exists():
        pytest.skip("needs make and an environment installed by `make install-dev`")
    before = (REPO / ".venv" / "pyvenv.cfg").stat().st_mtime_ns
    for target in ("install", "install-dev"):
        # `--question`: exit 0 only if nothing needs to be done
        assert _make("--question", target).returncode == 0, target
        assert _make("--question", target, f"PY={shim}").returncode == 0, target
    out = _make("install-dev", f"PY={shim}")
    assert out.returncode == 0 and "Nothing to be done" in out.stdout, out.stdout + out.stderr
    assert (REPO / ".venv" / "pyvenv.cfg").stat().st_mtime_ns == before


def test_the_interpreter_is_resolved_through_the_shim(shim: str) -> None:
    if shutil.which("make") is None:
        pytest.skip("needs make")
    out = _make("--eval=print-python: ; @echo $(UV_PYTHON)", "print-python", f"PY={shim}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == os.path.realpath(sys.executable)
