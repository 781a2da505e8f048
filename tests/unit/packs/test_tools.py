from __future__ import annotations

from typing import Any

from app.packs import parse_pack, prompt_tools
from app.packs.tools import name_matches
from tests.unit.packs.helpers import fixture, minimal_pack

TOOL_NAMES = ["crm_get", "crm_put", "crm_delete", "db_query", "db_drop", "send_email"]


def tools_for(entries: list[str], blocklist: list[str] | None = None) -> list[str]:
    prompt: dict[str, Any] = {"tools": entries}
    if blocklist is not None:
        prompt["tool_policy"] = {"blocklist": blocklist}
    document = minimal_pack(**prompt)
    document["tools"] = {n: {"name": n, "description": f"does {n}"} for n in TOOL_NAMES}
    pack = parse_pack(document)
    return [tool.name for tool in prompt_tools(pack, pack.prompts["chat"])]


def test_name_matching() -> None:
    assert name_matches("crm_*", "crm_get")
    assert name_matches("*", "anything")
    assert name_matches("crm_get", "crm_get")
    assert not name_matches("crm_get", "crm_get2")
    assert not name_matches("crm*_get", "crm_x_get")  # only a trailing `*` is a wildcard


def test_declaration_order_and_dedup() -> None:
    assert tools_for(["send_email", "crm_*", "crm_get"]) == [
        "send_email",
        "crm_get",
        "crm_put",
        "crm_delete",
    ]
    assert tools_for(["*"]) == TOOL_NAMES
    assert tools_for([]) == []


def test_blocklist_with_wildcards() -> None:
    assert tools_for(["*"], blocklist=["crm_delete", "db_*"]) == [
        "crm_get",
        "crm_put",
        "send_email",
    ]
    assert tools_for(["db_query"], blocklist=["*"]) == []
    assert tools_for(["crm_*"], blocklist=["unknown_tool"]) == ["crm_get", "crm_put", "crm_delete"]


def test_fixture_pack_tools() -> None:
    pack = parse_pack(fixture("sdk__examples__http-transforms__http-transforms"))
    prompt = pack.prompts["assistant"]
    assert [t.name for t in prompt_tools(pack, prompt)] == [
        "lookup_user",
        "get_orders",
        "get_customer",
    ]
    other = parse_pack(fixture("sdk__examples__openai-realtime__openai-realtime"))
    assert prompt_tools(other, other.prompts["assistant"]) == []  # pack tools, none referenced
