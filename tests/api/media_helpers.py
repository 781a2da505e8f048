"""Helpers for the media API tests: an app with user keys, its manager, the media dir."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.types import Receive, Scope, Send

from app.main import create_app
from app.manager.manager import ConversationManager
from app.settings import ApiKey, Settings
from tests.conftest import make_settings

KEYS = {"alice": "key-alice", "bob": "key-bob", "service": "key-service"}


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


@dataclass
class MediaApp:
    client: httpx.AsyncClient
    manager: ConversationManager
    settings: Settings

    def blob_files(self) -> list[Path]:
        root = self.settings.media_dir / "blobs"
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

    async def conversation(self, who: str, **body: Any) -> dict[str, Any]:
        payload = {"pack_id": "general-assistant", "prompt_name": "chat", **body}
        r = await self.client.post("/conversations", json=payload, headers=auth(who))
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    async def send_parts(
        self, who: str, conv_id: str, parts: list[dict[str, Any]]
    ) -> httpx.Response:
        return await self.client.post(
            f"/conversations/{conv_id}/messages", json={"parts": parts}, headers=auth(who)
        )


def image_part(data: bytes, mime: str = "image/png", **media: Any) -> dict[str, Any]:
    encoded = base64.b64encode(data).decode()
    return {"type": "image", "media": {"base64": encoded, "mime_type": mime, **media}}


@asynccontextmanager
async def media_app(
    tmp_path: Path, provider_client: httpx.AsyncClient | None = None, **overrides: Any
) -> AsyncIterator[MediaApp]:
    keys = [
        ApiKey(key=KEYS["alice"], role="user", user_id="alice"),
        ApiKey(key=KEYS["bob"], role="user", user_id="bob"),
        ApiKey(key=KEYS["service"], role="service"),
    ]
    settings = make_settings(tmp_path, auth="keys", api_keys=keys, **overrides)
    app = create_app(settings, provider_client=provider_client)
    async with app.router.lifespan_context(app) as state:
        assert state is not None

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = dict(state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as c:
            yield MediaApp(c, state["manager"], settings)
