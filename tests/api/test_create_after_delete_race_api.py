"""Creating a client-chosen conversation id again after its conversation was deleted:
concurrent creates of the id (same and different bodies, with and without an
`Idempotency-Key`) make exactly one conversation; every other request is a 409
`conversation_exists` or, for the winner's own key and body, its replay. Never a 500, never
a 201 whose conversation is not the one its request asked for. Every store backend."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.backends import ALL_BACKENDS, app_on
from tests.api.helpers import assert_problem
from tests.conftest import make_settings

CID = "race:after-delete"
BODY_A = {
    "pack_id": "general-assistant",
    "prompt_name": "chat",
    "user_id": "racer",
    "conversation_id": CID,
    "metadata": {"body": "a"},
}
BODY_B = {**BODY_A, "metadata": {"body": "b"}}


def _requests() -> list[tuple[dict[str, Any], str | None]]:
    """(body, key): the first creation's key and body again (a retry), other keys, none."""
    return [
        (BODY_A, "key-1"),
        (BODY_A, "key-1"),
        (BODY_A, "key-1"),
        (BODY_A, "key-2"),
        (BODY_A, "key-2"),
        (BODY_B, "key-3"),
        (BODY_A, None),
        (BODY_A, None),
        (BODY_B, None),
        (BODY_B, None),
    ]


async def _post(client: httpx.AsyncClient, body: dict[str, Any], key: str | None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return await client.post("/conversations", json=body, headers=headers)


def _check_outcomes(
    sent: list[tuple[dict[str, Any], str | None]], answers: list[httpx.Response]
) -> dict[str, Any]:
    """Exactly one conversation made; each 201 is it and is what its request asked for."""
    created = [(req, r) for req, r in zip(sent, answers, strict=True) if r.status_code == 201]
    assert created, [r.text for r in answers]
    lineages = {r.json()["lineage_id"] for _, r in created}
    assert len(lineages) == 1, [(req, r.json()) for req, r in created]
    winner = created[0][1].json()
    for (body, key), r in created:
        assert r.json()["metadata"] == body["metadata"], (body, key, r.json())
    (winner_body, winner_key), _ = created[0]
    replays = {key for (_, key), _ in created[1:]}
    assert replays <= ({winner_key} - {None}), (winner_key, replays)  # only its own retries
    for (body, key), r in zip(sent, answers, strict=True):
        if key is not None and (body, key) == (winner_body, winner_key):
            assert r.status_code == 201, r.text  # the winner's retries are its replays
        elif r.status_code != 201:
            assert_problem(r, 409, "conversation_exists")
    return winner  # type: ignore[no-any-return]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_concurrent_creates_after_a_delete_make_one_conversation(
    backend: str, tmp_path: Path
) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        for round_ in range(3):
            first = await _post(client, BODY_A, "key-1")
            assert first.status_code == 201, (round_, first.text)
            assert (await client.delete(f"/conversations/{CID}")).status_code == 204
            sent = _requests()
            answers = await asyncio.gather(*(_post(client, body, key) for body, key in sent))
            winner = _check_outcomes(sent, answers)
            got = await client.get(f"/conversations/{CID}")
            assert got.status_code == 200 and got.json()["lineage_id"] == winner["lineage_id"]
            listed = await client.get("/conversations", params={"user_id": "racer"})
            assert [c["id"] for c in listed.json()["data"]] == [CID]
            assert (await client.delete(f"/conversations/{CID}")).status_code == 204


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_keyed_retry_does_not_answer_with_a_conversation_another_request_made(
    backend: str, tmp_path: Path
) -> None:
    """The key's conversation was deleted and another request (another body, no key)
    created the id since: the key's retry found a conversation under the id and answered it
    as its own, a 201 with the other request's content. It is a 409 now."""
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        assert (await _post(client, BODY_A, "key-1")).status_code == 201
        assert (await client.delete(f"/conversations/{CID}")).status_code == 204
        other = await _post(client, BODY_B, None)
        assert other.status_code == 201
        retry = await _post(client, BODY_A, "key-1")
        assert_problem(retry, 409, "conversation_exists")
        got = (await client.get(f"/conversations/{CID}")).json()
        assert got["lineage_id"] == other.json()["lineage_id"]
        assert got["metadata"] == {"body": "b"}
        # once that one is gone too, the key creates afresh, and its replays return that
        assert (await client.delete(f"/conversations/{CID}")).status_code == 204
        again = await _post(client, BODY_A, "key-1")
        assert again.status_code == 201 and again.json()["metadata"] == {"body": "a"}
        replay = await _post(client, BODY_A, "key-1")
        assert replay.status_code == 201
        assert replay.json()["lineage_id"] == again.json()["lineage_id"]
