"""Load and check a RuntimeConfig file (`PARLEY_RUNTIME_CONFIG`, `parley config check`).

`check_runtime_config(path)` reads and checks the whole file and returns every problem it
finds (nothing is started: no process, no connection). `load_runtime_config(path)` does the
same and raises `RuntimeConfigError` listing every problem, so a bad file stops start-up
and nothing of it is half-applied. Both do blocking I/O (the file, `credential_file`s,
`PATH` look-ups): the lifespan runs them in a thread.

YAML is read as PromptKit's loader (go-yaml) reads it, where it matters: a key repeated in
a mapping is an error, and dates stay strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from app.providers.configured import ProviderSpec
from app.tools.bindings import (
    CheckedRuntimeConfig,
    Loc,
    McpServerSpec,
    Problem,
    ToolBinding,
)
from app.tools.config_mcp import check_mcp_server
from app.tools.config_models import (
    API_VERSION,
    APPLIED_SECTIONS,
    KIND,
    UNAPPLIED_SECTIONS,
    ObjectMeta,
)
from app.tools.config_parse import parse_model
from app.tools.config_providers import DEFAULT_KEY_ENV, check_provider, default_env
from app.tools.config_tools import check_tool

TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "$schema")


class RuntimeConfigError(Exception):
    """A RuntimeConfig that cannot be applied; `problems` lists every reason."""

    def __init__(self, path: Path, problems: tuple[Problem, ...]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid RuntimeConfig {path} ({len(problems)} problems):\n{lines}")


class _Loader(yaml.SafeLoader):
    """SafeLoader without timestamps and with duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in keys:
                raise yaml.constructor.ConstructorError(
                    None, None, f"mapping key {key!r} is defined twice", key_node.start_mark
                )
            keys.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def load_runtime_config(path: Path) -> CheckedRuntimeConfig:
    """The checked config, or `RuntimeConfigError` naming every problem."""
    checked = check_runtime_config(path)
    if checked.problems:
        raise RuntimeConfigError(path, checked.problems)
    return checked


def check_runtime_config(
    path: Path, *, env: Mapping[str, str] | None = None
) -> CheckedRuntimeConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return CheckedRuntimeConfig(path=path, problems=(Problem((), f"cannot read: {exc}"),))
    try:
        document = parse_yaml(text)
    except yaml.YAMLError as exc:
        return CheckedRuntimeConfig(path=path, problems=(Problem((), f"not valid YAML: {exc}"),))
    return check_document(
        document,
        base_dir=path.resolve().parent,
        path=path,
        env=env if env is not None else default_env(),
    )


def check_document(
    document: Any, *, base_dir: Path, path: Path | None, env: Mapping[str, str]
) -> CheckedRuntimeConfig:
    problems: list[Problem] = []
    warnings: list[str] = []
    if not isinstance(document, dict):
        return CheckedRuntimeConfig(
            path=path, problems=(Problem((), "must be a mapping (apiVersion, kind, spec)"),)
        )
    for key in document:
        if key not in TOP_LEVEL:
            problems.append(Problem((key,), "unknown field"))
    if document.get("apiVersion") != API_VERSION:
        problems.append(
            Problem(("apiVersion",), f"must be {API_VERSION} (got {document.get('apiVersion')!r})")
        )
    if document.get("kind") != KIND:
        problems.append(Problem(("kind",), f"must be {KIND} (got {document.get('kind')!r})"))
    if "$schema" in document and not isinstance(document["$schema"], str):
        problems.append(Problem(("$schema",), "must be a string"))
    meta, errors = parse_model(ObjectMeta, document.get("metadata") or {}, ("metadata",))
    problems.extend(errors)
    spec = document.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        problems.append(Problem(("spec",), "must be a mapping"))
        spec = {}
    tools, mcp, providers, unapplied = _check_spec(spec, base_dir, env, problems, warnings)
    return CheckedRuntimeConfig(
        path=path,
        name=meta.name if meta else None,
        tools=tools,
        mcp_servers=tuple(mcp),
        providers=tuple(providers),
        unapplied_sections=tuple(unapplied),
        problems=tuple(problems),
        warnings=tuple(warnings),
    )


