from __future__ import annotations

import json
import time

import httpx
import pytest

from app.domain import MediaRef, Part, ToolCall, Usage
from app.errors import ProviderError, ProviderRateLimited, ProviderTimeout
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
from app.providers.openai import OpenAIProvider, build_body
from tests.unit.providers.wire import (
    Server,
    awkward_chunks,
    chunk_doc,
    crlf,
    drip,
    fixture_bytes,
    json_response,
    run,
    split_every,
    sse_frames,
    stream_response,
)

KEY = "sk-test-0123456789abcdef"
BASE = "https://llm.example/v1"
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def provider(server: Server, idle: float = 2.0, key: str | None = KEY) -> OpenAIProvider:
    return OpenAIProvider(server.client(), api_key=key, base_url=BASE, idle_timeout_s=idle)


def simple(**kw: object) -> ProviderRequest:
    return ProviderRequest(
        model="gpt-4o-mini", messages=[ProviderMessage(role="user", content="hi")], **kw
    )


# --- request body -------------------------------------------------------------------------


def test_body_maps_multi_round_history_tools_and_parameters() -> None:
    req = ProviderRequest(
        model="gpt-4o",
        system="You are terse.",
        messages=[
            ProviderMessage(role="user", content="Weather in Paris and Tokyo?"),
            ProviderMessage(
                role="assistant",
                content="",
                tool_calls=[
                    ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"}),
                    ToolCall(id="call_2", name="get_weather", arguments={"city": "Tokyo"}),
                ],
            ),
            ProviderMessage(role="tool", content='{"temp": 18}', tool_call_id="call_1"),
            ProviderMessage(role="tool", content='{"temp": 22}', tool_call_id="call_2"),
            ProviderMessage(role="assistant", content="Paris 18, Tokyo 22."),
            ProviderMessage(
                role="user",
                content="And this?",
                parts=[
                    Part(type="text", text="And this?"),
                    Part(
                        type="image",
                        media=MediaRef(mime_type="image/png", url="https://img.example/a.png"),
                    ),
                ],
            ),
        ],
        tools=[WEATHER],
        tool_choice="get_weather",
        parameters={
            "temperature": 0.2,
            "max_tokens": 256,
            "top_p": 0.9,
            "top_k": 40,
            "frequency_penalty": 0.1,
            "presence_penalty": 0.3,
        },
    )
    assert build_body(req) == {
        "model": "gpt-4o",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Tokyo"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 18}'},
            {"role": "tool", "tool_call_id": "call_2", "content": '{"temp": 22}'},
            {"role": "assistant", "content": "Paris 18, Tokyo 22."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And this?"},
                    {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}},
                ],
            },
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0.2,
        "max_tokens": 256,
        "top_p": 0.9,
        "frequency_penalty": 0.1,
        "presence_penalty": 0.3,
    }


@pytest.mark.parametrize("choice", ["auto", "none", "required"])
def test_body_keyword_tool_choice(choice: str) -> None:
    assert build_body(simple(tools=[WEATHER], tool_choice=choice))["tool_choice"] == choice


def test_body_without_tools_omits_tools_and_choice() -> None:
    body = build_body(simple(tool_choice="auto"))
    assert "tools" not in body and "tool_choice" not in body
    assert body["messages"] == [{"role": "user", "content": "hi"}]


def test_body_reasoning_models_use_max_completion_tokens() -> None:
    body = build_body(
        ProviderRequest(
            model="o3-mini",
            messages=[ProviderMessage(role="user", content="x")],
            parameters={"max_tokens": 100},
        )
    )
    assert body["max_completion_tokens"] == 100 and "max_tokens" not in body


async def test_request_is_posted_with_headers_and_body() -> None:
    server = Server([lambda: stream_response(fixture_bytes("openai_text.txt"))])
    await run(provider(server), simple(parameters={"temperature": 0}))
    (req,) = server.requests
    assert req.method == "POST"
    assert str(req.url) == f"{BASE}/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["content-type"] == "application/json"
    assert server.body() == build_body(simple(parameters={"temperature": 0}))


