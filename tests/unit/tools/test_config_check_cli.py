"""`parley config check FILE` and the pack rule for `mcp__` prompt entries."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from app import cli
from app.packs import parse_pack
from app.tools import check_runtime_config
from tests.conftest import REPO, SHARED
from tests.unit.tools.helpers import registry

FIXTURE_RC = SHARED / "fixtures" / "runtime-config" / "sdk__examples__runtime-config__runtime.yaml"


def test_check_prints_bindings_and_unapplied_sections() -> None:
    out = io.StringIO()
    assert cli.check_config(FIXTURE_RC, out=out) == 0
    text = out.getvalue()
    assert text.startswith(f"ok {FIXTURE_RC} (development)")
    assert "  tool sentiment_analysis: exec" in text
    assert "warning: RuntimeConfig sections not applied by Parley" in text
    assert "evals, hooks, logging" in text


def test_check_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "runtime.yaml"
    path.write_text(
        "apiVersion: promptkit.altairalabs.ai/v1alpha1\nkind: RuntimeConfig\nspec:\n"
        "  tools:\n    a: {http: {url: 'https://x.example/{{if .a}}'}}\n"
        "  mcp_servers: [{name: s}]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "config", "check", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any("spec.tools.a.http.url" in line and "not supported" in line for line in lines)
    assert any("spec.mcp_servers.0: exactly one of" in line for line in lines)
    assert lines[-1] == f"{path}: 2 problems; the service would not start"


def test_prompt_entries_naming_mcp_tools_need_no_pack_tool() -> None:
    document = {
        "id": "p",
        "name": "P",
        "version": "1.0.0",
        "template_engine": {"version": "v1", "syntax": "{{variable}}"},
        "prompts": {
            "main": {
                "id": "main",
                "name": "M",
                "version": "1.0.0",
                "system_template": "x",
                "tools": ["mcp__github__*", "mcp__fs__read_file"],
            }
        },
    }
    assert parse_pack(document).prompts["main"].tools == ["mcp__github__*", "mcp__fs__read_file"]


def test_the_readme_runtime_config_binds_the_shipped_packs() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Tools", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    path = REPO / "examples" / "runtime.yaml"
    assert block == path.read_text()  # the README shows the file a test runs turns through
    config = check_runtime_config(path, env={})
    assert config.ok, [str(p) for p in config.problems]
    pack = parse_pack(json.loads((REPO / "packs" / "customer-support.pack.json").read_text()))
    toolset = registry(config).toolset(pack, "support")
    lookup, ticket = toolset.get("lookup_order"), toolset.get("create_ticket")
    assert lookup is not None and lookup.mode == "exec" and lookup.approval is None
    assert ticket is not None and ticket.mode == "exec" and ticket.approval is not None
    assert [p.id for p in config.providers] == ["openai-main", "local"]
