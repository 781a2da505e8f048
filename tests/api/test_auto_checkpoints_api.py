"""Auto checkpoints over HTTP on every store backend: `checkpoint_policy` accepted at
create and PATCH, validated, returned; `auto` checkpoints made every n turns with their
turn number, pruned by the policy; turn numbers on committed messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.api.backends import BACKENDS, state_url_for
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import running_app

POLICY = {
    "enabled": True,
    "every_n_turns": 2,
    "keep_all_hours": 0,
    "keep_every_nth": 2,
    "max_age_days": None,
    "max_auto": 2,
}


@pytest.fixture(params=BACKENDS)
async def client(
    request: pytest.FixtureRequest, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_factory(checkpoint_every_n_turns=3, checkpoint_max_auto=7)
    async with (
        state_url_for(request.param, tmp_path) as url,
        running_app(settings.model_copy(update={"state_url": url})) as c,
    ):
        yield c


async def _autos(client: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
    r = await client.get(f"/conversations/{cid}/checkpoints", params={"kind": "auto"})
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


async def test_default_policy_comes_from_settings_and_is_returned(
    client: httpx.AsyncClient,
) -> None:
    conv = await create_conv(client)
    assert conv["checkpoint_policy"] == {
        "enabled": True,
        "every_n_turns": 3,
        "keep_all_hours": 24.0,
        "keep_every_nth": 5,
        "max_age_days": 30.0,
        "max_auto": 7,
    }
    got = (await client.get(f"/conversations/{conv['id']}")).json()
    assert got["checkpoint_policy"] == conv["checkpoint_policy"]
    replies = [await send(client, conv["id"], f"q{i}") for i in range(4)]
    autos = await _autos(client, conv["id"])
    assert [(a["turn"], a["message_id"]) for a in autos] == [(3, replies[2]["reply"]["id"])]
    assert autos[0]["message_count"] == 6 and autos[0]["name"] == "turn 3"


async def test_auto_checkpoints_every_n_turns_pruned_by_turn_number(
    client: httpx.AsyncClient,
) -> None:
    conv = await create_conv(client, checkpoint_policy=POLICY)
    assert conv["checkpoint_policy"] == POLICY
    cid = conv["id"]
    manual = await client.post(f"/conversations/{cid}/checkpoints", json={"name": "mine"})
    assert manual.status_code == 201
    for i in range(1, 11):
        turn = await send(client, cid, f"q{i}")
        assert [m["turn"] for m in turn["messages"]] == [i, i]
    # made at 2, 4, ..., 10; keep_all_hours 0: only multiples of 2*2 survive, at most 2
    assert sorted(a["turn"] for a in await _autos(client, cid)) == [4, 8]
    kinds = [
        c["kind"] for c in (await client.get(f"/conversations/{cid}/checkpoints")).json()["data"]
    ]
    assert sorted(kinds) == ["auto", "auto", "manual"]
    # disabled by PATCH: no more auto checkpoints
    off = {**POLICY, "enabled": False}
    r = await client.patch(f"/conversations/{cid}", json={"checkpoint_policy": off})
    assert r.status_code == 200 and r.json()["checkpoint_policy"] == off
    for i in range(2):
        await send(client, cid, f"later{i}")
    assert sorted(a["turn"] for a in await _autos(client, cid)) == [4, 8]


async def test_turn_numbers_follow_the_path_after_a_rollback(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client, checkpoint_policy={**POLICY, "enabled": False})
    cid = conv["id"]
    first = await send(client, cid, "one")
    await send(client, cid, "two")
    r = await client.post(
        f"/conversations/{cid}/rollback", json={"message_id": first["reply"]["id"]}
    )
    assert r.status_code == 200, r.text
    again = await send(client, cid, "two again")
    assert [m["turn"] for m in again["messages"]] == [2, 2]


@pytest.mark.parametrize(
    "policy",
    [
        {"every_n_turns": 0},
        {"max_auto": 0},
        {"keep_every_nth": -1},
        {"max_age_days": 1, "keep_all_hours": 48},
        {"every_n_turns": 2, "sometimes": True},
        {"enabled": "perhaps"},
    ],
)
async def test_bad_checkpoint_policies_are_422(
    client: httpx.AsyncClient, policy: dict[str, Any]
) -> None:
    body = {"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "alice"}
    r = await client.post("/conversations", json={**body, "checkpoint_policy": policy})
    assert_problem(r, 422, "validation_error")
    assert (await client.get("/conversations", params={"user_id": "alice"})).json()["data"] == []
    conv = await create_conv(client)
    r = await client.patch(f"/conversations/{conv['id']}", json={"checkpoint_policy": policy})
    assert_problem(r, 422, "validation_error")
