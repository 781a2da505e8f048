"""`ToolSet`: the tools of one prompt, and running their calls (see `app.tools.base`)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema.protocols import Validator

from app.providers.base import ToolSpec
from app.tools.base import BoundTool, ToolFailure, ToolOutcome
from app.tools.limits import cap_output, storable

log = logging.getLogger("parley.tools")
MAX_REPORTED_ERRORS = 5


@dataclass(frozen=True)
class CallLimits:
    """What every call of the process shares: the concurrency slots, the default deadline
    and the result size limit."""

    slots: asyncio.Semaphore
    default_timeout_s: float
    max_result_bytes: int


def schema_errors(validator: Validator, value: Any) -> list[str]:
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    out = []
    for error in errors[:MAX_REPORTED_ERRORS]:
        where = "/".join(str(p) for p in error.absolute_path)
        out.append(f"{where}: {error.message}" if where else error.message)
    return out


@dataclass(frozen=True)
class ResolvedTool:
    """A bound tool with the validators the registry compiled for it."""

    bound: BoundTool
    arguments: Validator | None
    output: Validator | None


class ToolSet:
    def __init__(self, tools: Sequence[ResolvedTool], limits: CallLimits) -> None:
        self._tools = {t.bound.name: t for t in tools}
        self._limits = limits

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Any:
        return (t.bound for t in self._tools.values())

    @property
    def tools(self) -> list[BoundTool]:
        return [t.bound for t in self._tools.values()]

    @property
    def specs(self) -> list[ToolSpec]:
        """What the provider receives, in the prompt's order."""
        return [t.bound.spec for t in self._tools.values()]

    def get(self, name: str) -> BoundTool | None:
        found = self._tools.get(name)
        return found.bound if found else None

    async def execute_all(
        self, calls: Sequence[tuple[str, dict[str, Any]]], *, timeout_s: float | None = None
    ) -> list[ToolOutcome]:
        """Run independent calls concurrently (bounded); outcomes in call order."""
        return list(
            await asyncio.gather(*(self.execute(n, a, timeout_s=timeout_s) for n, a in calls))
        )

    async def execute(
        self, name: str, arguments: dict[str, Any], *, timeout_s: float | None = None
    ) -> ToolOutcome:
        """One server-side call; never raises for a tool failure (see `app.tools.base`)."""
        started = time.monotonic()

        def elapsed_ms() -> float:
            return round((time.monotonic() - started) * 1000, 3)

        resolved = self._tools.get(name)
        if resolved is None:
            offered = ", ".join(self._tools) or "none"
            return ToolOutcome.failure(f"unknown tool {name!r} (offered: {offered})")
        bound = resolved.bound
        if not bound.runs_on_server or bound.executor is None:
            return ToolOutcome.failure(f"{name} runs on the client; the client posts its result")
        if not isinstance(arguments, dict):
            return ToolOutcome.failure("the arguments must be a JSON object")
        if resolved.arguments is not None:
            problems = schema_errors(resolved.arguments, arguments)
            if problems:
                return ToolOutcome.failure(
                    "invalid arguments: " + "; ".join(problems), elapsed_ms()
                )
        deadline = min(
            timeout_s if timeout_s is not None else math.inf,
            bound.timeout_s or math.inf,
            self._limits.default_timeout_s,
        )
        try:
            async with asyncio.timeout(deadline):
                async with self._limits.slots:
                    remaining = max(deadline - (time.monotonic() - started), 0.001)
                    output = await bound.executor.call(arguments, timeout_s=remaining)
        except ToolFailure as failure:
            return ToolOutcome.failure(failure.message, elapsed_ms())
        except TimeoutError:
            return ToolOutcome.failure(
                f"the tool did not finish within {deadline:g} s", elapsed_ms()
            )
        except Exception:
            log.exception("tool %s failed unexpectedly", name)
            return ToolOutcome.failure(
                "the tool failed unexpectedly (the service log has details)", elapsed_ms()
            )
        if resolved.output is not None:
            problems = schema_errors(resolved.output, output)
            if problems:
                return ToolOutcome.failure(
                    "the tool's result does not match its output_schema: " + "; ".join(problems),
                    elapsed_ms(),
                )
        output, _ = cap_output(storable(output), self._limits.max_result_bytes)
        return ToolOutcome(output=output, is_error=False, latency_ms=elapsed_ms())
