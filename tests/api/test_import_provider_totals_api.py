"""A conversation whose provider reports a total beyond prompt + completion (reasoning
tokens, e.g. Gemini's OpenAI endpoint) exports and imports again: the import's usage check
asks total >= input + output, as Parley stores the provider's total (review R9: the
equality check refused such a conversation's own export)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import tests.fakes.openai_fake as openai_fake
from app.settings import Settings
from tests.api.export_helpers import export_doc
from tests.api.helpers import create_conv, send
from tests.conftest import running_app
from tests.fakes.openai_fake import FakeOpenAI, Reply


def _usage_with_thoughts(prompt: int, completion: int) -> bytes:
    body = {
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": "gpt-4o-mini", "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion + 5},  # 5 reasoning tokens
    }  # fmt: skip
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def test_a_conversations_own_export_imports_whatever_total_its_provider_reported(
    tmp_path: Path, settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_fake, "_usage", _usage_with_thoughts)
    fake = FakeOpenAI(default=Reply(text="noted"))
    async with (
        fake.client() as http,
        running_app(settings_factory(openai_api_key="sk-test"), http) as client,
    ):
        cid = (await create_conv(client, provider="openai", model="gpt-4o-mini"))["id"]
        reply = (await send(client, cid, "hello"))["reply"]
        assert reply["usage"]["total_tokens"] == 23  # stored as the provider said
        doc = await export_doc(client, cid)
        r = await client.post("/conversations/import", params={"conversation_id": "copy"}, json=doc)
        assert r.status_code == 201, r.text
