"""Numbers in request bodies are JSON numbers: `true` (which would become 1), `"60"` are a
422 `validation_error` at the field's loc, not coerced; integer fields take no fraction."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.helpers import assert_problem, create_conv

NOT_INTEGERS = [True, "60", 60.5]
PAYLOAD = {"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "alice"}


def assert_refused_at(r: httpx.Response, loc: list[str]) -> None:
    problem = assert_problem(r, 422, "validation_error")
    assert [e["loc"] for e in problem["errors"]] == [loc], problem


@pytest.mark.parametrize("value", NOT_INTEGERS)
async def test_ttl_seconds_must_be_an_integer(client: httpx.AsyncClient, value: Any) -> None:
    r = await client.post("/conversations", json={**PAYLOAD, "ttl_seconds": value})
    assert_refused_at(r, ["body", "ttl_seconds"])
    cid = (await create_conv(client))["id"]
    r = await client.patch(f"/conversations/{cid}", json={"ttl_seconds": value})
    assert_refused_at(r, ["body", "ttl_seconds"])
    assert (await client.get(f"/conversations/{cid}")).json()["expires_at"] is None


@pytest.mark.parametrize("value", NOT_INTEGERS)
@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ("context_policy", "max_input_tokens"),
        ("context_policy", "reserve_output_tokens"),
        ("context_policy", "max_context_tokens"),
        ("checkpoint_policy", "every_n_turns"),
        ("checkpoint_policy", "max_auto"),
    ],
)
async def test_policy_integers_must_be_integers(
    client: httpx.AsyncClient, policy: str, field: str, value: Any
) -> None:
    r = await client.post("/conversations", json={**PAYLOAD, policy: {field: value}})
    assert_refused_at(r, ["body", policy, field])


@pytest.mark.parametrize("value", [True, "24"])
async def test_checkpoint_hours_must_be_a_number(client: httpx.AsyncClient, value: Any) -> None:
    policy = {"keep_all_hours": value}
    r = await client.post("/conversations", json={**PAYLOAD, "checkpoint_policy": policy})
    assert_refused_at(r, ["body", "checkpoint_policy", "keep_all_hours"])
    policy = {"keep_all_hours": 12, "max_age_days": 7.5}  # an integer is a number too
    r = await client.post("/conversations", json={**PAYLOAD, "checkpoint_policy": policy})
    assert r.status_code == 201, r.text
    assert r.json()["checkpoint_policy"]["keep_all_hours"] == 12
