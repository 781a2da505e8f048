"""A turn whose context window holds no media part does not scan its provider request for
stored media (`ContextWindow.has_media`); once the window holds an image, every turn
resolves it (its bytes still reach the provider)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from app.providers.base import ProviderRequest
from tests import media_samples as samples
from tests.api.media_helpers import auth, image_part, media_app


async def test_only_windows_with_media_are_resolved(tmp_path: Path) -> None:
    png = samples.png_of_size(300_000)  # over the inline threshold: stored, by media_id
    sha = hashlib.sha256(png).hexdigest()
    async with media_app(tmp_path) as app:
        media = app.manager.media
        resolved: list[int] = []
        real = media.resolve

        async def counting(request: ProviderRequest) -> ProviderRequest:
            resolved.append(len(request.messages))
            return await real(request)

        media.resolve = counting  # type: ignore[method-assign]
        conv = await app.conversation("alice")
        for text in ("hello", "no media here"):
            r = await app.send_parts("alice", conv["id"], [{"type": "text", "text": text}])
            assert r.status_code == 200, r.text
        assert resolved == []
        r = await app.send_parts("alice", conv["id"], [image_part(png)])
        assert r.status_code == 200, r.text
        assert f"sha256={sha}" in r.json()["reply"]["content"]
        r = await app.send_parts("alice", conv["id"], [{"type": "text", "text": "and now?"}])
        assert r.status_code == 200, r.text
        assert len(resolved) == 2  # the image's turn and the one after (its window holds it)
        preview: Any = await app.client.get(
            f"/conversations/{conv['id']}/context", headers=auth("alice")
        )
        assert preview.status_code == 200, preview.text
        assert len(resolved) == 3  # the dry run resolves like a turn
