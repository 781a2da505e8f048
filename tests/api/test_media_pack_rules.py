"""A prompt's `image.default_detail` is applied to image parts sent without `detail`."""

from __future__ import annotations

from pathlib import Path

from tests import media_samples as samples
from tests.api.media_helpers import auth, image_part, media_app
from tests.fakes.openai_fake import FakeOpenAI

PACK = {
    "id": "detail-pack",
    "name": "Detail",
    "version": "1.0.0",
    "template_engine": {"version": "v1", "syntax": "{{variable}}"},
    "prompts": {
        "chat": {
            "id": "chat",
            "name": "Chat",
            "version": "1.0.0",
            "system_template": "Look.",
            "media": {"enabled": True, "image": {"default_detail": "low"}},
        }
    },
}


async def test_default_detail_is_stored_and_sent(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    async with (
        fake.client() as http,
        media_app(tmp_path, provider_client=http, openai_api_key="sk-test") as app,
    ):
        assert (
            await app.client.post("/packs", json=PACK, headers=auth("service"))
        ).status_code == 201
        conv = await app.conversation(
            "alice", pack_id="detail-pack", provider="openai", model="gpt-4o-mini"
        )
        parts = [image_part(samples.png(4, 4)), image_part(samples.png(5, 5), detail="high")]
        r = await app.send_parts("alice", conv["id"], parts)
        assert r.status_code == 200, r.text
        stored = r.json()["messages"][0]["parts"]
        assert [p["media"]["detail"] for p in stored] == ["low", "high"]
        sent = fake.requests[0]["messages"][-1]["content"]
        assert [c["image_url"]["detail"] for c in sent] == ["low", "high"]
