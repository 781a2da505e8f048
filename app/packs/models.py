"""The PromptPack document (schema version 1.5.0) as immutable pydantic models.

Everything Parley executes is modelled strictly, property by property, with the schema's
types, patterns, lengths, ranges, enums and `additionalProperties: false`: the pack's top
level, `template_engine`, prompts, variables and their validation, tools and their
`parameters`, `tool_policy`, `parameters` and `model_overrides`. Sections Parley only stores
are in `sections` and `media` (also strict, except a composition's step graph).

Validate with `app.packs.parse_pack`, which also runs the semantic checks and turns every
problem into one `InvalidPack`; `PromptPack.model_validate` alone gives only schema checks.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from app.packs.fields import (
    PACK_ID_PATTERN,
    PROMPT_ID_PATTERN,
    Identifier,
    NonEmptyStr,
    NonNegativeInt,
    Omittable,
    OpenModel,
    PositiveInt,
    StrictModel,
)
from app.packs.media import MediaConfig
from app.packs.sections import (
    AgentsConfig,
    Compilation,
    Composition,
    Eval,
    PackMetadata,
    PipelineConfig,
    SkillSource,
    TestedModel,
    Validator,
    WorkflowConfig,
)
from app.packs.semver import SEMVER_PATTERN

SemVerStr = Annotated[str, Field(pattern=SEMVER_PATTERN)]
VariableType = Literal["string", "number", "boolean", "object", "array"]
TemplateFeature = Literal["basic_substitution", "fragments", "conditionals", "loops", "filters"]


class TemplateEngine(StrictModel):
    version: str
    syntax: str
    features: Omittable[list[TemplateFeature]] = None


class VariableValidation(StrictModel):
    """Runtime rules for a variable's value; Parley enforces them (see `render`)."""

    pattern: Omittable[str] = None
    min_length: Omittable[NonNegativeInt] = None
    max_length: Omittable[PositiveInt] = None
    minimum: Omittable[float] = None
    maximum: Omittable[float] = None
    enum: Omittable[list[Any]] = None


class Variable(StrictModel):
    """A declared template variable. `default` may be any JSON value; use `has_default`
    (a `"default": null` counts as no default, since null is never a usable value)."""

    name: Identifier
    type: VariableType
    required: bool
    default: Any = None
    description: Omittable[str] = None
    example: Any = None
    validation: Omittable[VariableValidation] = None

    @property
    def has_default(self) -> bool:
        return self.default is not None


class ToolPolicy(StrictModel):
    """Defaults are the schema's documented defaults, so consumers need no fallbacks."""

    tool_choice: Literal["auto", "required", "none"] = "auto"
    max_rounds: PositiveInt = 5
    max_tool_calls_per_turn: PositiveInt = 10
    blocklist: list[str] = Field(default_factory=list)


class Parameters(StrictModel):
    temperature: Omittable[Annotated[float, Field(ge=0, le=2)]] = None
    max_tokens: Omittable[PositiveInt] = None
    top_p: Omittable[Annotated[float, Field(ge=0, le=1)]] = None
    top_k: PositiveInt | None = None  # the schema allows an explicit null ("no limit")
    frequency_penalty: Omittable[Annotated[float, Field(ge=-2, le=2)]] = None
    presence_penalty: Omittable[Annotated[float, Field(ge=-2, le=2)]] = None


class ModelOverride(StrictModel):
    """Per-model changes; `Prompt.model_overrides` stores these as plain dicts."""

    system_template_prefix: Omittable[str] = None
    system_template_suffix: Omittable[str] = None
    system_template: Omittable[str] = None
    parameters: Omittable[Parameters] = None


class ToolParameters(OpenModel):
    """The JSON Schema of a tool's arguments: an object schema with `properties`.
    Other JSON Schema keywords (`additionalProperties`, `$defs`, ...) are kept."""

    type: Literal["object"]
    properties: dict[str, dict[str, Any]]
    required: Omittable[list[str]] = None


def _override_as_dict(value: dict[str, Any]) -> dict[str, Any]:
    return ModelOverride.model_validate(value).model_dump(exclude_unset=True)


def _tool_parameters_as_dict(value: dict[str, Any]) -> dict[str, Any]:
    return ToolParameters.model_validate(value).model_dump(exclude_unset=True)


class Tool(StrictModel):
    """A function the model may call. `parameters` is a plain JSON Schema dict (validated
    against the schema's rules), ready to hand to a provider."""

    name: Identifier
    description: NonEmptyStr
    parameters: Omittable[Annotated[dict[str, Any], AfterValidator(_tool_parameters_as_dict)]] = (
        None
    )


class Prompt(StrictModel):
    id: Annotated[str, Field(pattern=PROMPT_ID_PATTERN)]
    name: NonEmptyStr
    description: Omittable[str] = None
    version: SemVerStr
    system_template: NonEmptyStr
    variables: list[Variable] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)
    tool_policy: Omittable[ToolPolicy] = None
    pipeline: Omittable[PipelineConfig] = None
    parameters: Omittable[Parameters] = None
    validators: list[Validator] = Field(default_factory=list)
    evals: list[Eval] = Field(default_factory=list)
    tested_models: list[TestedModel] = Field(default_factory=list)
    model_overrides: dict[str, Annotated[dict[str, Any], AfterValidator(_override_as_dict)]] = (
        Field(default_factory=dict)
    )
    """Model name -> `ModelOverride` fields as a dict (`system_template_prefix`,
    `system_template_suffix`, `system_template`, `parameters`); validated, unset keys absent."""
    media: Omittable[MediaConfig] = None

    def variable(self, name: str) -> Variable | None:
        return next((v for v in self.variables if v.name == name), None)


class PromptPack(StrictModel):
    schema_: Omittable[str] = Field(default=None, alias="$schema")
    id: Annotated[str, Field(pattern=PACK_ID_PATTERN, min_length=1, max_length=100)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    version: SemVerStr
    description: Omittable[Annotated[str, Field(max_length=5000)]] = None
    template_engine: TemplateEngine
    prompts: dict[str, Prompt] = Field(min_length=1)
    fragments: dict[str, str] = Field(default_factory=dict)
    tools: dict[str, Tool] = Field(default_factory=dict)
    metadata: Omittable[PackMetadata] = None
    compilation: Omittable[Compilation] = None
    evals: list[Eval] = Field(default_factory=list)
    workflow: Omittable[WorkflowConfig] = None
    agents: Omittable[AgentsConfig] = None
    skills: list[SkillSource] = Field(default_factory=list)
    compositions: dict[str, Composition] = Field(default_factory=dict)

    def to_document(self) -> dict[str, Any]:
        """The pack as a JSON document: what was loaded, minus nothing, plus nothing."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)
