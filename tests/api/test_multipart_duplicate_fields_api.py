"""A multipart text field given twice is refused.

Found by the outside tester: a multipart turn with a field given twice kept the last
one and silently drops the other: `content=hi` + `content=there` stores "there" only (the
user's text "hi" is lost with a 200), `stream=false` + `stream=true` streams. JSON
bodies cannot carry duplicates; the multipart form should refuse them (422
validation_error at the field) rather than pick one.
"""

from __future__ import annotations

from pathlib import Path

from tests.api.helpers import create_conv
from tests.conftest import make_settings, running_app


async def test_a_multipart_turn_with_content_twice_is_refused(tmp_path: Path) -> None:
    async with running_app(make_settings(tmp_path)) as client:
        cid = (await create_conv(client))["id"]
        r = await client.post(
            f"/conversations/{cid}/messages",
            files=[("content", (None, "hi")), ("content", (None, "there"))],
        )
        stored = (await client.get(f"/conversations/{cid}")).json()["message_count"]
        assert (r.status_code, stored) == (422, 0), r.text[:300]
        assert r.json()["code"] == "validation_error"
        assert r.json()["errors"][0]["loc"] == ["body", "content"]
