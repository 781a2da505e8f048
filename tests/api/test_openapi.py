"""The committed OpenAPI document matches the app (regenerate with `make openapi`)."""

from __future__ import annotations

import json

from app.openapi_export import render
from tests.conftest import REPO


def test_committed_openapi_matches_app() -> None:
    committed = (REPO / "openapi" / "openapi.json").read_text()
    assert json.loads(committed) == json.loads(render()), (
        "openapi/openapi.json is stale: run `make openapi` and commit it"
    )


def test_every_operation_documents_problem_responses() -> None:
    spec = json.loads(render())
    paths = spec["paths"]
    for path in ("/conversations", "/conversations/{conversation_id}/messages"):
        for op in paths[path].values():
            assert any(code.startswith("4") for code in op["responses"]), (path, op)
