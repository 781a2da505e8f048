from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.domain import Part, ToolCall, Usage
from app.domain.tokens import estimate_tokens
from app.errors import ProviderError, ProviderRateLimited, ProviderTimeout
from app.providers.base import (
    Finish,
    ProviderMessage,
    ProviderRequest,
    TextDelta,
    ToolCallComplete,
    ToolCallDelta,
    UsageReport,
    collect,
)
from app.providers.mock import MockProvider, split_tokens, turn_number
from app.providers.scenarios import load_scenarios, parse_scenarios
from tests.unit.providers.wire import SHARED_MOCK_RESPONSES, run

A2A_DEMO = SHARED_MOCK_RESPONSES / "server__a2a__examples__a2a-demo__arena__mock-responses.yaml"
A2A_AUTH = (
    SHARED_MOCK_RESPONSES / "server__a2a__examples__a2a-auth-test__arena__mock-responses.yaml"
)


def user(text: str) -> ProviderMessage:
    return ProviderMessage(role="user", content=text)


def assistant(text: str = "", calls: list[ToolCall] | None = None) -> ProviderMessage:
    return ProviderMessage(role="assistant", content=text, tool_calls=calls or [])


def tool(call_id: str, text: str) -> ProviderMessage:
    return ProviderMessage(role="tool", content=text, tool_call_id=call_id)


def req(*messages: ProviderMessage, system: str | None = None, **metadata: str) -> ProviderRequest:
    return ProviderRequest(
        model="mock-echo", system=system, messages=list(messages), metadata=metadata
    )


class FakeSleep:
    """Records each sleep; `now` (the mock's clock) advances by it, plus `late` (a busy
    event loop waking the sleeper late)."""

    def __init__(self, late: float = 0.0) -> None:
        self.calls: list[float] = []
        self.late = late
        self.time = 100.0

    def now(self) -> float:
        return self.time

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.time += seconds + self.late


# --- echo ---------------------------------------------------------------------------------


async def test_echo_streams_words_and_reports_usage() -> None:
    r = req(user("earlier"), assistant("echo: earlier"), user("hello  there\nworld"), system="sys")
    events = await run(MockProvider(), r)
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert deltas == ["echo: ", "hello  ", "there\n", "world"]
    reply = "echo: hello  there\nworld"
    expected_in = sum(
        estimate_tokens(t) for t in ["sys", "earlier", "echo: earlier", "hello  there\nworld"]
    )
    assert events[len(deltas) :] == [
        UsageReport(Usage.of(expected_in, estimate_tokens(reply))),
        Finish("stop"),
    ]


async def test_echo_uses_text_parts_when_content_is_empty() -> None:
    msg = ProviderMessage(role="user", parts=[Part(type="text", text="from parts")])
    assert (await collect(MockProvider().stream(req(msg)))).text == "echo: from parts"


@pytest.mark.parametrize("text", ["", " lead", "trail ", "a\tb\n\nc", "  ", "one"])
def test_split_tokens_round_trips(text: str) -> None:
    assert "".join(split_tokens(text)) == text
    assert all(t for t in split_tokens(text))


async def test_delay_is_applied_between_tokens() -> None:
    sleep = FakeSleep()
    events = await run(
        MockProvider(delay_ms=25, sleep=sleep, clock=sleep.now), req(user("a b c d"))
    )
    n_deltas = sum(isinstance(e, TextDelta) for e in events)
    assert n_deltas == 5
    assert sleep.calls == pytest.approx([0.025] * (n_deltas - 1))


async def test_delay_paces_tokens_from_the_first_so_late_wake_ups_do_not_add_up() -> None:
    """Delta n is due n x delay after the first: a sleep that wakes 5 ms late shortens the
    next one, and the last delta is due at 4 x 25 ms, not 4 x 30 ms (a wake-up later than
    a whole gap does not sleep at all)."""
    sleep = FakeSleep(late=0.005)
    await run(MockProvider(delay_ms=25, sleep=sleep, clock=sleep.now), req(user("a b c d")))
    assert sleep.calls == pytest.approx([0.025, 0.020, 0.020, 0.020])
    assert sleep.time == pytest.approx(100.0 + 4 * 0.025 + 0.005)

    sleep = FakeSleep(late=0.030)
    await run(MockProvider(delay_ms=25, sleep=sleep, clock=sleep.now), req(user("a b c d")))
    assert sleep.calls == pytest.approx([0.025, 0.0, 0.0, 0.0])


