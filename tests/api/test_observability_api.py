"""Request ids, access and run log lines, and traces: one turn can be followed by its
request id through its access line, its run line and its spans."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.logs import ParleyHandler
from app.settings import Settings
from tests.api.helpers import create_conv
from tests.conftest import running_app


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON lines Parley's own root handler writes (created by `create_app`)."""
    stream = io.StringIO()
    handlers: list[ParleyHandler] = []

    def capture() -> None:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, ParleyHandler) and handler not in handlers:
                handler.setStream(stream)
                handlers.append(handler)

    def lines() -> list[dict[str, Any]]:
        capture()
        return [json.loads(line) for line in stream.getvalue().splitlines() if line]

    lines.capture = capture  # type: ignore[attr-defined]
    yield lines
    for handler in handlers:
        logging.getLogger().removeHandler(handler)


def _tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_a_turn_is_followed_by_its_request_id(
    settings_factory: Callable[..., Settings], log_lines: Any
) -> None:
    provider, exporter = _tracing()
    settings = settings_factory(log_format="json", log_level="INFO")
    async with running_app(settings, tracer_provider=provider) as c:
        log_lines.capture()
        conv = await create_conv(c)
        r = await c.post(
            f"/conversations/{conv['id']}/messages",
            json={"content": "a secret question"},
            headers={"X-Request-ID": "req-turn-1"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-request-id"] == "req-turn-1"
        run_id = r.headers["x-run-id"]

    lines = log_lines()
    access = [
        line
        for line in lines
        if line["logger"] == "parley.access" and line["request_id"] == "req-turn-1"
    ]
    assert len(access) == 1, lines
    (line,) = access
    assert line["method"] == "POST"
    assert line["route"] == "/conversations/{conversation_id}/messages"
    assert line["status"] == 200 and line["latency_ms"] > 0
    assert line["user_id"] == "service"
    assert line["conversation_id"] == conv["id"] and line["run_id"] == run_id

    (run_line,) = [x for x in lines if x["logger"] == "parley.run"]
    assert run_line["request_id"] == "req-turn-1"
    assert run_line["run_id"] == run_id and run_line["outcome"] == "completed"
    assert run_line["provider_calls"] == 1 and run_line["provider_latency_ms"] >= 0
    assert run_line["input_tokens"] > 0 and run_line["output_tokens"] > 0
    assert "cost_usd" in run_line
    assert all("a secret question" not in json.dumps(x) for x in lines)  # no content at INFO

    spans: dict[str, ReadableSpan] = {s.name: s for s in exporter.get_finished_spans()}
    http = spans["HTTP POST /conversations/{conversation_id}/messages"]
    assert http.attributes is not None and http.attributes["parley.request_id"] == "req-turn-1"
    assert http.attributes["http.response.status_code"] == 200
    run = spans["parley.run"]
    assert run.parent is not None and run.parent.span_id == http.context.span_id
    assert run.attributes is not None and run.attributes["parley.run.id"] == run_id
    chat = next(s for name, s in spans.items() if name.startswith("chat "))
    assert chat.parent is not None and chat.parent.span_id == run.context.span_id
    assert chat.attributes is not None
    assert chat.attributes["gen_ai.system"] == "mock"
    assert chat.attributes["gen_ai.usage.output_tokens"] == run_line["output_tokens"]
    assert tuple(chat.attributes["gen_ai.response.finish_reasons"]) == ("stop",)  # type: ignore[arg-type]
    commit = spans["parley.store commit_turn"]
    assert commit.parent is not None and commit.parent.span_id == run.context.span_id
    assert http.context.trace_id == run.context.trace_id == chat.context.trace_id


@pytest.mark.parametrize("given", [None, "", "has space", "x" * 129, "bad/slash"])
async def test_unusable_request_ids_are_replaced(
    settings_factory: Callable[..., Settings], given: str | None
) -> None:
    headers = {} if given is None else {"X-Request-ID": given}
    async with running_app(settings_factory()) as c:
        r = await c.get("/healthz", headers=headers)
    new = r.headers["x-request-id"]
    assert new and new != given and len(new) <= 128


async def test_errors_and_unrouted_requests_are_logged_with_their_status(
    settings_factory: Callable[..., Settings], log_lines: Any
) -> None:
    async with running_app(settings_factory(log_format="json", log_level="INFO")) as c:
        log_lines.capture()
        r = await c.get("/conversations/nope", headers={"X-Request-ID": "r404"})
        assert r.status_code == 404
        assert (await c.get("/no/such/path")).status_code == 404
    lines = [x for x in log_lines() if x["logger"] == "parley.access"]
    by_id = {x["request_id"]: x for x in lines}
    assert by_id["r404"]["status"] == 404
    assert by_id["r404"]["route"] == "/conversations/{conversation_id}"
    assert any(x["route"] == "(unrouted)" and x["status"] == 404 for x in lines)


def test_no_spans_without_an_endpoint() -> None:
    from app.tracing import tracer_provider_from_env

    assert tracer_provider_from_env({}) is None
    provider = tracer_provider_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert provider is not None
    provider.shutdown()
