"""An import's datetimes are stored in UTC on every backend, whatever the document wrote
(review R-G, R-C): naive ones are taken as UTC, offsets converted (README, Export and
import). Before, the memory store kept naive values and sorted them with aware ones (a
TypeError: 500 on GET /conversations and GET /users/{id}/export), and Redis kept the
document's text, so a user erasure, which names the conversation by the instant in UTC,
missed the runs of a conversation imported with an offset (their records, with the
user's text, stayed 24 h)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.api.export_helpers import recomputed_checksum
from tests.conftest import app_and_manager, make_settings

BODY = {"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "nv"}
NAIVE, IN_UTC = "2026-01-01T12:00:00.123456", "2026-01-01T12:00:00.123456Z"
OFFSET = "2026-01-01T14:00:00.123456+02:00"  # the same instant


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_naive_and_offset_dates_are_stored_in_utc(backend: str, tmp_path: Path) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        app_and_manager(make_settings(tmp_path, state_url=url)) as (client, _),
    ):
        r = await client.post("/conversations", json={**BODY, "conversation_id": "n0"})
        assert r.status_code == 201, r.text
        r = await client.post("/conversations/n0/messages", json={"content": "a"})
        assert r.status_code == 200, r.text
        r = await client.post("/conversations/n0/checkpoints", json={"name": "c"})
        assert r.status_code == 201, r.text
        doc: dict[str, Any] = (await client.get("/conversations/n0/export")).json()
        for cid, when in (("naive", NAIVE), ("offset", OFFSET)):
            doc["conversation"]["id"] = cid
            doc["conversation"]["created_at"] = doc["conversation"]["updated_at"] = when
            for record in (*doc["messages"], *doc["checkpoints"]):
                record["created_at"] = when
            doc["checksum"] = recomputed_checksum(doc)
            r = await client.post("/conversations/import", json=doc)
            assert r.status_code == 201, r.text

            conv = (await client.get(f"/conversations/{cid}")).json()
            assert (conv["created_at"], conv["updated_at"]) == (IN_UTC, IN_UTC), cid
            messages = (await client.get(f"/conversations/{cid}/messages")).json()["data"]
            assert {m["created_at"] for m in messages} == {IN_UTC}, cid
            checkpoints = (await client.get(f"/conversations/{cid}/checkpoints")).json()["data"]
            assert {c["created_at"] for c in checkpoints} == {IN_UTC}, cid
        r = await client.get("/conversations", params={"user_id": "nv"})
        assert r.status_code == 200, r.text
        assert sorted(c["id"] for c in r.json()["data"]) == ["n0", "naive", "offset"]
        r = await client.get("/users/nv/export")
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("created", [IN_UTC, OFFSET, NAIVE])
async def test_user_erasure_erases_the_runs_of_a_conversation_imported_with_any_offset(
    backend: str, created: str, tmp_path: Path
) -> None:
    """DESIGN §6: DELETE /users/{id}/conversations erases everything of that user, the run
    records and events of its conversations included."""
    async with (
        state_url_for(backend, tmp_path) as url,
        app_and_manager(make_settings(tmp_path, state_url=url)) as (client, manager),
    ):
        r = await client.post("/conversations", json={**BODY, "conversation_id": "src"})
        assert r.status_code == 201, r.text
        r = await client.post("/conversations/src/messages", json={"content": "a"})
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = (await client.get("/conversations/src/export")).json()
        assert (await client.delete("/conversations/src")).status_code == 204
        doc["conversation"]["id"] = "imported"
        doc["conversation"]["created_at"] = created
        doc["checksum"] = recomputed_checksum(doc)
        r = await client.post("/conversations/import", json=doc)
        assert r.status_code == 201, r.text

        r = await client.post("/conversations/imported/messages", json={"content": "secret"})
        assert r.status_code == 200, r.text
        run_id = r.json()["run_id"]
        assert await manager.coordinator.runs.get(run_id) is not None

        r = await client.delete("/users/nv/conversations")
        assert r.status_code == 200 and r.json()["deleted"] == 1, r.text
        left = await manager.coordinator.runs.get(run_id)
        assert left is None, f"the erased user's run record is still stored: {left}"
