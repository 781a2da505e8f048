"""Import documents altered by a fuzzer (outside tester, 2026-12-07), checksum recomputed:
each is a 422 `validation_error` at the field's loc and nothing is stored, on every
backend. Before: a message id that is an object was a 500 (T11); a prompt the pack does
not have was accepted and every turn was then a 500 (T12); a `user_id` outside the id
rule was accepted, a user that could never be listed, exported or erased, and a 500 on
PostgreSQL when longer than 200 characters (T13)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.api.backends import ALL_BACKENDS, app_on
from tests.api.export_helpers import export_doc, recomputed_checksum
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import make_settings


def _set(path: list[str | int], value: Any) -> Callable[[dict[str, Any]], None]:
    def alter(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return alter


CASES = {
    "message-id-object": (["messages", 0, "id"], {}),
    "prompt-not-in-pack": (["conversation", "prompt_name"], "nope"),
    "user-id-with-space": (["conversation", "user_id"], "bad user"),
    "user-id-too-long": (["conversation", "user_id"], "x" * 300),
    "lineage-id-path": (["conversation", "lineage_id"], "../x"),
}


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_an_altered_document_is_refused_at_the_field(backend: str, tmp_path: Path) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        cid = (await create_conv(client))["id"]
        await send(client, cid, "hello")
        original = await export_doc(client, cid)
        for n, (name, (path, value)) in enumerate(CASES.items()):
            doc = await export_doc(client, cid)
            _set(path, value)(doc)
            doc["checksum"] = recomputed_checksum(doc)
            target = f"imp-{n}"
            r = await client.post(
                "/conversations/import", json=doc, params={"conversation_id": target}
            )
            problem = assert_problem(r, 422, "validation_error")
            locs = [e["loc"] for e in problem["errors"]]
            assert ["body", *path] in locs, (name, locs)
            assert (await client.get(f"/conversations/{target}")).status_code == 404, name
        r = await client.post(
            "/conversations/import", json=original, params={"conversation_id": "imp-ok"}
        )
        assert r.status_code == 201, r.text  # the unaltered document still imports