async def test_no_key_sends_no_authorization_header() -> None:
    server = Server([lambda: stream_response(fixture_bytes("openai_compat_no_usage.txt"))])
    await run(provider(server, key=None), simple())
    assert "authorization" not in server.requests[0].headers


# --- streaming ----------------------------------------------------------------------------

TEXT = "Bonjour! Il fait beau à Paris ☀️."


@pytest.mark.parametrize(
    "chunking",
    [
        pytest.param(lambda b: [b], id="whole"),
        pytest.param(lambda b: split_every(b, 1), id="byte-by-byte"),
        pytest.param(lambda b: split_every(b, 37), id="37-bytes"),
        pytest.param(awkward_chunks, id="awkward"),
        pytest.param(lambda b: awkward_chunks(crlf(b)), id="crlf-awkward"),
    ],
)
async def test_text_stream(chunking: object) -> None:
    raw = fixture_bytes("openai_text.txt")
    chunks = chunking(raw)  # type: ignore[operator]
    server = Server([lambda: stream_response(drip(chunks))])
    events = await run(provider(server), simple())
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert texts == ["Bon", "jour", "!", " Il", " fait", " beau", " à", " Paris", " ☀️", "."]
    assert events[-2:] == [UsageReport(Usage.of(24, 10)), Finish("stop")]


async def test_parallel_tool_calls_with_split_arguments() -> None:
    raw = fixture_bytes("openai_parallel_tool_calls.txt")
    server = Server([lambda: stream_response(drip(split_every(raw, 50)))])
    events = await run(provider(server), simple(tools=[WEATHER]))
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0] == ToolCallDelta(0, "call_5uUxTCKXqqBcTsIU9rS3Jrx0", "get_weather", "")
    assert deltas[4] == ToolCallDelta(1, "call_Q2fB8sVnY3k4xZq7dPmLr1cT", "get_weather", "")
    assert all(d.id is None and d.name is None for i, d in enumerate(deltas) if i not in (0, 4))
    assert "".join(d.arguments_delta for d in deltas if d.index == 0) == '{"city": "Paris"}'
    assert events[-4:] == [
        ToolCallComplete(
            0,
            ToolCall(
                id="call_5uUxTCKXqqBcTsIU9rS3Jrx0", name="get_weather", arguments={"city": "Paris"}
            ),
        ),
        ToolCallComplete(
            1,
            ToolCall(
                id="call_Q2fB8sVnY3k4xZq7dPmLr1cT",
                name="get_weather",
                arguments={"city": "Tokyo", "unit": "c"},
            ),
        ),
        UsageReport(Usage.of(81, 52)),
        Finish("tool_calls"),
    ]


@pytest.mark.parametrize(
    ("wire", "ours"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("content_filter", "content_filter"),
        ("tool_calls", "tool_calls"),
        ("something_new", "stop"),
    ],
)
async def test_finish_reasons(wire: str, ours: str) -> None:
    raw = sse_frames(chunk_doc({"content": "x"}), chunk_doc({}, wire))
    server = Server([lambda: stream_response(raw)])
    result = await collect(provider(server).stream(simple()))
    assert result.finish_reason == ours
    assert result.usage is None  # a server that sent no usage


async def test_legacy_function_call_delta() -> None:
    raw = sse_frames(
        chunk_doc({"role": "assistant", "function_call": {"name": "get_weather", "arguments": ""}}),
        chunk_doc({"function_call": {"arguments": '{"city": "Oslo"}'}}),
        chunk_doc({}, "function_call"),
    )
    server = Server([lambda: stream_response(raw)])
    result = await collect(provider(server).stream(simple()))
    assert result.finish_reason == "tool_calls"
    assert [(t.name, t.arguments) for t in result.tool_calls] == [("get_weather", {"city": "Oslo"})]


