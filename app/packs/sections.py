"""Pack and prompt sections Parley stores and returns but does not execute.

Strict (mirroring the schema exactly): validators, evals (+ metric), tested_models, pipeline,
metadata, compilation, skills, agents, workflow (including its `if`/`then` rules).
Loose: a composition's `steps` are kept as raw JSON objects (each must be an object); the
step graph (`oneOf` over five step kinds and predicates) is a runtime concern of engines that
run compositions, which Parley is not. Everything else about a composition is strict.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from app.packs.fields import (
    NonEmptyStr,
    NonNegativeNumber,
    Omittable,
    OpenModel,
    PositiveInt,
    StrictModel,
    nested_errors,
)


class Validator(StrictModel):
    """A guardrail on responses. `type` is open: runtimes register their own."""

    type: NonEmptyStr
    enabled: bool
    fail_on_violation: Omittable[bool] = None
    params: Omittable[dict[str, Any]] = None


class MetricRange(OpenModel):
    min: Omittable[float] = None
    max: Omittable[float] = None


class MetricDef(OpenModel):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*\Z")]
    type: Literal["gauge", "counter", "histogram", "boolean"]
    range: Omittable[MetricRange] = None


class Eval(StrictModel):
    id: NonEmptyStr
    description: Omittable[str] = None
    type: NonEmptyStr
    trigger: Literal["every_turn", "on_session_complete", "sample_turns", "sample_sessions"]
    sample_percentage: Omittable[Annotated[float, Field(ge=0, le=100)]] = None
    enabled: Omittable[bool] = None
    params: Omittable[dict[str, Any]] = None
    metric: Omittable[MetricDef] = None


class TestedModel(StrictModel):
    __test__ = False  # not a pytest test class, despite the name

    provider: str
    model: str
    date: str  # schema `format: date` is an annotation only (not asserted in 2020-12)
    success_rate: Omittable[Annotated[float, Field(ge=0, le=1)]] = None
    avg_tokens: Omittable[NonNegativeNumber] = None
    avg_cost: Omittable[NonNegativeNumber] = None
    avg_latency_ms: Omittable[NonNegativeNumber] = None
    notes: Omittable[str] = None


class MiddlewareConfig(StrictModel):
    type: str
    config: Omittable[dict[str, Any]] = None


class PipelineConfig(StrictModel):
    stages: list[str]
    middleware: Omittable[list[MiddlewareConfig]] = None


class CostEstimate(OpenModel):
    min_cost_usd: Omittable[NonNegativeNumber] = None
    max_cost_usd: Omittable[NonNegativeNumber] = None
    avg_cost_usd: Omittable[NonNegativeNumber] = None


class PackMetadata(OpenModel):
    """Free-form pack metadata; the four keys the schema names are typed."""

    domain: Omittable[str] = None
    language: Omittable[Annotated[str, Field(pattern=r"^[a-z]{2}\Z")]] = None
    tags: Omittable[list[str]] = None
    cost_estimate: Omittable[CostEstimate] = None


class Compilation(OpenModel):
    compiled_with: str
    created_at: str  # `format: date-time`, an annotation only
    schema_: str = Field(alias="schema")
    source: Omittable[str] = None


class SkillPathSource(StrictModel):
    path: str
    preload: Omittable[bool] = None


class InlineSkill(StrictModel):
    name: NonEmptyStr
    description: NonEmptyStr
    instructions: NonEmptyStr


def _skill_kind(value: Any) -> str:
    """Which `oneOf` branch to report errors against: strings, then `path` objects."""
    if isinstance(value, str):
        return "string"
    if isinstance(value, SkillPathSource) or (isinstance(value, dict) and "path" in value):
        return "path"
    return "inline"


SkillSource = Annotated[
    Annotated[str, Tag("string")]
    | Annotated[SkillPathSource, Tag("path")]
    | Annotated[InlineSkill, Tag("inline")],
    Discriminator(_skill_kind),
]
"""A skill: a path string, `{path, preload}`, or an inline `{name, description, instructions}`."""


class AgentDef(StrictModel):
    description: Omittable[str] = None
    tags: Omittable[list[str]] = None
    input_modes: Omittable[list[str]] = None
    output_modes: Omittable[list[str]] = None
    state: Omittable[str] = None


class AgentsConfig(StrictModel):
    entry: str
    members: dict[str, AgentDef] = Field(min_length=1)


class WorkflowArtifactDef(StrictModel):
    type: str
    mode: Omittable[Literal["replace", "append"]] = None


class WorkflowState(StrictModel):
    """One state. Non-terminal states need `on_event`; `composition` orchestration needs
    `composition`, every other mode needs `prompt_task` (the schema's `if`/`then` rules)."""

    prompt_task: Omittable[str] = None
    description: Omittable[str] = None
    on_event: Omittable[dict[str, str]] = None
    persistence: Omittable[Literal["transient", "persistent"]] = None
    orchestration: Omittable[Literal["internal", "external", "hybrid", "composition"]] = None
    composition: Omittable[str] = None
    skills: Omittable[str] = None
    terminal: Omittable[bool] = None
    max_visits: Omittable[PositiveInt] = None
    on_max_visits: Omittable[str] = None
    artifacts: Omittable[dict[str, WorkflowArtifactDef]] = None

    @model_validator(mode="after")
    def _conditional_requirements(self) -> WorkflowState:
        missing: list[str] = []
        if self.terminal is not True and self.on_event is None:
            missing.append("on_event")
        if self.orchestration == "composition":
            if self.composition is None:
                missing.append("composition")
        elif self.prompt_task is None:
            missing.append("prompt_task")
        if missing:
            raise nested_errors(
                "WorkflowState", [((name,), "required field is missing", None) for name in missing]
            )
        return self


class WorkflowConfig(StrictModel):
    version: PositiveInt
    entry: str
    states: dict[str, WorkflowState] = Field(min_length=1)
    engine: Omittable[dict[str, Any]] = None


class Composition(StrictModel):
    """A step graph (RFC 0010). `steps` are kept as raw objects; see the module docstring."""

    version: Annotated[PositiveInt, Field(le=1)]  # `const: 1`
    description: Omittable[str] = None
    input_schema: Omittable[str] = None
    output_schema: Omittable[str] = None
    output: Omittable[str] = None
    steps: list[dict[str, Any]] = Field(min_length=1)
    engine: Omittable[dict[str, Any]] = None
