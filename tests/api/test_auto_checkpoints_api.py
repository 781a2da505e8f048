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


async def test_a_partial_policy_keeps_the_fields_it_leaves_out(client: httpx.AsyncClient) -> None:
    """Omitted fields come from the settings at create and from the conversation's policy
    at PATCH; they came from the model's own defaults (max_auto 50 although
    PARLEY_CHECKPOINT_MAX_AUTO is 7 here), and a PATCH of one field reset the others."""
    conv = await create_conv(client, checkpoint_policy={"every_n_turns": 4})
    assert conv["checkpoint_policy"]["every_n_turns"] == 4
    assert conv["checkpoint_policy"]["max_auto"] == 7  # the setting, not the model's 50
    cid = conv["id"]
    r = await client.patch(f"/conversations/{cid}", json={"checkpoint_policy": POLICY})
    assert r.status_code == 200, r.text
    r = await client.patch(f"/conversations/{cid}", json={"checkpoint_policy": {"max_auto": 9}})
    assert r.status_code == 200, r.text
    assert r.json()["checkpoint_policy"] == {**POLICY, "max_auto": 9, "keep_all_hours": 0.0}
    # checked on the merged policy: keep_all_hours 30 days > max_age_days 1
    r = await client.patch(
        f"/conversations/{cid}",
        json={"checkpoint_policy": {"keep_all_hours": 720, "max_age_days": None}},
    )
    assert r.status_code == 200, r.text
    r = await client.patch(f"/conversations/{cid}", json={"checkpoint_policy": {"max_age_days": 1}})
    body = assert_problem(r, 422, "validation_error")
    assert body["errors"][0]["loc"][:2] == ["body", "checkpoint_policy"]
    got = (await client.get(f"/conversations/{cid}")).json()["checkpoint_policy"]
    assert got["keep_all_hours"] == 720 and got["max_age_days"] is None


async def test_a_partial_context_policy_patch_keeps_the_other_fields(
    client: httpx.AsyncClient,
) -> None:
    conv = await create_conv(client, context_policy={"max_input_tokens": 3000})
    assert conv["context_policy"]["reserve_output_tokens"] == 1024  # the setting's
    cid = conv["id"]
    r = await client.patch(f"/conversations/{cid}", json={"context_policy": {"strategy": "fail"}})
    assert r.status_code == 200, r.text
    assert r.json()["context_policy"]["max_input_tokens"] == 3000  # was reset to 8000
    assert r.json()["context_policy"]["strategy"] == "fail"


async def test_a_context_policy_patch_is_checked_merged_with_the_conversations_policy(
    client: httpx.AsyncClient,
) -> None:
    conv = await create_conv(
        client, context_policy={"max_input_tokens": 2000, "reserve_output_tokens": 200}
    )
    cid = conv["id"]
    # 5000 is within the defaults' budget (8000 - 1024) but not this conversation's (1800)
    r = await client.patch(
        f"/conversations/{cid}", json={"context_policy": {"max_context_tokens": 5000}}
    )
    assert_problem(r, 422, "validation_error")
    got = (await client.get(f"/conversations/{cid}")).json()["context_policy"]
    assert got["max_context_tokens"] is None
    # 300 is over this conversation's reserve (200), not the default one (1024)
    r = await client.patch(
        f"/conversations/{cid}", json={"context_policy": {"max_input_tokens": 300}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["context_policy"]["max_input_tokens"] == 300


async def test_patching_a_policy_to_null_resets_it_to_the_settings_defaults(
    client: httpx.AsyncClient,
) -> None:
    defaults = await create_conv(client)
    conv = await create_conv(
        client,
        checkpoint_policy=POLICY,
        context_policy={"max_input_tokens": 3000, "strategy": "fail"},
    )
    cid = conv["id"]
    r = await client.patch(f"/conversations/{cid}", json={"checkpoint_policy": None})
    assert r.status_code == 200, r.text
    assert r.json()["checkpoint_policy"] == defaults["checkpoint_policy"]
    assert r.json()["context_policy"]["max_input_tokens"] == 3000  # not sent: unchanged
    r = await client.patch(f"/conversations/{cid}", json={"context_policy": None})
    assert r.status_code == 200, r.text
    assert r.json()["context_policy"] == defaults["context_policy"]
    got = (await client.get(f"/conversations/{cid}")).json()
    assert got["checkpoint_policy"] == defaults["checkpoint_policy"]
    assert got["context_policy"] == defaults["context_policy"]