async def test_compatible_server_tool_call_without_index_and_stop_reason() -> None:
    # Some servers send a whole tool call per chunk, without `index`, and finish with "stop".
    raw = sse_frames(
        chunk_doc(
            {"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": '{"x": 1}'}}]}
        ),
        chunk_doc({"tool_calls": [{"id": "b", "function": {"name": "g", "arguments": {"y": 2}}}]}),
        {**chunk_doc({}, "stop"), "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
    )
    server = Server([lambda: stream_response(raw)])
    result = await collect(provider(server).stream(simple()))
    assert [(t.id, t.name, t.arguments) for t in result.tool_calls] == [
        ("a", "f", {"x": 1}),
        ("b", "g", {"y": 2}),
    ]
    assert result.finish_reason == "tool_calls"
    assert result.usage == Usage.of(3, 4)


async def test_compat_stream_without_usage() -> None:
    server = Server([lambda: stream_response(fixture_bytes("openai_compat_no_usage.txt"))])
    events = await run(provider(server), simple())
    assert events == [TextDelta("Hi"), TextDelta(" there"), Finish("stop")]


# --- errors -------------------------------------------------------------------------------


async def test_429_with_retry_after() -> None:
    body = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit"}}
    server = Server([lambda: json_response(429, body, {"retry-after": "7"})])
    with pytest.raises(ProviderRateLimited) as info:
        await run(provider(server), simple())
    assert info.value.retryable is True
    assert info.value.extra["retry_after_s"] == 7.0
    assert info.value.headers["Retry-After"] == "7"
    assert "Rate limit reached" in info.value.detail


async def test_400_error_body_message_is_surfaced() -> None:
    server = Server([lambda: json_response(400, fixture_bytes("openai_error_400.json"))])
    with pytest.raises(ProviderError) as info:
        await run(provider(server), simple())
    err = info.value
    assert type(err) is ProviderError and err.retryable is False
    assert "HTTP 400" in err.detail
    assert "Invalid type for 'temperature'" in err.detail


@pytest.mark.parametrize("status", [500, 502, 503, 529])
async def test_5xx_is_retryable(status: int) -> None:
    server = Server([lambda: json_response(status, b"upstream exploded")])
    with pytest.raises(ProviderError) as info:
        await run(provider(server), simple())
    assert info.value.retryable is True
    assert "upstream exploded" in info.value.detail


async def test_api_key_never_leaks_into_errors() -> None:
    body = {"error": {"message": f"Incorrect API key provided: {KEY}.", "type": "auth"}}
    server = Server([lambda: json_response(401, body)])
    with pytest.raises(ProviderError) as info:
        await run(provider(server), simple())
    assert KEY not in str(info.value) and KEY not in info.value.detail
    assert info.value.retryable is False
    assert KEY not in repr(provider(server))


async def test_connect_error_is_retryable() -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    p = OpenAIProvider(client, api_key=KEY, base_url=BASE, idle_timeout_s=1)
    with pytest.raises(ProviderError) as info:
        await run(p, simple())
    assert info.value.retryable is True and "ConnectError" in info.value.detail


async def test_malformed_json_chunk() -> None:
    raw = sse_frames(chunk_doc({"content": "ok"}), done=False) + b'data: {"choices": [\n\n'
    server = Server([lambda: stream_response(raw)])
    seen = []
    with pytest.raises(ProviderError) as info:
        async for ev in provider(server).stream(simple()):
            seen.append(ev)
    assert seen == [TextDelta("ok")]
    assert "malformed JSON" in info.value.detail and info.value.retryable is False


