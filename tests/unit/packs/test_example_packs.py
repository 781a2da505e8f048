"""The example packs shipped in `packs/` load and behave as documented."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.errors import InvalidVariables
from app.packs import (
    PackRegistry,
    ToolPolicy,
    effective_parameters,
    pack_warnings,
    prompt_tools,
    render_system_prompt,
)
from tests.unit.packs.helpers import EXAMPLE_PACKS_DIR, example_files

NOW = datetime(2025, 3, 4, 15, 30, tzinfo=UTC)


@pytest.fixture
async def registry() -> PackRegistry:
    registry = PackRegistry()
    assert await registry.load_dir(EXAMPLE_PACKS_DIR) == []
    return registry


def test_three_example_packs_are_shipped() -> None:
    assert [p.name for p in example_files()] == [
        "code-reviewer.pack.json",
        "customer-support.pack.json",
        "general-assistant.pack.json",
    ]


async def test_examples_load_cleanly(registry: PackRegistry) -> None:
    assert [s.id for s in registry.list()] == [
        "code-reviewer",
        "customer-support",
        "general-assistant",
    ]
    for summary in registry.list():
        assert pack_warnings(registry.get(summary.id)) == []


async def test_general_assistant(registry: PackRegistry) -> None:
    pack = registry.get("general-assistant")
    rendered = render_system_prompt(pack, "chat", {}, now=NOW)
    assert rendered.text.startswith(
        "You are Parley Assistant, a knowledgeable and friendly assistant. "
        "Today is Tuesday, 2025-03-04."
    )
    assert "{{" not in rendered.text
    assert all(not v.required for v in pack.prompts["chat"].variables)
    named = render_system_prompt(pack, "chat", {"assistant_name": "Ada"}, now=NOW)
    assert named.text.startswith("You are Ada,")


async def test_customer_support(registry: PackRegistry) -> None:
    pack = registry.get("customer-support")
    prompt = pack.prompts["support"]
    assert [(v.name, v.required, v.default) for v in prompt.variables] == [
        ("company_name", True, None),
        ("tone", False, "friendly"),
        ("product", False, "our products and services"),
    ]
    assert [t.name for t in prompt_tools(pack, prompt)] == ["lookup_order", "create_ticket"]
    assert pack.tools["lookup_order"].parameters is not None
    assert pack.tools["lookup_order"].parameters["required"] == ["order_id"]
    assert prompt.tool_policy == ToolPolicy(
        tool_choice="auto", max_rounds=3, max_tool_calls_per_turn=4
    )
    assert effective_parameters(prompt) == {"temperature": 0.3, "max_tokens": 1024}

    rendered = render_system_prompt(
        pack, "support", {"company_name": "Acme", "tone": "formal"}, now=NOW
    )
    assert rendered.text.startswith(
        "You are a customer support agent for Acme, helping customers with our products and "
        "services. Today is 2025-03-04.\n\nTone: formal."
    )
    assert "Open a ticket with `create_ticket`" in rendered.text  # fragment expanded
    assert rendered.variables == {
        "company_name": "Acme",
        "tone": "formal",
        "product": "our products and services",
    }

    with pytest.raises(InvalidVariables) as info:
        render_system_prompt(pack, "support", {"company_name": "", "tone": "rude"}, now=NOW)
    assert info.value.errors == [
        {"loc": ["variables", "company_name"], "msg": "must be at least 1 characters long"},
        {"loc": ["variables", "tone"], "msg": 'must be one of: "friendly", "formal"'},
    ]


async def test_code_reviewer(registry: PackRegistry) -> None:
    pack = registry.get("code-reviewer")
    prompt = pack.prompts["review"]
    with pytest.raises(InvalidVariables):
        render_system_prompt(pack, "review", {}, now=NOW)
    base = render_system_prompt(pack, "review", {"language": "Go"}, now=NOW)
    assert base.text.startswith("You are a senior Go engineer doing a code review.")
    assert "Focus: all aspects. Report at most 10 findings" in base.text
    assert base.variables == {"language": "Go", "focus": "all aspects", "max_findings": 10}
    small = render_system_prompt(pack, "review", {"language": "Go"}, now=NOW, model="gpt-4o-mini")
    assert small.text == base.text + "\n\nKeep each finding to three sentences or fewer."
    assert effective_parameters(prompt, "gpt-4o-mini") == {"temperature": 0.2, "max_tokens": 1200}
    with pytest.raises(InvalidVariables) as info:
        render_system_prompt(pack, "review", {"language": "Go", "max_findings": 99}, now=NOW)
    assert info.value.errors == [{"loc": ["variables", "max_findings"], "msg": "must be <= 50"}]
