"""Datetimes an import carries are within years 1970-9000 in UTC (app.domain.limits), or
the document is a 422 `validation_error` at the value's loc and nothing is stored, on every
backend (outside tester T14: values near year 1 or 9999 were 500s, 503s, partial imports or
conversations that could never be read or deleted once stored)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.api.backends import ALL_BACKENDS, app_on
from tests.api.export_helpers import export_doc, recomputed_checksum
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import make_settings

OUT_OF_RANGE = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "1969-12-31T23:59:59Z",
    "9001-01-01T00:00:00Z",
]
WHERE = [
    ("conversation", "created_at"),
    ("conversation", "updated_at"),
    ("conversation", "expires_at"),
    ("messages", 0, "created_at"),
    ("checkpoints", 0, "created_at"),
]


def set_at(doc: dict[str, Any], where: tuple[Any, ...], value: str) -> None:
    target: Any = doc
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_imported_datetimes_outside_the_range_are_refused(
    backend: str, tmp_path: Path
) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        cid = (await create_conv(client, ttl_seconds=3600))["id"]
        await send(client, cid, "hello")
        r = await client.post(f"/conversations/{cid}/checkpoints", json={"name": "x"})
        assert r.status_code == 201, r.text
        doc = await export_doc(client, cid)
        n = 0
        for where in WHERE:
            for value in OUT_OF_RANGE:
                bad = copy.deepcopy(doc)
                set_at(bad, where, value)
                bad["checksum"] = recomputed_checksum(bad)
                n += 1
                r = await client.post(
                    "/conversations/import", json=bad, params={"conversation_id": f"d-{n}"}
                )
                problem = assert_problem(r, 422, "validation_error")
                assert [e["loc"] for e in problem["errors"]] == [["body", *where]], (where, value)
                assert (await client.get(f"/conversations/d-{n}")).status_code == 404
        # the ends of the range themselves are fine and read back
        for value in ("1970-01-01T00:00:00Z", "9000-12-31T23:59:59+00:00"):
            good = copy.deepcopy(doc)
            set_at(good, ("messages", 0, "created_at"), value)
            good["checksum"] = recomputed_checksum(good)
            n += 1
            r = await client.post(
                "/conversations/import", json=good, params={"conversation_id": f"d-{n}"}
            )
            assert r.status_code == 201, r.text
            assert (await client.get(f"/conversations/d-{n}/messages")).status_code == 200
        listed = (await client.get("/conversations", params={"limit": 200})).json()["data"]
        assert sorted(c["id"] for c in listed) == sorted([cid, f"d-{n - 1}", f"d-{n}"])


def promptkit_state(**fields: Any) -> dict[str, Any]:
    zero = "0001-01-01T00:00:00Z"  # Go's zero time.Time: unset, not out of range
    state: dict[str, Any] = {
        "ID": "pk1",
        "UserID": "pkuser",
        "Messages": [
            {"role": "user", "content": "hi", "timestamp": zero},
            {"role": "assistant", "content": "hello", "timestamp": zero},
        ],
        "LastAccessedAt": zero,
    }
    state.update(fields)
    return state


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_promptkit_times_outside_the_range_are_refused(backend: str, tmp_path: Path) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        params = {"pack_id": "general-assistant", "prompt_name": "chat"}
        late = "9999-12-31T23:59:59-14:00"
        bad_message = promptkit_state()
        bad_message["Messages"][1]["timestamp"] = late
        for i, (state, loc) in enumerate(
            [
                (bad_message, ["body", "Messages", 1, "timestamp"]),
                (
                    promptkit_state(LastAccessedAt="0002-01-01T00:00:00+14:00"),
                    ["body", "LastAccessedAt"],
                ),
            ]
        ):
            r = await client.post(
                "/conversations/import", json=state, params={**params, "conversation_id": f"p-{i}"}
            )
            problem = assert_problem(r, 422, "validation_error")
            assert [e["loc"] for e in problem["errors"]] == [loc]
            assert (await client.get(f"/conversations/p-{i}")).status_code == 404
        r = await client.post(
            "/conversations/import",
            json=promptkit_state(),
            params={**params, "conversation_id": "p-zero"},
        )
        assert r.status_code == 201, r.text
        assert (await client.get("/conversations/p-zero/messages")).status_code == 200
