"""A user export lists the user's conversations first and reads each again when its turn
comes: one deleted meanwhile and created again under its id by another user (ids are
global) is left out, not written into the first user's export (tester-2 U6: the export
streams as slowly as its client reads, so its client can time that)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from app.domain.principal import Principal
from app.settings import Settings
from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.api.helpers import create_conv, send
from tests.conftest import app_and_manager


@pytest.mark.parametrize("as_array", [False, True])
@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_listed_id_taken_by_another_users_conversation_is_not_exported(
    backend: str, as_array: bool, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        app_and_manager(settings_factory(state_url=url)) as (client, manager),
    ):
        await create_conv(client, user_id="alice", conversation_id="shared-id")
        first = await create_conv(client, user_id="alice", conversation_id="alice-a")
        await send(client, first["id"], "alice's own")  # the latest updated: listed first
        chunks = await manager.export.user(Principal(role="service"), "alice", as_array=as_array)
        out = [await anext(chunks)]  # the export has listed both and started writing
        assert (await client.delete("/conversations/shared-id")).status_code == 204
        await create_conv(client, user_id="bob", conversation_id="shared-id")
        await send(client, "shared-id", "BOB-PRIVATE-TEXT")
        out += [c async for c in chunks]
    text = b"".join(out).decode()
    assert "BOB-PRIVATE-TEXT" not in text and '"bob"' not in text
    docs = json.loads(text) if as_array else [json.loads(line) for line in text.splitlines()]
    assert [d["conversation"]["id"] for d in docs] == ["alice-a"]
