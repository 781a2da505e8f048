"""Media fields a pack may set that Parley accepts but does not apply: listed by
`pack_warnings` and logged once when the pack is loaded."""

from __future__ import annotations

import logging

import pytest

from app.packs import PackRegistry, pack_warnings, parse_pack
from app.packs.media import UNENFORCED
from tests.unit.packs.helpers import minimal_pack

MEDIA = {
    "enabled": True,
    "image": {"max_size_mb": 5, "default_detail": "low", "max_images_per_msg": 2},
    "audio": {"max_duration_sec": 60, "allowed_formats": ["wav"]},
    "video": {"require_metadata": True},
    "document": {"max_pages": 10, "extraction_mode": "text", "max_size_mb": 2},
    "model3d": {"max_size_mb": 1, "allowed_formats": ["glb"], "validation_params": {"x": 1}},
}


def test_every_unenforced_field_in_use_is_named() -> None:
    warnings = pack_warnings(parse_pack(minimal_pack(media=MEDIA)))
    assert [w["loc"] for w in warnings] == [
        ["prompts", "chat", "media", "audio", "max_duration_sec"],
        ["prompts", "chat", "media", "video", "require_metadata"],
        ["prompts", "chat", "media", "document", "max_pages"],
        ["prompts", "chat", "media", "document", "extraction_mode"],
        ["prompts", "chat", "media", "model3d"],
    ]
    assert all("not enforced" in w["msg"] for w in warnings)


def test_enforced_fields_give_no_warning() -> None:
    enforced = {
        "enabled": True,
        "supported_types": ["image", "document"],
        "image": {
            "max_size_mb": 5,
            "allowed_formats": ["png"],
            "default_detail": "high",
            "require_caption": True,
            "max_images_per_msg": 3,
        },
        "document": {"max_size_mb": 2, "allowed_formats": ["pdf"]},
    }
    assert pack_warnings(parse_pack(minimal_pack(media=enforced))) == []


@pytest.mark.parametrize(("kind", "field"), [(k, f) for k, fs in UNENFORCED.items() for f in fs])
def test_each_listed_field_is_a_real_schema_field(kind: str, field: str) -> None:
    value: object = True if field == "require_metadata" else 5
    if field == "extraction_mode":
        value = "raw"
    pack = parse_pack(minimal_pack(media={"enabled": True, kind: {field: value}}))
    assert [w["loc"][-2:] for w in pack_warnings(pack)] == [[kind, field]]


def test_loading_logs_the_warning_once(caplog: pytest.LogCaptureFixture) -> None:
    registry = PackRegistry()
    document = minimal_pack(media={"enabled": True, "document": {"max_pages": 3}})
    with caplog.at_level(logging.WARNING, logger="parley.packs"):
        registry.add(document)
        registry.add(document)  # the same pack again: nothing new is loaded
    lines = [r.getMessage() for r in caplog.records if "max_pages" in r.getMessage()]
    assert len(lines) == 1 and "document.max_pages is not enforced" in lines[0]
