"""parse_pack holds a pack to the caps the API applies to the same values (outside tester
T16): a system template is within the `system_prompt` cap once its fragments are expanded
(for each model override too), and a prompt key is one `prompt_name` can name."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from app.domain.limits import MAX_SYSTEM_PROMPT_CHARS
from app.errors import InvalidPack
from app.packs import PackRegistry, parse_pack
from tests.unit.packs.helpers import minimal_pack


def locs(document: Any) -> list[list[Any]]:
    with pytest.raises(InvalidPack) as info:
        parse_pack(document, request_caps=True)
    return [e["loc"] for e in info.value.errors]


def test_a_template_over_the_system_prompt_cap_is_invalid() -> None:
    assert locs(minimal_pack(system_template="x" * 3_000_000)) == [
        ["prompts", "chat", "system_template"]
    ]
    parse_pack(
        minimal_pack(system_template="x" * MAX_SYSTEM_PROMPT_CHARS), request_caps=True
    )  # at the cap: fine


def test_fragments_count_and_are_not_expanded_past_the_cap() -> None:
    pack = minimal_pack(system_template="{{fragment:f0}}")
    # eight levels of 100 includes: 100**8 characters if expanded
    pack["fragments"] = {f"f{i}": f"{{{{fragment:f{i + 1}}}}}" * 100 for i in range(8)}
    pack["fragments"]["f8"] = "x"
    started = time.monotonic()
    found = locs(pack)
    assert time.monotonic() - started < 2
    assert ["prompts", "chat", "system_template"] in found
    assert ["fragments", "f0"] in found and ["fragments", "f5"] in found  # 10**6 characters
    assert ["fragments", "f6"] not in found  # 10**4 characters


def test_a_model_override_is_held_to_the_cap() -> None:
    pack = minimal_pack(
        model_overrides={"gpt-x": {"system_template_prefix": "p" * MAX_SYSTEM_PROMPT_CHARS}}
    )
    assert locs(pack) == [["prompts", "chat", "model_overrides", "gpt-x"]]


def test_a_prompt_key_longer_than_prompt_name_allows_is_invalid() -> None:
    pack = minimal_pack()
    long_key = "p" * 201
    pack["prompts"][long_key] = copy.deepcopy(pack["prompts"]["chat"])
    assert locs(pack) == [["prompts", long_key]]
    pack["prompts"] = {"p" * 200: pack["prompts"]["chat"]}
    parse_pack(pack, request_caps=True)


def test_a_pack_version_longer_than_pack_version_allows_is_invalid() -> None:
    # a valid semver, but a conversation of it could not be imported again (T16)
    assert locs({**minimal_pack(), "version": "1.0.0-" + "a" * 95}) == [["version"]]
    parse_pack({**minimal_pack(), "version": "1.0.0-" + "a" * 94}, request_caps=True)


def test_stored_and_file_packs_are_not_held_to_the_upload_caps() -> None:
    """A pack stored before the caps existed still loads (registry sync, pack files)."""
    pack = minimal_pack(system_template="x" * (MAX_SYSTEM_PROMPT_CHARS + 1))
    pack["prompts"]["p" * 300] = copy.deepcopy(pack["prompts"]["chat"])
    pack["version"] = "1.0.0-" + "a" * 200
    PackRegistry().add(pack)
    with pytest.raises(InvalidPack):
        parse_pack(pack, request_caps=True)
