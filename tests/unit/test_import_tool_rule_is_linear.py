"""The import's tool-message rule (`app.manager.import_tool_rule`) made a set of the
anchor's call ids for every tool message: quadratic in a document's chain. Tool calls do
not count toward PARLEY_MAX_MESSAGE_BYTES, so one 64 MiB document can carry an assistant
message with hundreds of thousands of calls and as many answers; 20,000 of each took 66 s
of worker-thread CPU (measured under load), now 0.07 s. The walk for calls answered twice
is depth first without recursion (a chain as deep as the document)."""

import time
from datetime import UTC, datetime

from app.domain import Message, Role, ToolCall
from app.manager.import_tool_rule import unanswering_tool_messages

N = 5_000
NOW = datetime.now(UTC)


def _message(id: str, parent: str | None, role: Role, **fields: object) -> Message:
    return Message.model_validate(
        {"id": id, "parent_id": parent, "conversation_id": "c", "role": role, "created_at": NOW}
        | fields
    )


def _chain(answers: list[str]) -> list[Message]:
    calls = [ToolCall(id=f"c{i}", name="f", arguments={}) for i in range(N)]
    messages = [
        _message("u", None, Role.user, content="x"),
        _message("a", "u", Role.assistant, tool_calls=calls),
    ]
    parent = "a"
    for i, call_id in enumerate(answers):
        messages.append(_message(f"t{i}", parent, Role.tool, tool_call_id=call_id, content="r"))
        parent = f"t{i}"
    return messages


def test_a_long_chain_of_answers_is_checked_in_linear_time() -> None:
    messages = _chain([f"c{i}" for i in range(N)])
    start = time.perf_counter()
    assert unanswering_tool_messages(messages) == []
    # linear: ~20 ms here; the set per tool message took ~2 s at this size
    assert time.perf_counter() - start < 0.5


def test_a_long_chain_answering_one_call_is_refused_from_its_second_answer() -> None:
    messages = _chain(["c0"] * N)
    start = time.perf_counter()
    found = unanswering_tool_messages(messages)
    assert time.perf_counter() - start < 0.5
    assert [at for at, _ in found] == list(range(3, N + 2))
    assert all("already answered" in why for _, why in found)
