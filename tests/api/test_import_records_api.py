"""An imported record holds only values Parley itself writes (app.manager.import_records):
non-negative token counts that add up, a cost within 0..MAX_COST_USD, ids by the id rule,
a `turn` its path gives, names within a create request's caps. Anything else is a 422
`validation_error` listing each problem at its loc, nothing stored, on every backend
(outside tester T6/T7)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.api.backends import ALL_BACKENDS, app_on
from tests.api.export_helpers import export_doc, recomputed_checksum
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import make_settings


def conv_usage(doc: dict[str, Any]) -> None:
    doc["conversation"]["usage"] = {
        "input_tokens": -5,
        "output_tokens": 10,
        "total_tokens": 3,
        "cost_usd": -1e300,
    }


def message_usage(doc: dict[str, Any]) -> None:
    doc["messages"][0]["usage"] = {"input_tokens": -1, "output_tokens": 0, "total_tokens": -1}
    doc["messages"][0]["cost_usd"] = -100.0


def names(doc: dict[str, Any]) -> None:
    doc["conversation"]["model"] = "x" * 5000
    doc["messages"][0]["run_id"] = "r" * 300
    doc["messages"][0]["turn"] = 9999


CASES = [
    (
        conv_usage,
        [
            ["conversation", "usage", "cost_usd"],
            ["conversation", "usage", "input_tokens"],
            ["conversation", "usage", "total_tokens"],
        ],
    ),
    (
        message_usage,
        [
            ["messages", 0, "cost_usd"],
            ["messages", 0, "usage", "input_tokens"],
            ["messages", 0, "usage", "total_tokens"],
        ],
    ),
    (
        names,
        [["conversation", "model"], ["messages", 0, "run_id"], ["messages", 0, "turn"]],
    ),
]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_inconsistent_records_are_refused(backend: str, tmp_path: Path) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        cid = (await create_conv(client))["id"]
        await send(client, cid, "hello")
        await send(client, cid, "again")
        doc = await export_doc(client, cid)
        for n, (alter, locs) in enumerate(CASES):
            bad = copy.deepcopy(doc)
            alter(bad)
            bad["checksum"] = recomputed_checksum(bad)
            r = await client.post(
                "/conversations/import", json=bad, params={"conversation_id": f"r-{n}"}
            )
            problem = assert_problem(r, 422, "validation_error")
            got = sorted([str(x) for x in e["loc"]] for e in problem["errors"])
            assert got == sorted([str(x) for x in ["body", *loc]] for loc in locs), problem
            assert (await client.get(f"/conversations/r-{n}")).status_code == 404
        # Parley's own export is importable as is
        r = await client.post("/conversations/import", json=doc, params={"conversation_id": "ok"})
        assert r.status_code == 201, r.text
        assert r.json()["usage"] == (await client.get(f"/conversations/{cid}")).json()["usage"]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_promptkit_negative_cost_info_is_refused(backend: str, tmp_path: Path) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        state = {
            "ID": "pk1",
            "UserID": "pkuser",
            "Messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": "x",
                    "cost_info": {"input_tokens": -100, "output_tokens": 1, "total_cost_usd": -5},
                },
            ],
        }
        params = {"pack_id": "general-assistant", "prompt_name": "chat", "conversation_id": "p"}
        r = await client.post("/conversations/import", json=state, params=params)
        problem = assert_problem(r, 422, "validation_error")
        at = ["body", "Messages", 1, "cost_info"]
        assert sorted(e["loc"] for e in problem["errors"]) == [
            [*at, "input_tokens"],
            [*at, "total_cost_usd"],
        ]
        assert (await client.get("/conversations/p")).status_code == 404
