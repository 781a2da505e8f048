from __future__ import annotations

import json
import time

import pytest

from app.domain import MediaRef, Part, ToolCall, Usage
from app.errors import ProviderError, ProviderRateLimited, ProviderTimeout
from app.providers.anthropic import AnthropicProvider, build_body
from app.providers.base import (
    Finish,
    ProviderMessage,
    ProviderRequest,
    TextDelta,
    ToolCallComplete,
    ToolCallDelta,
    ToolSpec,
    UsageReport,
    collect,
)
from tests.unit.providers.wire import (
    Server,
    awkward_chunks,
    crlf,
    drip,
    fixture_bytes,
    json_response,
    run,
    split_every,
    stream_response,
)

KEY = "sk-ant-api03-test-key-0123456789"
BASE = "https://anthropic.example"
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def provider(server: Server, idle: float = 2.0) -> AnthropicProvider:
    return AnthropicProvider(server.client(), api_key=KEY, base_url=BASE, idle_timeout_s=idle)


def simple(**kw: object) -> ProviderRequest:
    return ProviderRequest(
        model="claude-sonnet-4-5", messages=[ProviderMessage(role="user", content="hi")], **kw
    )


def frame(event: str, data: str | dict[str, object]) -> bytes:
    """One Anthropic SSE frame; a dict gets `type` = the event name."""
    if isinstance(data, dict):
        data = json.dumps({"type": event, **data})
    return f"event: {event}\ndata: {data}\n\n".encode()


# --- request body -------------------------------------------------------------------------


def test_body_maps_history_tool_results_and_parameters() -> None:
    req = ProviderRequest(
        model="claude-sonnet-4-5",
        system="You are terse.",
        messages=[
            ProviderMessage(role="user", content="Weather in Paris and Tokyo?"),
            ProviderMessage(
                role="assistant",
                content="Checking.",
                tool_calls=[
                    ToolCall(id="toolu_1", name="get_weather", arguments={"city": "Paris"}),
                    ToolCall(id="toolu_2", name="get_weather", arguments={"city": "Tokyo"}),
                ],
            ),
            ProviderMessage(role="tool", content='{"temp": 18}', tool_call_id="toolu_1"),
            ProviderMessage(role="tool", content='{"temp": 22}', tool_call_id="toolu_2"),
            ProviderMessage(role="assistant", content="Paris 18, Tokyo 22."),
            ProviderMessage(
                role="user",
                content="And these?",
                parts=[
                    Part(type="text", text="And these?"),
                    Part(
                        type="image",
                        media=MediaRef(mime_type="image/png", url="https://img.example/a.png"),
                    ),
                    Part(
                        type="image",
                        media=MediaRef(mime_type="image/jpeg", url="data:image/jpeg;base64,AAAA"),
                    ),
                ],
            ),
        ],
        tools=[WEATHER],
        tool_choice="required",
        parameters={
            "temperature": 0.2,
            "max_tokens": 300,
            "top_p": 0.9,
            "top_k": 40,
            "presence_penalty": 0.5,
        },
    )
    assert build_body(req) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 300,
        "stream": True,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_2",
                        "name": "get_weather",
                        "input": {"city": "Tokyo"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"temp": 18}'},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": '{"temp": 22}'},
                ],
            },
            {"role": "assistant", "content": "Paris 18, Tokyo 22."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And these?"},
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://img.example/a.png"},
                    },
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"},
                    },
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        "tool_choice": {"type": "any"},
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
    }


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ("get_weather", {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_mapping(choice: str, wire: dict[str, str]) -> None:
    assert build_body(simple(tools=[WEATHER], tool_choice=choice))["tool_choice"] == wire


def test_defaults_and_system_messages_and_tool_result_followed_by_user() -> None:
    req = ProviderRequest(
        model="m",
        messages=[
            ProviderMessage(role="system", content="Be nice."),
            ProviderMessage(role="user", content="q"),
            ProviderMessage(
                role="assistant", tool_calls=[ToolCall(id="t1", name="f", arguments={})]
            ),
            ProviderMessage(role="tool", content="42", tool_call_id="t1"),
            ProviderMessage(role="user", content="thanks, and?"),
        ],
    )
    body = build_body(req)
    assert body["max_tokens"] == 4096
    assert body["system"] == "Be nice."
    assert "tools" not in body and "tool_choice" not in body
    assert body["messages"] == [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "42"},
                {"type": "text", "text": "thanks, and?"},
            ],
        },
    ]


