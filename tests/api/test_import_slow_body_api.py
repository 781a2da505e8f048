"""An import whose body is still arriving holds no admission slot: with one slot, a turn
goes through while a slow upload is under way (review R5: the slot was taken before the
body was read, so slow uploads could make every turn of the instance 503 `overloaded`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from app.settings import Settings
from tests.api.export_helpers import export_doc
from tests.api.helpers import create_conv, send
from tests.conftest import app_and_manager


async def test_a_slowly_uploaded_import_does_not_block_turns(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(admission_concurrency=1, admission_timeout_s=0.5)
    async with app_and_manager(settings) as (client, _manager):
        conv = await create_conv(client)
        await send(client, conv["id"], "hello")
        doc = json.dumps(await export_doc(client, conv["id"])).encode()
        release = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield doc[:10]
            await release.wait()  # the client is still uploading
            yield doc[10:]

        uploading = asyncio.create_task(
            client.post(
                "/conversations/import",
                params={"conversation_id": "slow-import"},
                content=slow_body(),
                headers={"content-type": "application/json"},
            )
        )
        await asyncio.sleep(0.1)
        try:
            r = await client.post(f"/conversations/{conv['id']}/messages", json={"content": "q"})
            assert r.status_code == 200, r.text
        finally:
            release.set()
            await uploading
