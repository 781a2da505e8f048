"""Clients generated from the committed document run the same scripted session against a
real uvicorn: packs, create, two sends, a streamed send read through the client's raw
stream, history, a typed 404/409/412/422 (and 401) problem, patch, delete.

Python: openapi-python-client (pinned with its dependencies in
`tests/clients/python/requirements.lock`, isolated in `.tools/python-client`). TypeScript:
openapi-typescript + openapi-fetch (pinned by `tests/clients/ts/package-lock.json`), with
default generator options, `tsc --noEmit` reporting 0 errors before the session runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.tools import (
    DOCUMENT,
    HERE,
    PYTHON_CLIENT_ENV,
    SERVICE_KEY,
    node_tools,
    python_generator,
    run,
)
from tests.e2e.server import uvicorn_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("clients")
    env = {
        "PARLEY_STATE_URL": f"sqlite+aiosqlite:///{data}/parley.db",
        "PARLEY_MEDIA_DIR": str(data / "media"),
        "PARLEY_AUTH": "keys",
        "PARLEY_API_KEYS": json.dumps([{"key": SERVICE_KEY, "role": "service"}]),
    }
    with uvicorn_server(env) as url:
        yield url


def _session_output(stdout: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(stdout.strip().splitlines()[-1])
    assert result["session"] == "ok"
    assert {k: result[k] for k in ("404", "409", "412", "422", "401")} == {
        "404": "conversation_not_found",
        "409": "conversation_exists",
        "412": "precondition_failed",
        "422": "prompt_not_found",
        "401": "unauthorized",
    }
    assert isinstance(result["deltas"], int) and result["deltas"] >= 1
    return result


def test_python_client_session(server: str, tmp_path: Path) -> None:
    generator = python_generator()
    out = tmp_path / "parley_client"
    path = f"{PYTHON_CLIENT_ENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    generated = run(
        [
            str(generator),
            "generate",
            "--path",
            str(DOCUMENT),
            "--meta",
            "none",
            "--output-path",
            str(out),
        ],
        env={"PATH": path},
    )
    assert "Warning" not in generated.stdout + generated.stderr, generated.stdout
    session = run(
        [
            str(PYTHON_CLIENT_ENV / "bin" / "python"),
            str(HERE / "python" / "session.py"),
            str(tmp_path),
        ],
        env={"PARLEY_URL": server, "PARLEY_KEY": SERVICE_KEY},
    )
    _session_output(session.stdout)


def test_typescript_client_session(server: str) -> None:
    ts = node_tools()
    bin_ = ts / "node_modules" / ".bin"
    run([str(bin_ / "openapi-typescript"), str(DOCUMENT), "-o", "generated/schema.d.ts"], cwd=ts)
    checked = run([str(bin_ / "tsc"), "--noEmit", "-p", "."], cwd=ts, timeout=300)
    assert checked.stdout.strip() == "", checked.stdout  # tsc prints nothing: 0 errors
    session = run(
        ["node", "run.mjs", "session.ts"],
        cwd=ts,
        env={"PARLEY_URL": server, "PARLEY_KEY": SERVICE_KEY},
    )
    _session_output(session.stdout)
