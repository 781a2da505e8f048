"""GET /playground in a real browser: headless Chromium (Debian's `/usr/bin/chromium`,
driven by `playwright-core`, tests/clients/ts/playground_check.ts) against a real uvicorn.
It creates a conversation from the prompt form (after the server's 422 is shown next to the
fields), streams replies (DOM updates counted while they stream), reloads in the middle of a
stream and sees the reply finish, stops a run, attaches an image by file input and by drag
and drop, and pages through a user's conversations. Screenshots of each step are left under
test-output/playground/ (git-ignored) for a reviewer."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients.playground_server import MOCK_DELAY_MS, PAGER_CONVERSATIONS, PlaygroundServer
from tests.clients.tools import chromium, node_tools, run
from tests.conftest import REPO
from tests.e2e.server import uvicorn_server

pytestmark = pytest.mark.e2e
SHOTS = REPO / "test-output" / "playground"
EIGHT = "one two three four five six seven eight"
LONG = " ".join(f"word{i}" for i in range(60))


def png(width: int, height: int) -> bytes:
    """A real PNG (the server sniffs the bytes and reads the dimensions)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes([200, 40, 40]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _browse(url: str, tmp: Path) -> dict[str, Any]:
    browser = chromium()
    ts = node_tools()
    shutil.rmtree(SHOTS, ignore_errors=True)
    image = tmp / "red.png"
    image.write_bytes(png(24, 16))
    out = run(
        ["node", "run.mjs", "playground_check.ts"],
        cwd=ts,
        env={
            "PARLEY_URL": url,
            "CHROMIUM": str(browser),
            "TMPDIR": str(tmp),
            "SHOTS": str(SHOTS),
            "IMAGE": str(image),
            "LONG_TEXT": LONG,
        },
        timeout=180,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    (SHOTS / "result.json").write_text(json.dumps(result, indent=1))
    assert "error" not in result, result.get("error")
    return result


def test_playground_in_a_browser(playground_server: PlaygroundServer, browser_tmp: Path) -> None:
    server = playground_server.url
    result = _browse(server, browser_tmp)
    # the browser logs the form's expected 422; nothing else may go wrong in the page
    expected = "the server responded with a status of 422"
    assert [m for m in result["console"] if expected not in m] == [], result["console"]
    assert result["packs"] == len(httpx.get(f"{server}/packs").json()["data"]) == 5

    # the form is built from the prompt's declared variables
    fields = {f["name"]: f for f in result["fields"]}
    assert set(fields) == {"company_name", "tone", "product"}
    assert fields["tone"]["tag"] == "SELECT"
    assert fields["tone"]["options"] == ["", '"friendly"', '"formal"']  # optional: "not set"
    assert fields["tone"]["value"] == '"friendly"'  # the declared default
    assert fields["company_name"]["value"] == ""
    assert result["formErrors"]["company_name"] == "required variable is missing"
    assert "invalid_variables" in result["formErrors"]["form"]
    assert result["conv"] and result["listed"] >= 1

    stream = result["stream"]
    assert stream["text"] == f"echo: {EIGHT}"
    streaming = [u for u in stream["updates"] if u["status"] == "streaming" and u["text"]]
    assert len(streaming) >= 3, stream["updates"]
    done = [u for u in stream["updates"] if u["status"] == "completed"]
    assert done and done[0]["at"] - streaming[0]["at"] >= 2 * MOCK_DELAY_MS, stream["updates"]
    assert " in · " in stream["usage"] and "$" in stream["usage"], stream["usage"]

    reload = result["reload"]
    assert reload["live"]["run"] and reload["live"]["lastId"], reload["live"]
    assert reload["reattached"] == reload["live"]["run"], reload
    assert reload["afterReloadText"].startswith(reload["before"]), reload
    assert reload["text"] == f"echo: {LONG}", reload["text"]
    assert " in · " in reload["usage"], reload
    assert reload["liveAfter"] is None
    assert reload["replies"] == 2  # no duplicated bubble

    assert result["stop"] == {"status": "cancelled", "stopHidden": True}

    assert result["preview"] == 24  # the preview image decoded (naturalWidth)
    assert result["image"]["reply"].startswith("echo: what is this"), result["image"]
    assert "[image image/png" in result["image"]["reply"], result["image"]
    assert result["image"]["userText"] == "what is this"
    assert result["image"]["attachmentsLeft"] == 0
    assert result["dropped"].startswith("dropped.png")
    # a parts-only message: the reply describes the one image it got, nothing else
    assert result["droppedReply"].startswith("echo:  [image image/png"), result["droppedReply"]

    # committed history: 4 turns (the cancelled one committed nothing), usage on each reply
    roles = [m["role"] for m in result["history"]]
    assert roles == ["user", "assistant"] * 4, roles
    assert all(" in · " in m["usage"] for m in result["history"] if m["role"] == "assistant")
    assert [m["images"] for m in result["history"] if m["role"] == "user"] == [0, 0, 1, 1]

    paging = result["paging"]
    assert paging["firstPage"] == 10
    assert paging["all"] == PAGER_CONVERSATIONS and paging["moreHidden"]
    assert len(set(paging["ids"])) == PAGER_CONVERSATIONS

    shots = sorted(p.name for p in SHOTS.glob("*.png"))
    assert len(shots) == len(result["steps"]) >= 10, shots


USER_KEY = "playground-user-key"


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("playground-keys")
    keys = [{"key": USER_KEY, "role": "user", "user_id": "pg-keyed"}]
    env = {
        "PARLEY_STATE_URL": f"sqlite+aiosqlite:///{data}/parley.db",
        "PARLEY_MEDIA_DIR": str(data / "media"),
        "PARLEY_AUTH": "keys",
        "PARLEY_API_KEYS": json.dumps(keys),
        "PARLEY_PLAYGROUND": "true",
    }
    with uvicorn_server(env) as url:
        yield url


def test_playground_asks_for_a_key_and_keeps_it_in_the_tab(
    keyed_server: str, browser_tmp: Path
) -> None:
    browser = chromium()
    ts = node_tools()
    SHOTS.mkdir(parents=True, exist_ok=True)
    out = run(
        ["node", "run.mjs", "playground_keys.ts"],
        cwd=ts,
        env={
            "PARLEY_URL": keyed_server,
            "CHROMIUM": str(browser),
            "TMPDIR": str(browser_tmp),
            "SHOTS": str(SHOTS),
            "USER_KEY": USER_KEY,
        },
        timeout=120,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert "error" not in result, result.get("error")
    assert result["asked"] == {"status": "this service needs an API key", "packs": 0}
    assert result["wrong"] == {"packs": 0}
    accepted = result["accepted"]
    assert accepted["packs"] == 3 and accepted["formHidden"]
    assert accepted["session"] == USER_KEY
    assert accepted["local"] == 0 and accepted["cookies"] == 0
    assert accepted["reply"] == "echo: keyed hello"
    assert accepted["filter"] == "pg-keyed" and accepted["listed"] == 1
    assert result["hostile"] == {
        "elements": 0,
        "reply": 'echo: <img src=x onerror="globalThis.__pwned=true"><b>bold</b>',
        "pwned": False,
    }
    assert result["reloaded"] == {"packs": 3, "formHidden": True}
    assert result["newTab"] == {"packs": 0, "session": None}
