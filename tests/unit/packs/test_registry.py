"""PackRegistry: versions, conflicts, listing, directory loading."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from app.errors import InvalidPack, PackExists, PackNotFound
from app.packs import PackLoadProblem, PackRegistry, PackSummary
from tests.unit.packs.helpers import (
    FIXTURE_PACKS_DIR,
    fixture,
    fixture_files,
    load_json,
    minimal_pack,
    require_fixtures,
)


def versioned(version: str, template: str = "You are helpful.") -> dict[str, Any]:
    document = minimal_pack(system_template=template)
    document["version"] = version
    return document


def test_add_get_and_latest_by_semver() -> None:
    registry = PackRegistry()
    for version in ["1.2.0", "1.10.0", "2.0.0-rc.1", "1.9.9", "v2.0.0-beta.2"]:
        pack, created = registry.add(versioned(version))
        assert created and pack.version == version
    assert len(registry) == 1
    assert registry.get("test-pack").version == "2.0.0-rc.1"  # highest precedence
    assert registry.get("test-pack", "1.10.0").version == "1.10.0"
    assert registry.get("test-pack", "v1.9.9").version == "1.9.9"  # `v` tolerated
    assert registry.get("test-pack", "2.0.0-beta.2").version == "v2.0.0-beta.2"

    registry.add(versioned("2.0.0"))
    assert registry.get("test-pack").version == "2.0.0"
    assert registry.list() == [
        PackSummary(
            id="test-pack",
            name="Test Pack",
            version="2.0.0",
            description=None,
            prompts=["chat"],
            tools=[],
            versions=["2.0.0", "2.0.0-rc.1", "v2.0.0-beta.2", "1.10.0", "1.9.9", "1.2.0"],
        )
    ]


def test_versions_are_independent_objects() -> None:
    registry = PackRegistry()
    registry.add(versioned("1.0.0", "Old {{current_date}}"))
    registry.add(versioned("1.1.0", "New"))
    assert registry.get("test-pack", "1.0.0").prompts["chat"].system_template.startswith("Old")
    assert registry.get("test-pack").prompts["chat"].system_template == "New"


def test_not_found() -> None:
    registry = PackRegistry()
    with pytest.raises(PackNotFound) as info:
        registry.get("nope")
    assert info.value.status == 404 and info.value.code == "pack_not_found"
    assert info.value.detail == "PromptPack 'nope' is not loaded."

    registry.add(versioned("1.0.0"))
    registry.add(versioned("1.1.0"))
    with pytest.raises(PackNotFound) as info:
        registry.get("test-pack", "3.0.0")
    assert (
        info.value.detail == "PromptPack 'test-pack' has no version '3.0.0' (loaded: 1.1.0, 1.0.0)."
    )
    with pytest.raises(PackNotFound):
        registry.get("test-pack", "latest")  # not a version at all


def test_idempotent_re_add_and_conflict() -> None:
    registry = PackRegistry()
    first, created = registry.add(versioned("1.0.0"))
    assert created
    # Same content (key order and an integral float do not matter) -> the loaded pack.
    same = versioned("1.0.0")
    same["prompts"]["chat"] = dict(reversed(list(same["prompts"]["chat"].items())))
    again, created = registry.add(same)
    assert (again is first, created) == (True, False)

    with pytest.raises(PackExists) as info:
        registry.add(versioned("1.0.0", "Different."))
    assert info.value.status == 409 and info.value.code == "pack_exists"
    assert "'test-pack' version 1.0.0 is already loaded with different content" in info.value.detail
    # `v1.0.0` is the same version as `1.0.0`, and its document differs (the version string).
    with pytest.raises(PackExists):
        registry.add(versioned("v1.0.0"))
    assert registry.get("test-pack") is first


def test_add_invalid() -> None:
    registry = PackRegistry()
    with pytest.raises(InvalidPack) as info:
        registry.add({"id": "x"})
    assert {"loc": ["name"], "msg": "required field is missing"} in (info.value.errors or [])
    assert len(registry) == 0


def test_list_sorted_by_id_with_summaries() -> None:
    registry = PackRegistry()
    registry.add(fixture("sdk__examples__tools__tools"))
    registry.add(fixture("sdk__examples__hello__hello"))
    registry.add(fixture("sdk__examples__sdk-evals__assistant"))
    summaries = registry.list()
    assert [s.id for s in summaries] == ["hello-example", "sdk-evals-demo", "tools-example"]
    assert summaries[2] == PackSummary(
        id="tools-example",
        name="Tools Example",
        version="1.0.0",
        description="Example demonstrating tool usage",
        prompts=["assistant"],
        tools=["get_weather", "get_time"],
        versions=["1.0.0"],
    )
    assert summaries[1].version == "1.2.0"


# --- load_dir ----------------------------------------------------------------------------


async def test_load_all_fixtures() -> None:
    require_fixtures()
    registry = PackRegistry()
    problems = await registry.load_dir(FIXTURE_PACKS_DIR)
    assert problems == []
    distinct_ids = {load_json(path)["id"] for path in fixture_files()}
    assert len(distinct_ids) == 39  # every fixture file carries its own id
    assert len(registry) == 39
    assert [s.id for s in registry.list()] == sorted(distinct_ids)
    assert registry.get("variables-demo").name == "Variables Demo"


VARS_FIXTURE = "sdk__examples__variables__assistant"


def write(directory: Path, name: str, content: Any) -> Path:
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


async def test_one_bad_file_among_good_ones(tmp_path: Path) -> None:
    names = ["sdk__examples__hello__hello", "sdk__examples__tools__tools", VARS_FIXTURE]
    for name in names:
        write(tmp_path, f"{name}.pack.json", fixture(name))
    bad = fixture("sdk__examples__tools__tools")
    bad["id"] = "broken-tools"
    bad["prompts"]["assistant"]["parameters"] = {"temperature": 3}
    bad_path = write(tmp_path, "m-broken.pack.json", bad)

    registry = PackRegistry()
    problems = await registry.load_dir(tmp_path)

    assert problems == [
        PackLoadProblem(
            path=str(bad_path),
            errors=[
                {
                    "loc": ["prompts", "assistant", "parameters", "temperature"],
                    "msg": "Input should be less than or equal to 2",
                }
            ],
        )
    ]
    assert [s.id for s in registry.list()] == ["hello-example", "tools-example", "variables-demo"]
    with pytest.raises(PackNotFound):
        registry.get("broken-tools")


async def test_bad_files_are_skipped_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good_a = versioned("1.0.0")
    good_b = fixture("sdk__examples__tools__tools")
    invalid = versioned("1.0.0")
    invalid["id"] = "Invalid Id"
    invalid["prompts"]["chat"]["tools"] = ["ghost"]
    conflicting = versioned("1.0.0", "Conflicting content.")
    write(tmp_path, "a-good.pack.json", good_a)
    write(tmp_path, "b-broken.pack.json", '{"id": "x",')
    write(tmp_path, "c-invalid.pack.json", invalid)
    write(tmp_path, "d-good.pack.json", good_b)
    write(tmp_path, "e-conflict.pack.json", conflicting)
    write(tmp_path, "f-duplicate.pack.json", good_a)  # identical: fine, not a problem
    write(tmp_path, "g-nan.pack.json", '{"id": NaN}')
    write(tmp_path, "g2-huge.pack.json", '{"id": "huge", "x": 1e999}')  # inf: no JSON value
    write(tmp_path, "h-binary.pack.json", b"\xff\xfe\x00garbage")
    write(tmp_path, "ignored.json", "not a pack file, not even JSON")
    (tmp_path / "i-dir.pack.json").mkdir()  # unreadable as a file

    registry = PackRegistry()
    with caplog.at_level(logging.WARNING, logger="parley.packs"):
        problems = await registry.load_dir(tmp_path)

    assert [Path(p.path).name for p in problems] == [  # in file order
        "b-broken.pack.json",
        "c-invalid.pack.json",
        "e-conflict.pack.json",
        "g-nan.pack.json",
        "g2-huge.pack.json",
        "h-binary.pack.json",
        "i-dir.pack.json",
    ]
    by_name = {Path(p.path).name: p for p in problems}
    assert all(isinstance(p, PackLoadProblem) for p in problems)
    assert by_name["b-broken.pack.json"].errors[0]["msg"].startswith("invalid JSON: ")
    assert [e["loc"] for e in by_name["c-invalid.pack.json"].errors] == [
        ["id"],
        ["prompts", "chat", "tools", 0],
    ]
    assert by_name["g-nan.pack.json"].errors[0]["msg"] == "invalid JSON: NaN is not a JSON number"
    assert by_name["g2-huge.pack.json"].errors[0]["msg"] == (
        "invalid JSON: 1e999 is out of range for a JSON number"
    )  # as POST /packs refuses it (review R7)
    assert by_name["i-dir.pack.json"].errors[0]["msg"].startswith("cannot read file: ")
    conflict = by_name["e-conflict.pack.json"].errors
    assert conflict[0]["loc"] == ["version"]
    assert "already loaded with different content" in conflict[0]["msg"]

    assert sorted(s.id for s in registry.list()) == ["test-pack", "tools-example"]
    assert registry.get("test-pack").prompts["chat"].system_template == "You are helpful."

    skipped = [r for r in caplog.records if r.getMessage().startswith("skipping pack file")]
    assert len(skipped) == 7
    invalid_log = next(r.getMessage() for r in skipped if "c-invalid" in r.getMessage())
    assert "id: String should match pattern" in invalid_log
    assert "prompts.chat.tools.0: 'ghost' matches no pack tool" in invalid_log


async def test_missing_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    registry = PackRegistry()
    with caplog.at_level(logging.WARNING, logger="parley.packs"):
        assert await registry.load_dir(tmp_path / "nowhere") == []
    assert len(registry) == 0
    assert any("does not exist" in r.getMessage() for r in caplog.records)


async def test_load_dir_work_happens_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "a.pack.json", versioned("1.0.0"))
    loop_thread = threading.get_ident()
    seen: list[int] = []
    from app.packs import registry as registry_module

    original = registry_module._load_file

    def spy(path: Path) -> Any:
        seen.append(threading.get_ident())
        return original(path)

    monkeypatch.setattr(registry_module, "_load_file", spy)
    registry = PackRegistry()
    assert await registry.load_dir(tmp_path) == []
    assert seen and all(ident != loop_thread for ident in seen)
    assert len(registry) == 1


async def test_load_warns_about_required_with_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, "rt.pack.json", fixture("sdk__examples__openai-realtime__openai-realtime"))
    with caplog.at_level(logging.WARNING, logger="parley.packs"):
        assert await PackRegistry().load_dir(tmp_path) == []
    assert any(
        "variable 'target_language' is required but has a default" in r.getMessage()
        for r in caplog.records
    )


def test_get_by_the_stored_version_parses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every turn looks its pack up by the version its conversation stores, which is the
    registry's key: found without parsing it (the parse ran on every turn); other
    spellings still resolve through it."""
    from app.packs import registry as registry_module

    registry = PackRegistry()
    registry.add(versioned("1.2.0"))
    registry.add(versioned("v2.0.0-beta.2"))
    real = registry_module.SemVer.parse
    parsed: list[str] = []

    def counting(text: str) -> Any:
        parsed.append(text)
        return real(text)

    monkeypatch.setattr(registry_module.SemVer, "parse", staticmethod(counting))
    assert registry.get("test-pack", "1.2.0").version == "1.2.0"
    assert parsed == []
    assert registry.get("test-pack", "v1.2.0").version == "1.2.0"
    assert registry.get("test-pack", "v2.0.0-beta.2").version == "v2.0.0-beta.2"
    assert parsed == ["v1.2.0", "v2.0.0-beta.2"]
    with pytest.raises(PackNotFound):
        registry.get("test-pack", "3.0.0")
