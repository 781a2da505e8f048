"""Review R10: text a provider streams may hold a lone UTF-16 surrogate (a `\\ud83d` JSON
escape without its pair: an upstream or proxy that escapes non-ASCII and cut an emoji
between two chunks). `json.loads` accepts it, no store and no UTF-8 writer can encode it:
the run failed with 500 internal_error and an ERROR traceback ("failed unexpectedly") on
SQLite/PostgreSQL/Redis; on memory the turn committed and then its response was a 500.
Tool outputs already get U+FFFD for such characters (`app.tools.limits.storable`); a
provider's text should too (or fail as a provider error, never internal_error).

A NUL (which PostgreSQL's jsonb refuses) gets the same. Failed on main at b5a7b5e
(500 internal_error); `app.manager.provider_text` cleans it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.conftest import make_settings, running_app
from tests.fakes.openai_fake import FakeOpenAI, Reply


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("bad", ["\ud83d", "\x00"], ids=["lone-surrogate", "nul"])
async def test_unstorable_provider_text_does_not_fail_the_turn(
    tmp_path: Path, backend: str, stream: bool, bad: str
) -> None:
    fake = FakeOpenAI(replies=[Reply(text=f"smile {bad} please")])
    async with state_url_for(backend, tmp_path) as url:
        settings = make_settings(tmp_path, state_url=url, openai_api_key="sk-test")
        async with fake.client() as http, running_app(settings, provider_client=http) as c:
            r = await c.post(
                "/conversations",
                json={
                    "pack_id": "general-assistant",
                    "prompt_name": "chat",
                    "user_id": "alice",
                    "provider": "openai",
                    "model": "gpt-4o-mini",
                },
            )
            cid = r.json()["id"]
            r = await c.post(
                f"/conversations/{cid}/messages", json={"content": "hello", "stream": stream}
            )
            assert r.status_code == 200, r.text
            if stream:
                assert "event: run.completed" in r.text, r.text[-500:]
                assert "internal_error" not in r.text
            else:
                assert r.json()["reply"]["content"] == "smile \ufffd please"
            page = (await c.get(f"/conversations/{cid}/messages")).json()["data"]
            assert [m["content"] for m in page] == ["hello", "smile \ufffd please"]