def _check_spec(
    spec: dict[str, Any],
    base_dir: Path,
    env: Mapping[str, str],
    problems: list[Problem],
    warnings: list[str],
) -> tuple[dict[str, ToolBinding], list[McpServerSpec], list[ProviderSpec], list[str]]:
    unapplied: list[str] = []
    for key, value in spec.items():
        if key in APPLIED_SECTIONS:
            continue
        if key not in UNAPPLIED_SECTIONS:
            problems.append(Problem(("spec", key), "unknown field"))
            continue
        unapplied.append(key)
        problems.extend(_check_unapplied(key, value))
    tools: dict[str, ToolBinding] = {}
    for name, raw in _mapping(spec.get("tools"), ("spec", "tools"), problems).items():
        binding, errors = check_tool(
            str(name), raw, ("spec", "tools", str(name)), base_dir, warnings
        )
        problems.extend(errors)
        if binding is not None:
            tools[binding.name] = binding
    servers: list[McpServerSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(_list(spec.get("mcp_servers"), ("spec", "mcp_servers"), problems)):
        server, errors = check_mcp_server(raw, ("spec", "mcp_servers", i), base_dir, seen)
        problems.extend(errors)
        if server is not None:
            servers.append(server)
    providers: list[ProviderSpec] = []
    ids: set[str] = set()
    for i, raw in enumerate(_list(spec.get("providers"), ("spec", "providers"), problems)):
        provider, errors = check_provider(raw, ("spec", "providers", i), base_dir, ids, env)
        problems.extend(errors)
        if provider is not None:
            providers.append(provider)
            warnings.extend(_keyless_warning(provider, i))
    _check_prices(providers, problems)
    return tools, servers, providers, unapplied


def _keyless_warning(provider: ProviderSpec, index: int) -> list[str]:
    """An `openai`/`claude` entry for the vendor's own API with no credential at all is
    valid (PromptKit loads it) but every call it makes is refused, so say so at start-up
    rather than on the first turn (the shipped example's first provider is one when
    OPENAI_API_KEY is unset, and the first provider is the default)."""
    if provider.type not in DEFAULT_KEY_ENV or provider.api_key or provider.base_url:
        return []
    names = " or ".join(DEFAULT_KEY_ENV[provider.type])
    return [
        f"spec.providers.{index} ({provider.id!r}): no credential and {names} is not set;"
        " its calls will fail (set one, or PARLEY_DEFAULT_PROVIDER=mock to try without)"
    ]


def _check_prices(providers: list[ProviderSpec], problems: list[Problem]) -> None:
    """Prices are kept per model, so two entries may not price one model differently."""
    priced: dict[str, ProviderSpec] = {}
    for i, p in enumerate(providers):
        if p.pricing is None:
            continue
        other = priced.setdefault(p.model, p)
        if other is not p and other.pricing != p.pricing:
            problems.append(
                Problem(
                    ("spec", "providers", i, "pricing"),
                    f"model {p.model!r} is already priced differently by {other.id!r}",
                )
            )


def _mapping(value: Any, loc: Loc, problems: list[Problem]) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(Problem(loc, "must be a mapping"))
        return {}
    return value


def _list(value: Any, loc: Loc, problems: list[Problem]) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(Problem(loc, "must be a list"))
        return []
    return value


def _check_unapplied(key: str, value: Any) -> list[Problem]:
    """Sections Parley does not apply are still checked against the format."""
    shape, model = UNAPPLIED_SECTIONS[key]
    loc: Loc = ("spec", key)
    problems: list[Problem] = []
    if model is None:
        if not isinstance(value, str):
            problems.append(Problem(loc, "must be a string"))
        return problems
    if shape == "one":
        return parse_model(model, value, loc)[1]
    if shape == "list":
        for i, item in enumerate(_list(value, loc, problems)):
            problems.extend(parse_model(model, item, (*loc, i))[1])
        return problems
    for name, item in _mapping(value, loc, problems).items():
        problems.extend(parse_model(model, item, (*loc, str(name)))[1])
    return problems