async def test_request_headers_and_url() -> None:
    server = Server([lambda: stream_response(fixture_bytes("anthropic_text.txt"))])
    await run(provider(server), simple())
    (req,) = server.requests
    assert str(req.url) == f"{BASE}/v1/messages"
    assert req.headers["x-api-key"] == KEY
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert req.headers["content-type"] == "application/json"
    assert "authorization" not in req.headers
    assert server.body() == build_body(simple())


# --- streaming ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chunking",
    [
        pytest.param(lambda b: [b], id="whole"),
        pytest.param(lambda b: split_every(b, 1), id="byte-by-byte"),
        pytest.param(lambda b: awkward_chunks(crlf(b)), id="crlf-awkward"),
    ],
)
async def test_text_stream(chunking: object) -> None:
    chunks = chunking(fixture_bytes("anthropic_text.txt"))  # type: ignore[operator]
    server = Server([lambda: stream_response(drip(chunks))])
    events = await run(provider(server), simple())
    assert events == [
        TextDelta("Bonjour"),
        TextDelta("! Il fait beau à Paris ☀️."),
        UsageReport(Usage.of(25, 15)),
        Finish("stop"),
    ]


async def test_tool_use_stream() -> None:
    raw = fixture_bytes("anthropic_tool_use.txt")
    server = Server([lambda: stream_response(drip(split_every(raw, 64)))])
    events = await run(provider(server), simple(tools=[WEATHER]))
    assert events == [
        TextDelta("Okay, let me check"),
        TextDelta(" both cities."),
        ToolCallDelta(0, id="toolu_01T1x1fJ34qAmk2tNTrN7Up6", name="get_weather"),
        ToolCallDelta(0, arguments_delta='{"city": "Pa'),
        ToolCallDelta(0, arguments_delta='ris"}'),
        ToolCallComplete(
            0,
            ToolCall(
                id="toolu_01T1x1fJ34qAmk2tNTrN7Up6", name="get_weather", arguments={"city": "Paris"}
            ),
        ),
        ToolCallDelta(1, id="toolu_01Bq7ZyN5dWmXjV2cUe8kQhR", name="get_weather"),
        ToolCallDelta(1, arguments_delta='{"city":'),
        ToolCallDelta(1, arguments_delta=' "Tokyo", "unit": "c"}'),
        ToolCallComplete(
            1,
            ToolCall(
                id="toolu_01Bq7ZyN5dWmXjV2cUe8kQhR",
                name="get_weather",
                arguments={"city": "Tokyo", "unit": "c"},
            ),
        ),
        UsageReport(Usage.of(572, 89)),  # input + cache reads
        Finish("tool_calls"),
    ]


