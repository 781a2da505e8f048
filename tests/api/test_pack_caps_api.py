"""`POST /packs` applies the request caps (outside tester T16): 422 `invalid_pack`, and
the pack is not stored."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.api.helpers import assert_problem

EXAMPLE = Path(__file__).parents[2] / "examples" / "hello-world.pack.json"


async def test_an_upload_over_the_caps_is_invalid_and_not_stored(
    client: httpx.AsyncClient,
) -> None:
    pack = json.loads(EXAMPLE.read_text())
    pack["id"] = "capped-pack"
    key = next(iter(pack["prompts"]))
    pack["prompts"][key]["system_template"] = "x" * 3_000_000
    problem = assert_problem(await client.post("/packs", json=pack), 422, "invalid_pack")
    assert problem["errors"][0]["loc"] == ["prompts", key, "system_template"]
    listed = (await client.get("/packs", params={"limit": 200})).json()["data"]
    assert "capped-pack" not in {p["id"] for p in listed}