async def test_invalid_tool_arguments_json() -> None:
    raw = sse_frames(
        chunk_doc({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]}),
        chunk_doc({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": '}}]}),
        chunk_doc({}, "tool_calls"),
    )
    server = Server([lambda: stream_response(raw)])
    with pytest.raises(ProviderError, match="invalid JSON arguments"):
        await run(provider(server), simple())


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_tool_arguments_that_are_no_json_number_are_refused(value: str) -> None:
    """The standard library's parser takes NaN / Infinity (and 1e999 as inf), which then
    reached the stored message and its events (PostgreSQL's jsonb refuses them)."""
    raw = sse_frames(
        chunk_doc({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]}),
        chunk_doc({"tool_calls": [{"index": 0, "function": {"arguments": f'{{"a": {value}}}'}}]}),
        chunk_doc({}, "tool_calls"),
    )
    server = Server([lambda: stream_response(raw)])
    with pytest.raises(ProviderError, match="invalid JSON arguments"):
        await run(provider(server), simple())


async def test_truncated_stream_without_done() -> None:
    raw = fixture_bytes("openai_text.txt")
    raw = raw[: raw.index(b"data: [DONE]")]
    server = Server([lambda: stream_response(raw)])
    with pytest.raises(ProviderError, match="truncated") as info:
        await run(provider(server), simple())
    assert info.value.retryable is False


async def test_connection_dropped_mid_stream() -> None:
    chunks = split_every(fixture_bytes("openai_text.txt"), 400)
    server = Server([lambda: stream_response(drip(chunks, fail_after=3))])
    with pytest.raises(ProviderError, match="RemoteProtocolError") as info:
        await run(provider(server), simple())
    assert info.value.retryable is False


async def test_error_object_in_stream() -> None:
    raw = b'data: {"error": {"message": "The server had an error", "type": "server_error"}}\n\n'
    server = Server([lambda: stream_response(raw)])
    with pytest.raises(ProviderError, match="The server had an error"):
        await run(provider(server), simple())


async def test_idle_timeout_stall_fails_fast() -> None:
    chunks = split_every(fixture_bytes("openai_text.txt"), 300)
    server = Server([lambda: stream_response(drip(chunks, stall_after=4, stall_s=5))])
    start = time.monotonic()
    seen = []
    with pytest.raises(ProviderTimeout) as info:
        async for ev in provider(server, idle=0.1).stream(simple()):
            seen.append(ev)
    assert time.monotonic() - start < 1.0
    assert seen  # tokens before the stall were delivered
    assert info.value.retryable is False


async def test_idle_timeout_before_headers() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        import asyncio

        await asyncio.sleep(5)
        return stream_response(b"")

    client = httpx.AsyncClient(transport=httpx.MockTransport(slow))
    p = OpenAIProvider(client, api_key=KEY, base_url=BASE, idle_timeout_s=0.1)
    with pytest.raises(ProviderTimeout) as info:
        await run(p, simple())
    assert info.value.retryable is True


async def test_slow_but_steady_stream_is_not_a_timeout() -> None:
    chunks = split_every(fixture_bytes("openai_text.txt"), 400)  # ~11 chunks
    server = Server([lambda: stream_response(drip(chunks, delay_s=0.04))])
    start = time.monotonic()
    result = await collect(provider(server, idle=0.15).stream(simple()))
    assert time.monotonic() - start > 0.3  # well past the idle limit in total
    assert result.text == TEXT and result.finish_reason == "stop"


async def test_usage_null_on_every_chunk_is_tolerated() -> None:
    docs = [
        {**chunk_doc({"content": "a"}), "usage": None},
        {**chunk_doc({}, "stop"), "usage": None},
    ]
    server = Server([lambda: stream_response(sse_frames(*docs))])
    events = await run(provider(server), simple())
    assert events == [TextDelta("a"), Finish("stop")]
    assert json.loads(server.requests[0].content)["stream_options"] == {"include_usage": True}


async def test_wrongly_shaped_chunk_is_a_provider_error() -> None:
    raw = sse_frames({"choices": [{"index": 0, "delta": "oops", "finish_reason": None}]})
    server = Server([lambda: stream_response(raw)])
    with pytest.raises(ProviderError, match="unexpected stream event"):
        await run(provider(server), simple())