@pytest.mark.parametrize(
    ("wire", "ours"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
async def test_stop_reasons(wire: str, ours: str) -> None:
    raw = fixture_bytes("anthropic_text.txt").replace(b'"end_turn"', f'"{wire}"'.encode())
    server = Server([lambda: stream_response(raw)])
    result = await collect(provider(server).stream(simple()))
    assert result.finish_reason == ours
    assert result.text == "Bonjour! Il fait beau à Paris ☀️."


async def test_tool_use_with_no_input_deltas_has_empty_arguments() -> None:
    raw = b"".join(
        [
            frame("message_start", {"message": {"usage": {"input_tokens": 5, "output_tokens": 1}}}),
            frame(
                "content_block_start",
                {
                    "index": 0,
                    "content_block": {
                        "type": "tool_use",
                        "id": "toolu_x",
                        "name": "now",
                        "input": {},
                    },
                },
            ),
            frame("content_block_stop", {"index": 0}),
            frame(
                "message_delta",
                {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
            ),
            frame("message_stop", {}),
        ]
    )
    server = Server([lambda: stream_response(raw)])
    result = await collect(provider(server).stream(simple()))
    assert result.tool_calls == [ToolCall(id="toolu_x", name="now", arguments={})]
    assert result.usage == Usage.of(5, 9)


# --- errors -------------------------------------------------------------------------------


async def test_error_event_mid_stream() -> None:
    server = Server([lambda: stream_response(fixture_bytes("anthropic_error_midstream.txt"))])
    seen = []
    with pytest.raises(ProviderError, match="overloaded_error") as info:
        async for ev in provider(server).stream(simple()):
            seen.append(ev)
    assert seen == [TextDelta("Let me")]
    assert info.value.retryable is True  # the retry wrapper still refuses: tokens were seen


async def test_error_event_invalid_request_is_not_retryable() -> None:
    raw = frame(
        "error",
        '{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}',
    )
    server = Server([lambda: stream_response(raw)])
    with pytest.raises(ProviderError) as info:
        await run(provider(server), simple())
    assert info.value.retryable is False and "bad" in info.value.detail


async def test_400_error_message_surfaced() -> None:
    server = Server([lambda: json_response(400, fixture_bytes("anthropic_error_400.json"))])
    with pytest.raises(ProviderError) as info:
        await run(provider(server), simple())
    assert info.value.retryable is False
    assert "invalid_request_error" in info.value.detail
    assert "Each `tool_result` block must have" in info.value.detail


async def test_529_overloaded_is_retryable() -> None:
    server = Server([lambda: json_response(529, fixture_bytes("anthropic_error_529.json"))])
    with pytest.raises(ProviderError) as info:
        await run(provider(server), simple())
    assert info.value.retryable is True and "Overloaded" in info.value.detail


async def test_429_retry_after_http_date_and_no_key_leak() -> None:
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": f"key {KEY}"}}
    server = Server(
        [lambda: json_response(429, body, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})]
    )
    with pytest.raises(ProviderRateLimited) as info:
        await run(provider(server), simple())
    assert info.value.extra["retry_after_s"] == 0.0  # a date in the past: retry now
    assert KEY not in info.value.detail


async def test_truncated_stream_without_message_stop() -> None:
    raw = fixture_bytes("anthropic_text.txt")
    raw = raw[: raw.index(b"event: message_stop")]
    server = Server([lambda: stream_response(raw)])
    with pytest.raises(ProviderError, match="truncated") as info:
        await run(provider(server), simple())
    assert info.value.retryable is False


async def test_malformed_json_event() -> None:
    raw = frame("message_start", '{"type":"message_start","message":{"usage":{"input_tokens":1}}')
    server = Server([lambda: stream_response(raw)])
    with pytest.raises(ProviderError, match="malformed JSON") as info:
        await run(provider(server), simple())
    assert info.value.retryable is True  # nothing was yielded yet


async def test_idle_timeout_and_steady_stream() -> None:
    chunks = split_every(fixture_bytes("anthropic_text.txt"), 120)
    stalled = Server([lambda: stream_response(drip(chunks, stall_after=3, stall_s=5))])
    start = time.monotonic()
    with pytest.raises(ProviderTimeout):
        await run(provider(stalled, idle=0.1), simple())
    assert time.monotonic() - start < 1.0

    steady = Server([lambda: stream_response(drip(chunks, delay_s=0.03))])
    start = time.monotonic()
    result = await collect(provider(steady, idle=0.12).stream(simple()))
    assert time.monotonic() - start > 0.25
    assert result.finish_reason == "stop"


async def test_wrongly_shaped_event_is_a_provider_error() -> None:
    raw = frame("content_block_delta", {"index": "first", "delta": {}})
    server = Server([lambda: stream_response(raw)])
    with pytest.raises(ProviderError, match="unexpected stream event"):
        await run(provider(server), simple())
