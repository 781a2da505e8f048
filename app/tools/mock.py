"""`mock` tools: a fixed `mock_result`, or a `mock_template` rendered against the call's
arguments (the `{{.field}}` subset of `app.tools.templates`) and parsed back as JSON; a
rendering that is not JSON is returned as `{"result": "<text>"}`, as PromptKit does."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from app.json_text import loads_strict
from app.tools.base import ToolExecutor, ToolMode
from app.tools.bindings import MockBinding


class MockExecutor(ToolExecutor):
    mode: ClassVar[ToolMode] = "mock"

    def __init__(self, binding: MockBinding) -> None:
        self._binding = binding

    async def call(self, arguments: dict[str, Any], *, timeout_s: float) -> Any:
        template = self._binding.template
        if template is None:
            return copy.deepcopy(self._binding.result)
        text = template.render(arguments)
        try:
            return loads_strict(text)
        except ValueError:
            return {"result": text}
