"""Tools: RuntimeConfig bindings and the executors behind them (the interface is in
`app.tools.base`; the registry in `app.tools.registry`)."""

from app.tools.base import Approval, BoundTool, ToolExecutor, ToolFailure, ToolMode, ToolOutcome
from app.tools.bindings import EMPTY, CheckedRuntimeConfig, Problem
from app.tools.config_loader import RuntimeConfigError, check_runtime_config, load_runtime_config
from app.tools.registry import ToolRegistry, build_registry
from app.tools.toolset import ToolSet

__all__ = [
    "EMPTY",
    "Approval",
    "BoundTool",
    "CheckedRuntimeConfig",
    "Problem",
    "RuntimeConfigError",
    "ToolExecutor",
    "ToolFailure",
    "ToolMode",
    "ToolOutcome",
    "ToolRegistry",
    "ToolSet",
    "build_registry",
    "check_runtime_config",
    "load_runtime_config",
]
