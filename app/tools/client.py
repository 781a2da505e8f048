"""`client` tools: the client runs them. The run pauses with `requires_action` and the
client posts the result (`POST .../tool-results`); nothing runs on the server."""

from __future__ import annotations

from typing import Any, ClassVar

from app.tools.base import ToolExecutor, ToolFailure, ToolMode


class ClientExecutor(ToolExecutor):
    mode: ClassVar[ToolMode] = "client"
    runs_on_server: ClassVar[bool] = False

    async def call(self, arguments: dict[str, Any], *, timeout_s: float) -> Any:
        raise ToolFailure("this tool runs on the client; its result must come from the client")
