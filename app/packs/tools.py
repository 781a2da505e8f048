"""Which pack tools a prompt may use.

A prompt's `tools` entries name pack tools; an entry ending in `*` is a prefix wildcard
(`crm_*`, or `*` for every tool). `tool_policy.blocklist` entries use the same syntax and
win over `tools`. Entries starting with `mcp__` name tools of MCP servers
(`mcp__<server>__<tool>`, or `mcp__<server>__*`); the tool registry resolves them.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.packs.models import Prompt, PromptPack, Tool

MCP_PREFIX = "mcp__"


def name_matches(pattern: str, name: str) -> bool:
    """`pattern` is a tool name or a `prefix*` wildcard."""
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def matching_tool_names(pattern: str, tool_names: Iterable[str]) -> list[str]:
    """The names in `tool_names` (kept in their order) that `pattern` selects."""
    return [name for name in tool_names if name_matches(pattern, name)]


def prompt_tools(pack: PromptPack, prompt: Prompt) -> list[Tool]:
    """The pack tools `prompt` may use, in the order of its `tools` entries (a wildcard
    expands in pack declaration order), deduplicated, minus the blocklist.

    Entries that match no tool are rejected when the pack is loaded, so every name here
    resolves; an unexpected one is skipped rather than failing a turn.
    """
    blocklist = prompt.tool_policy.blocklist if prompt.tool_policy else []
    selected: dict[str, Tool] = {}
    for entry in prompt.tools:
        for name in matching_tool_names(entry, pack.tools):
            if name in selected or any(name_matches(b, name) for b in blocklist):
                continue
            selected[name] = pack.tools[name]
    return list(selected.values())
