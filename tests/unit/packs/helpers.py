"""Shared paths and builders for the pack tests.

The real PromptPack corpus lives outside the repo (`../shared/fixtures/promptpacks`, next to
the checkout) and is read in place, never copied. Missing fixtures skip locally and fail
under `CI=true`, like the suite's other external services.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.services import in_ci

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / ".." / "shared" / "fixtures" / "promptpacks"
FIXTURE_PACKS_DIR = FIXTURES / "packs"
SCHEMA_PATH = FIXTURES / "promptpack.schema.json"
EXAMPLE_PACKS_DIR = REPO / "packs"

FIXTURE_PACK_COUNT = 39


def require_fixtures() -> None:
    if FIXTURE_PACKS_DIR.is_dir() and SCHEMA_PATH.is_file():
        return
    reason = f"PromptPack fixtures not found at {FIXTURES.resolve()}"
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(f"FIXTURES MISSING - {reason}")


def fixture_files() -> list[Path]:
    """Every fixture pack file (empty when the corpus is absent; see `require_fixtures`)."""
    return sorted(FIXTURE_PACKS_DIR.glob("*.pack.json"))


def example_files() -> list[Path]:
    return sorted(EXAMPLE_PACKS_DIR.glob("*.pack.json"))


@cache
def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def load_json(path: Path) -> Any:
    """A fresh copy of the document in `path` (tests mutate what they get)."""
    return json.loads(_read(path))


def fixture(name: str) -> dict[str, Any]:
    """A fixture pack by file-name stem, e.g. `fixture("sdk__examples__tools__tools")`."""
    require_fixtures()
    document = load_json(FIXTURE_PACKS_DIR / f"{name}.pack.json")
    assert isinstance(document, dict)
    return document


def schema() -> dict[str, Any]:
    require_fixtures()
    document = load_json(SCHEMA_PATH)
    assert isinstance(document, dict)
    return document


def minimal_pack(**prompt_fields: Any) -> dict[str, Any]:
    """A small valid pack with one prompt `chat`; `prompt_fields` override/extend it."""
    prompt: dict[str, Any] = {
        "id": "chat",
        "name": "Chat",
        "version": "1.0.0",
        "system_template": "You are helpful.",
    }
    prompt.update(prompt_fields)
    return {
        "id": "test-pack",
        "name": "Test Pack",
        "version": "1.0.0",
        "template_engine": {"version": "v1", "syntax": "{{variable}}"},
        "prompts": {"chat": prompt},
    }


DELETE = object()


def mutate(document: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """A deep copy of `document` with `path` set to `value` (or removed, for `DELETE`)."""
    result = copy.deepcopy(document)
    target: Any = result
    for part in path[:-1]:
        target = target[part]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = copy.deepcopy(value)
    return result
