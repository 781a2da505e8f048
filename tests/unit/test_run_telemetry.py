"""RunTelemetry: the spans of one run nest under it and carry their attributes."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.domain import Usage
from app.manager.stats import Stats
from app.manager.telemetry import RunTelemetry


async def test_tool_and_store_spans_nest_under_the_run_in_its_task() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stats = Stats(RunTelemetry(provider.get_tracer("test")))

    stats.run_started("run-1", "conv-1")  # in the "request"

    async def run() -> None:  # the run's own task, as RunService starts it
        stats.tool_call("get_weather", "ok", 0.05)
        stats.tool_call("client_tool", "ok", None)  # answered by the client: no span
        stats.store_call("commit_turn", 0.002)
        stats.run_finished("completed", 0.2, Usage(input_tokens=3, output_tokens=4), 0.0, 2)

    await asyncio.create_task(run())
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"parley.run", "parley.tool get_weather", "parley.store commit_turn"}
    run_span = spans["parley.run"]
    tool = spans["parley.tool get_weather"]
    assert tool.parent is not None and tool.parent.span_id == run_span.context.span_id
    assert tool.attributes is not None and tool.attributes["gen_ai.tool.name"] == "get_weather"
    assert tool.end_time is not None and tool.start_time is not None
    assert 0.04e9 < tool.end_time - tool.start_time < 1e9
    assert run_span.attributes is not None
    assert run_span.attributes["parley.run.status"] == "completed"


def test_without_a_tracer_nothing_is_recorded_and_nothing_fails() -> None:
    stats = Stats()
    stats.run_started("r", "c")
    stats.tool_call("t", "error", 0.1)
    stats.run_finished("failed", 0.1, Usage(), 0.0, 0, error="provider_error")
