"""Per-run traces and log lines, fed by the same hooks as the metrics (`Stats`).

A run's span is opened when the run is admitted (inside the request, so its parent is
the request's span) and kept in a `ContextVar`: asyncio copies the context into the
run's task, so the provider, store and tool hooks called while the run executes find
their parent without being handed it. The hooks report durations after the fact, so
child spans are recorded with explicit start and end times.

Each finished run also writes one `parley.run` line: run and conversation ids, outcome,
provider latency, tokens and cost (never message content).
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass, field

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context

from app.domain import Usage

log = logging.getLogger("parley.run")


@dataclass
class _RunScope:
    run_id: str
    conversation_id: str
    span: Span | None
    provider_s: float = 0.0
    first_event_s: float | None = None
    provider_calls: int = 0
    tool_calls: int = 0
    models: list[str] = field(default_factory=list)


_RUN: ContextVar[_RunScope | None] = ContextVar("parley_run_scope", default=None)


def _ns_ago(seconds: float) -> int:
    return time.time_ns() - int(seconds * 1e9)


class RunTelemetry:
    def __init__(self, tracer: Tracer | None) -> None:
        self._tracer = tracer

    def run_started(self, run_id: str, conversation_id: str) -> None:
        span = None
        if self._tracer is not None:
            span = self._tracer.start_span(
                "parley.run",
                kind=SpanKind.INTERNAL,
                attributes={"parley.run.id": run_id, "parley.conversation.id": conversation_id},
            )
        _RUN.set(_RunScope(run_id, conversation_id, span))

    def provider_call(
        self,
        provider: str,
        *,
        model: str,
        first_event_s: float | None,
        total_s: float,
        usage: Usage | None = None,
        finish_reason: str | None = None,
        error: str | None = None,
    ) -> None:
        scope = _RUN.get()
        if scope is not None:
            scope.provider_s += total_s
            scope.provider_calls += 1
            if scope.first_event_s is None:
                scope.first_event_s = first_event_s
        if self._tracer is None:
            return
        attributes: dict[str, str | int | list[str]] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": provider,
            "gen_ai.request.model": model,
        }
        if usage is not None:
            attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
        if finish_reason is not None:
            attributes["gen_ai.response.finish_reasons"] = [finish_reason]
        span = self._child(f"chat {model}", total_s, SpanKind.CLIENT)
        if span is None:
            return
        span.set_attributes(attributes)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
            span.set_attribute("error.type", error)
        span.end()

    def store_call(self, operation: str, seconds: float) -> None:
        span = self._child(f"parley.store {operation}", seconds, SpanKind.INTERNAL)
        if span is not None:
            span.set_attribute("parley.store.operation", operation)
            span.end()

    def tool_call(self, name: str, outcome: str, seconds: float) -> None:
        scope = _RUN.get()
        if scope is not None:
            scope.tool_calls += 1
        span = self._child(f"parley.tool {name}", seconds, SpanKind.INTERNAL)
        if span is not None:
            span.set_attributes({"gen_ai.tool.name": name, "parley.tool.outcome": outcome})
            if outcome != "ok":
                span.set_status(Status(StatusCode.ERROR, outcome))
            span.end()

    def run_finished(
        self, status: str, seconds: float, usage: Usage, cost: float, error: str | None = None
    ) -> None:
        scope = _RUN.get()
        if scope is None:
            return
        _RUN.set(None)
        log.info(
            "run %s %s conversation=%s in %.1f ms (provider %.1f ms, %d calls) "
            "tokens=%d/%d cost=%.6f%s",
            scope.run_id,
            status,
            scope.conversation_id,
            seconds * 1000,
            scope.provider_s * 1000,
            scope.provider_calls,
            usage.input_tokens,
            usage.output_tokens,
            cost,
            f" error={error}" if error else "",
            extra={
                "run_id": scope.run_id,
                "conversation_id": scope.conversation_id,
                "outcome": status,
                "error_code": error,
                "latency_ms": round(seconds * 1000, 2),
                "provider_latency_ms": round(scope.provider_s * 1000, 2),
                "provider_first_event_ms": None
                if scope.first_event_s is None
                else round(scope.first_event_s * 1000, 2),
                "provider_calls": scope.provider_calls,
                "tool_calls": scope.tool_calls,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cost_usd": cost,
            },
        )
        if scope.span is not None:
            scope.span.set_attributes(
                {
                    "parley.run.status": status,
                    "gen_ai.usage.input_tokens": usage.input_tokens,
                    "gen_ai.usage.output_tokens": usage.output_tokens,
                    "parley.cost_usd": cost,
                }
            )
            if error is not None or status == "failed":
                scope.span.set_status(Status(StatusCode.ERROR, error or status))
            scope.span.end()

    def _child(self, name: str, seconds: float, kind: SpanKind) -> Span | None:
        scope = _RUN.get()
        if self._tracer is None:
            return None
        context = set_span_in_context(scope.span) if scope and scope.span else None
        return self._tracer.start_span(
            name, context=context, kind=kind, start_time=_ns_ago(seconds)
        )
