"""`parley export` / `parley import` as real processes against a real uvicorn on loopback:
export → delete → import reproduces the conversation; a user's NDJSON round trip; a
refused document's problems on stderr and exit status 1."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import REPO, uvicorn_server
from tests.e2e.test_cli_chat import service_env

pytestmark = pytest.mark.e2e


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    with uvicorn_server(service_env(tmp_path)) as url:
        yield url


def parley(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        timeout=30,
    )


def _conversation(url: str, user: str, texts: list[str]) -> str:
    r = httpx.post(
        f"{url}/conversations",
        json={"pack_id": "general-assistant", "prompt_name": "chat", "user_id": user},
        timeout=10,
    )
    cid: str = r.json()["id"]
    for text in texts:
        assert httpx.post(f"{url}/conversations/{cid}/messages", json={"content": text},
                          timeout=10).status_code == 200  # fmt: skip
    return cid


def _history(url: str, cid: str) -> list[tuple[str, str | None, str]]:
    r = httpx.get(f"{url}/conversations/{cid}/messages", params={"limit": 500}, timeout=10)
    assert r.status_code == 200, r.text
    return [(m["id"], m["parent_id"], m["content"]) for m in r.json()["data"]]


def test_export_delete_import_through_the_cli(server_url: str, tmp_path: Path) -> None:
    cid = _conversation(server_url, "cli-user", ["one", "two"])
    history = _history(server_url, cid)
    exported = parley("export", cid, "--url", server_url)
    assert exported.returncode == 0, exported.stderr
    doc = json.loads(exported.stdout)
    assert doc["format"] == "parley.conversation/v1" and len(doc["messages"]) == 4
    file = tmp_path / "conv.json"
    file.write_bytes(exported.stdout)
    assert httpx.delete(f"{server_url}/conversations/{cid}", timeout=10).status_code == 204

    imported = parley("import", str(file), "--url", server_url)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.decode().split() == [cid]
    assert _history(server_url, cid) == history
    # again: the id is taken now; the problem is reported and the exit status is 1
    again = parley("import", str(file), "--url", server_url)
    assert again.returncode == 1 and b"409 conversation_exists" in again.stderr


def test_user_ndjson_round_trip_and_refused_lines(server_url: str, tmp_path: Path) -> None:
    ids = sorted(_conversation(server_url, "nd-user", [f"hi {i}"]) for i in range(3))
    exported = parley("export", "--user", "nd-user", "--url", server_url)
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.decode().splitlines()
    assert len(lines) == 3
    for cid in ids:
        assert httpx.delete(f"{server_url}/conversations/{cid}", timeout=10).status_code == 204
    bad = json.loads(lines[0])
    bad["messages"][0]["content"] = "altered"
    stdin = "\n".join([lines[1], json.dumps(bad), lines[2]]).encode()
    result = parley("import", "-", "--url", server_url, stdin=stdin)
    assert result.returncode == 1
    assert len(result.stdout.decode().split()) == 2  # the two untouched documents
    assert b"import (document 2): 422 validation_error" in result.stderr
    assert b"body.checksum:" in result.stderr
    missing = parley("export", "nope", "--url", server_url)
    assert missing.returncode == 1 and b"404 conversation_not_found" in missing.stderr
