"""PromptPacks: the models of the format, validation, the registry and template rendering.

Public API (what the rest of Parley imports):
- models: `PromptPack`, `Prompt`, `Variable`, `VariableValidation`, `Tool`, `ToolPolicy`,
  `Parameters`, `TemplateEngine`, `ModelOverride`;
- `parse_pack(document)` -> `PromptPack` or `InvalidPack` listing every problem;
- `PackRegistry` (+ `PackSummary`, `PackLoadProblem`): loaded packs, versions side by side;
- `render_system_prompt(...)` -> `RenderedPrompt`; `prompt_tools(pack, prompt)`;
- helpers: `get_prompt`, `effective_template`, `effective_parameters`, `builtin_variables`,
  `pack_warnings`, `SemVer`.
"""

from app.packs.models import (
    ModelOverride,
    Parameters,
    Prompt,
    PromptPack,
    TemplateEngine,
    Tool,
    ToolParameters,
    ToolPolicy,
    Variable,
    VariableValidation,
)
from app.packs.registry import PackLoadProblem, PackRegistry, PackSummary
from app.packs.render import (
    BUILTIN_VARIABLES,
    RenderedPrompt,
    builtin_variables,
    effective_parameters,
    effective_template,
    get_prompt,
    render_system_prompt,
)
from app.packs.semver import SemVer
from app.packs.tools import prompt_tools
from app.packs.validation import pack_warnings, parse_pack

__all__ = [
    "BUILTIN_VARIABLES",
    "ModelOverride",
    "PackLoadProblem",
    "PackRegistry",
    "PackSummary",
    "Parameters",
    "Prompt",
    "PromptPack",
    "RenderedPrompt",
    "SemVer",
    "TemplateEngine",
    "Tool",
    "ToolParameters",
    "ToolPolicy",
    "Variable",
    "VariableValidation",
    "builtin_variables",
    "effective_parameters",
    "effective_template",
    "get_prompt",
    "pack_warnings",
    "parse_pack",
    "prompt_tools",
    "render_system_prompt",
]
