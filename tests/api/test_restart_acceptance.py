"""Acceptance: a conversation survives a restart of the service, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from app.settings import Settings
from tests.api.backends import BACKENDS, state_url_for
from tests.api.helpers import create_conv, send
from tests.conftest import running_app
from tests.fakes.openai_fake import FakeOpenAI, Reply


@pytest.fixture(params=BACKENDS)
async def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with state_url_for(request.param, tmp_path) as url:
        yield url


async def test_history_survives_restart(
    state_url: str, settings_factory: Callable[..., Settings]
) -> None:
    fake = FakeOpenAI(default=Reply(text="noted"))
    settings = settings_factory(state_url=state_url, openai_api_key="sk-test")
    async with fake.client() as http:
        async with running_app(settings, provider_client=http) as client:
            conv = await create_conv(client, provider="openai")
            for text in ("one", "two", "three"):
                await send(client, conv["id"], text)
        # the service is stopped; start a new one on the same store
        async with running_app(settings, provider_client=http) as client:
            history = (await client.get(f"/conversations/{conv['id']}/messages")).json()["data"]
            assert [(m["role"], m["content"]) for m in history] == [
                ("user", "one"),
                ("assistant", "noted"),
                ("user", "two"),
                ("assistant", "noted"),
                ("user", "three"),
                ("assistant", "noted"),
            ]
            await send(client, conv["id"], "four")
    fourth = fake.requests[-1]["messages"]
    assert [(m["role"], m["content"]) for m in fourth[1:]] == [
        ("user", "one"),
        ("assistant", "noted"),
        ("user", "two"),
        ("assistant", "noted"),
        ("user", "three"),
        ("assistant", "noted"),
        ("user", "four"),
    ]
