"""Scripted mock turns: PromptKit's `mock-responses.yaml` format.

```yaml
defaultResponse: "used when nothing else matches"      # optional
scenarios:
  <name>:
    defaultResponse: "per-scenario fallback"           # optional (PromptKit extension)
    turns:
      1: {response: "text", tool_calls: [{name: t, arguments: {k: v}}]}
      2: "shorthand for {response: ...}"
```
Unknown keys elsewhere in the file are ignored (PromptKit files may carry more than we use);
the fields we read are validated, and a bad file is a `ValueError` naming the file and the
offending location.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ScriptedToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arguments", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return {} if v is None else v


class ScriptedTurn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    response: str | None = None
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    default_response: str | None = Field(default=None, alias="defaultResponse")
    turns: dict[int, ScriptedTurn] = Field(default_factory=dict)

    @field_validator("turns", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: {"response": t} if isinstance(t, str) else t for k, t in v.items()}
        return {} if v is None else v


class Scenarios(BaseModel):
    """A parsed scenario file."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    default_response: str | None = Field(default=None, alias="defaultResponse")
    scenarios: dict[str, Scenario] = Field(default_factory=dict)

    @field_validator("scenarios", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return {} if v is None else v


def parse_scenarios(data: Any, *, source: str = "<data>") -> Scenarios:
    """Validate already-loaded YAML/JSON data."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a mock scenario file must be a mapping at the top level")
    try:
        return Scenarios.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"{source}: invalid mock scenario file: {problems}") from None


def load_scenarios(path: str | Path) -> Scenarios:
    """Read and validate a scenario file (blocking I/O: call it off the event loop)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read mock scenario file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: mock scenario file is not valid YAML: {exc}") from None
    return parse_scenarios(data, source=str(path))
