"""Review R4: a conversation's ETag was `"<version>"` alone, so a conversation deleted and
created again under its id (versions start again at 1) had its predecessor's ETags, and
an `If-Match` read from the deleted one held for the new one (RFC 9110 §8.8.3: a strong
validator changes whenever the representation does). The ETag is now
`"<version>.<incarnation>"`; a bare `"<version>"` is still accepted (what clients build
from `version`), matching the version alone. On every backend."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.api.backends import ALL_BACKENDS, app_on
from tests.api.helpers import assert_problem
from tests.conftest import make_settings

BODY = {
    "pack_id": "general-assistant",
    "prompt_name": "chat",
    "user_id": "etag",
    "conversation_id": "etag-x",
}
TAG = re.compile(r'"1\.[0-9a-f]{12}"')


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_if_match_of_a_deleted_conversation_does_not_hold_for_its_successor(
    backend: str, tmp_path: Path
) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        first = await client.post("/conversations", json={**BODY, "metadata": {"v": "first"}})
        assert first.status_code == 201, first.text
        stale = first.headers["etag"]
        assert TAG.fullmatch(stale), stale
        assert (await client.delete("/conversations/etag-x")).status_code == 204
        second = await client.post("/conversations", json={**BODY, "metadata": {"v": "second"}})
        assert second.status_code == 201, second.text
        assert second.headers["etag"] != stale
        r = await client.patch(
            "/conversations/etag-x", json={"metadata": {"v": "stale"}}, headers={"If-Match": stale}
        )
        assert_problem(r, 412, "precondition_failed")
        got = await client.get("/conversations/etag-x")
        assert got.json()["metadata"] == {"v": "second"}
        assert got.headers["etag"] == second.headers["etag"]
        r = await client.patch(
            "/conversations/etag-x",
            json={"metadata": {"v": "fresh"}},
            headers={"If-Match": f"{stale}, {second.headers['etag']}"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["etag"] != second.headers["etag"]
        assert r.headers["etag"].startswith('"2.')
        # the bare version still holds (the version alone)
        r = await client.patch(
            "/conversations/etag-x", json={"metadata": {"v": "bare"}}, headers={"If-Match": '"2"'}
        )
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_if_match_of_a_deleted_fork_does_not_hold_for_the_fork_made_again(
    backend: str, tmp_path: Path
) -> None:
    """A fork made again under a deleted fork's id has its id, lineage and version: only
    its `created_at` tells them apart (outside tester T1)."""
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        assert (await client.post("/conversations", json=BODY)).status_code == 201
        fork = {"conversation_id": "etag-f", "user_id": "etag"}
        first = await client.post("/conversations/etag-x/fork", json=fork)
        assert first.status_code == 201, first.text
        stale = first.headers["etag"]
        assert (await client.delete("/conversations/etag-f")).status_code == 204
        second = await client.post("/conversations/etag-x/fork", json=fork)
        assert second.status_code == 201, second.text
        assert second.json()["lineage_id"] == first.json()["lineage_id"]
        assert second.json()["version"] == first.json()["version"]
        assert second.headers["etag"] != stale
        r = await client.patch(
            "/conversations/etag-f", json={"metadata": {"v": "stale"}}, headers={"If-Match": stale}
        )
        assert_problem(r, 412, "precondition_failed")
        r = await client.patch(
            "/conversations/etag-f",
            json={"metadata": {"v": "fresh"}},
            headers={"If-Match": second.headers["etag"]},
        )
        assert r.status_code == 200, r.text