async def test_real_delay_is_measurable_and_zero_delay_never_sleeps() -> None:
    start = time.monotonic()
    await run(MockProvider(delay_ms=20), req(user("a b c d")))  # 5 deltas -> 4 sleeps
    assert time.monotonic() - start >= 0.075

    sleep = FakeSleep()
    await run(MockProvider(delay_ms=0, sleep=sleep), req(user("a b c d")))
    assert sleep.calls == []


# --- scenarios: the two real PromptKit files ------------------------------------------------


async def test_a2a_demo_tool_call_then_summary() -> None:
    mock = MockProvider(scenarios=load_scenarios(A2A_DEMO))
    first = req(user("find quantum papers"), mock_scenario="delegated-research")
    events = await run(mock, first)
    call = ToolCall(
        id="call_1",
        name="a2a__research_agent__search_papers",
        arguments={"query": "Search for papers about quantum computing"},
    )
    assert events[:3] == [
        ToolCallDelta(0, id="call_1", name="a2a__research_agent__search_papers"),
        ToolCallDelta(0, arguments_delta='{"query": "Search for papers about quantum computing"}'),
        ToolCallComplete(0, call),
    ]
    assert isinstance(events[3], UsageReport) and events[4] == Finish("tool_calls")

    second = req(
        user("find quantum papers"),
        assistant(calls=[call]),
        tool("call_1", '{"papers": 3}'),
        mock_scenario="delegated-research",
    )
    result = await collect(mock.stream(second))
    assert result.text.startswith("Based on the research results, I found 3 papers")
    assert result.text.endswith("3. Practical Quantum Algorithms for Optimization (2023)")
    assert result.tool_calls == [] and result.finish_reason == "stop"


async def test_a2a_auth_test_text_and_tool_call_then_default_response() -> None:
    mock = MockProvider(scenarios=load_scenarios(A2A_AUTH))
    first = await collect(mock.stream(req(user("hi"), mock_scenario="echo-test")))
    assert first.text == "I'll echo your message using the echo agent."
    assert first.tool_calls == [
        ToolCall(
            id="call_1", name="a2a__echo_agent__echo", arguments={"query": "Hello from PromptKit!"}
        )
    ]
    assert first.finish_reason == "tool_calls"

    second = req(
        user("hi"),
        assistant(first.text, first.tool_calls),
        tool("call_1", "Hello from PromptKit!"),
        mock_scenario="echo-test",
    )
    result = await collect(mock.stream(second))
    assert result.text == "I can help you by delegating to the echo agent."  # defaultResponse
    assert result.finish_reason == "stop"


async def test_file_default_response_applies_without_a_scenario() -> None:
    mock = MockProvider(scenarios=load_scenarios(A2A_AUTH))
    result = await collect(mock.stream(req(user("hello"))))
    assert result.text == "I can help you by delegating to the echo agent."


async def test_multi_turn_chat_numbering() -> None:
    scenarios = parse_scenarios(
        {"scenarios": {"chat": {"turns": {1: "first", 2: {"response": "second"}, "3": "third"}}}}
    )
    mock = MockProvider(scenarios=scenarios)
    history: list[ProviderMessage] = []
    replies = []
    for i in range(4):
        history.append(user(f"q{i}"))
        text = (await collect(mock.stream(req(*history, mock_scenario="chat")))).text
        replies.append(text)
        history.append(assistant(text))
    assert replies == ["first", "second", "third", "echo: q3"]  # turn 4 unscripted -> echo


def test_turn_number_rule() -> None:
    assert turn_number(req(user("a"))) == 1
    assert turn_number(req(user("a"), assistant(calls=[]), tool("c", "r"))) == 2
    assert turn_number(req(user("a"), assistant("x"), user("b"))) == 2
    assert (
        turn_number(req(user("a"), assistant("x"), user("b"), assistant("y"), tool("c", "r"))) == 3
    )


async def test_unknown_scenario_falls_back_to_echo_and_scenario_default() -> None:
    scenarios = parse_scenarios(
        {"scenarios": {"s": {"defaultResponse": "scenario default", "turns": {2: "two"}}}}
    )
    mock = MockProvider(scenarios=scenarios)
    assert (await collect(mock.stream(req(user("x"), mock_scenario="s")))).text == (
        "scenario default"
    )
    assert (await collect(mock.stream(req(user("x"), mock_scenario="nope")))).text == "echo: x"


async def test_tool_call_ids_continue_after_calls_in_history() -> None:
    scenarios = parse_scenarios(
        {"scenarios": {"s": {"turns": {2: {"tool_calls": [{"name": "a"}, {"name": "b"}]}}}}}
    )
    prior = ToolCall(id="call_1", name="a", arguments={})
    r = req(user("x"), assistant(calls=[prior]), tool("call_1", "ok"), mock_scenario="s")
    result = await collect(MockProvider(scenarios=scenarios).stream(r))
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [
        ("call_2", "a", {}),
        ("call_3", "b", {}),
    ]


