"""Helpers of the tool tests: RuntimeConfig documents, packs, settings, guarded backends."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpcore
import pytest

from app.packs import PromptPack, parse_pack
from app.settings import Settings
from app.tools import CheckedRuntimeConfig
from app.tools.config_loader import check_document
from app.tools.registry import ToolRegistry
from tests.conftest import FIXTURE_PACKS

PEERS = Path(__file__).parent / "peers"
PYTHON = sys.executable
LOOPBACK_HOSTS = {"127.0.0.1", "::1"}


def document(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "promptkit.altairalabs.ai/v1alpha1",
        "kind": "RuntimeConfig",
        "spec": spec,
    }


def checked(
    spec: dict[str, Any], *, base_dir: Path = PEERS, env: dict[str, str] | None = None
) -> CheckedRuntimeConfig:
    config = check_document(document(spec), base_dir=base_dir, path=None, env=env or {})
    assert config.ok, [str(p) for p in config.problems]
    return config


def problems(spec: dict[str, Any], *, env: dict[str, str] | None = None) -> list[str]:
    config = check_document(document(spec), base_dir=PEERS, path=None, env=env or {})
    return [str(p) for p in config.problems]


def settings(**values: Any) -> Settings:
    base: dict[str, Any] = {
        "openai_api_key": None,
        "anthropic_api_key": None,
        "tool_allowed_networks": [],
    }
    return Settings(**{**base, **values})


def fixture_pack(name: str) -> PromptPack:
    return parse_pack(json.loads((FIXTURE_PACKS / name).read_text()))


def pack_with(
    tools: dict[str, dict[str, Any]],
    prompt_tools: Sequence[str],
    *,
    blocklist: Sequence[str] = (),
) -> PromptPack:
    prompt: dict[str, Any] = {
        "id": "main",
        "name": "Main",
        "version": "1.0.0",
        "system_template": "You help.",
        "tools": list(prompt_tools),
    }
    if blocklist:
        prompt["tool_policy"] = {"blocklist": list(blocklist)}
    return parse_pack(
        {
            "id": "tool-test",
            "name": "Tool test",
            "version": "1.0.0",
            "template_engine": {"version": "v1", "syntax": "{{variable}}"},
            "prompts": {"main": prompt},
            "tools": {n: {"name": n, **t} for n, t in tools.items()},
        }
    )


class NoConnectBackend(httpcore.AsyncNetworkBackend):
    """Fails the test if any connection is attempted: with it, not even a broken guard could
    send a packet."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kw: Any) -> Any:
        self.attempts.append((host, port))
        pytest.fail(f"a connection to {host}:{port} was attempted")

    async def connect_unix_socket(self, path: str, *args: Any, **kw: Any) -> Any:
        pytest.fail(f"a unix socket connection to {path} was attempted")

    async def sleep(self, seconds: float) -> None:  # pragma: no cover
        pass


class LoopbackOnlyBackend(httpcore.AsyncNetworkBackend):
    """Real connections, but only to loopback addresses; anything else fails the test."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.connected: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kw: Any) -> Any:
        if host not in LOOPBACK_HOSTS:
            pytest.fail(f"a connection to non-loopback {host}:{port} was attempted")
        self.connected.append((host, port))
        return await self.inner.connect_tcp(host, port, *args, **kw)

    async def connect_unix_socket(self, path: str, *args: Any, **kw: Any) -> Any:
        pytest.fail("unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def table_resolver(table: dict[str, list[str]]) -> Any:
    """A resolver answering from `table`; any other name fails the test (no real DNS)."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            pytest.fail(f"unexpected DNS lookup of {host!r}")
        return table[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def registry(config: CheckedRuntimeConfig, **kwargs: Any) -> ToolRegistry:
    values = kwargs.pop("settings", None) or settings()
    kwargs.setdefault("network_backend", NoConnectBackend())
    kwargs.setdefault("resolver", table_resolver({}))
    return ToolRegistry(config, values, **kwargs)