# --- failure injection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "exc", "retryable"),
    [
        ("error", ProviderError, False),
        ("rate_limit", ProviderRateLimited, True),
        ("timeout", ProviderTimeout, True),
    ],
)
async def test_fail_before_any_event(mode: str, exc: type[ProviderError], retryable: bool) -> None:
    seen = []
    with pytest.raises(exc) as info:
        async for ev in MockProvider().stream(req(user("a b c"), mock_fail=mode)):
            seen.append(ev)
    assert seen == [] and type(info.value) is exc and info.value.retryable is retryable


async def test_fail_midstream_after_two_deltas() -> None:
    seen = []
    with pytest.raises(ProviderError) as info:
        async for ev in MockProvider().stream(
            req(user("one two three four"), mock_fail="midstream")
        ):
            seen.append(ev)
    assert seen == [TextDelta("echo: "), TextDelta("one ")]
    assert type(info.value) is ProviderError and info.value.retryable is False


async def test_unknown_fail_mode_is_an_error() -> None:
    with pytest.raises(ProviderError, match="unknown mock_fail"):
        await run(MockProvider(), req(user("x"), mock_fail="explode"))


# --- scenario file validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("scenarios: [1, 2", "not valid YAML"),
        ("- a\n- b\n", "mapping at the top level"),
        (
            "scenarios:\n  s:\n    turns:\n      1:\n        tool_calls:\n"
            "          - {arguments: {}}\n",
            "scenarios.s.turns.1.tool_calls.0.name",
        ),
        ("scenarios:\n  s:\n    turns:\n      one: hi\n", "scenarios.s.turns"),
        ("defaultResponse: [1]\n", "defaultResponse"),
    ],
)
def test_bad_scenario_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"bad\.yaml") as info:
        load_scenarios(path)
    assert message in str(info.value)


def test_missing_scenario_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read mock scenario file"):
        load_scenarios(tmp_path / "absent.yaml")


def test_empty_file_is_no_scenarios(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_scenarios(path).scenarios == {}


# --- summaries and recall -------------------------------------------------------------


async def test_a_summarization_request_keeps_each_fact_line_once() -> None:
    content = (
        "Previous summary:\nuser: Fact: A is 1.\n\n"
        "Conversation:\nuser: hi\nuser: Fact: A is 1.\nassistant: FACT B"
    )
    result = await collect(MockProvider().stream(req(user(content), task="summarize")))
    assert result.text == "user: Fact: A is 1.\nassistant: FACT B"
    nothing = await collect(MockProvider().stream(req(user("user: hi"), task="summarize")))
    assert nothing.text == "(no facts)"


async def test_summary_failure_mode_is_its_own() -> None:
    with pytest.raises(ProviderError):
        await collect(
            MockProvider().stream(req(user("x"), task="summarize", mock_summary_fail="error"))
        )
    plain = await collect(MockProvider().stream(req(user("x"), mock_summary_fail="error")))
    assert plain.text == "echo: x"


async def test_recall_answers_a_question_from_the_context_only() -> None:
    r = req(
        user("Fact: my locker code is 4417."),
        assistant("echo: noted"),
        user("the weather is mild"),
        user("What is my locker code?"),
        system="You are helpful.",
        mock_recall="1",
    )
    assert (await collect(MockProvider().stream(r))).text == "recall: Fact: my locker code is 4417."
    unknown = req(user("weather"), user("Where is the boat?"), mock_recall="1")
    assert (await collect(MockProvider().stream(unknown))).text == "recall: nothing"
    statement = req(user("Fact: x"), user("no question here"), mock_recall="1")
    assert (await collect(MockProvider().stream(statement))).text == "echo: no question here"


def test_input_tokens_sum_the_estimate_of_every_text() -> None:
    """The mock's input usage (summed in C) equals `estimate_tokens` of the system prompt
    and of each message's text, wherever the text is (content or text parts)."""
    from app.providers.mock import input_tokens, message_text

    messages = [
        user("héllo wörld, ünïcode"),
        assistant(""),
        ProviderMessage(role="user", parts=[Part(type="text", text="from parts only")]),
        ProviderMessage(role="tool", content="x", tool_call_id="c1"),
        ProviderMessage(role="assistant", parts=[]),
        user("a" * 4001),
    ]
    for system in (None, "", "sys prompt"):
        r = req(*messages, system=system)
        expected = estimate_tokens(r.system or "") + sum(
            estimate_tokens(message_text(m)) for m in r.messages
        )
        assert input_tokens(r) == expected
