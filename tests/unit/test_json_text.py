"""`app.json_text`: the JSON every turn writes (events, response body) reads back as what
`json.dumps` wrote, for the values run events and responses hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from app.domain import Message, Role, Usage
from app.json_text import json_bytes, json_str, loads_strict
from app.manager.events import dump

SAMPLES = [
    {"message_id": "01ABC", "delta": 'héllo \u2028 wörld \x01 "quoted" \\ 😀'},
    {"usage": {"input_tokens": 12, "output_tokens": 3}, "cost_usd": 1.5e-05, "x": None},
    {"floats": [0.1, 3.0, 1e16, 123456789.123, -0.0], "flags": [True, False], "n": 2**62},
    {"nested": [{"a": []}, {}], "empty": ""},
]


def test_same_values_as_json_dumps() -> None:
    for data in SAMPLES:
        assert json.loads(json_bytes(data)) == json.loads(json.dumps(data)) == data
        assert json_str(data) == json_bytes(data).decode()


def test_compact_and_utf8() -> None:
    assert json_bytes({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()


def test_a_dumped_message_reads_back() -> None:
    message = Message(
        id="01M",
        parent_id=None,
        conversation_id="c",
        role=Role.assistant,
        content="echo: ça",
        created_at=datetime(2026, 12, 7, tzinfo=UTC),
        usage=Usage(input_tokens=5, output_tokens=2),
        cost_usd=2.5e-06,
        depth=1,
    )
    data = {"message": dump(message)}
    assert json.loads(json_bytes(data)) == data
    assert Message.model_validate(json.loads(json_str(data))["message"]) == message


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', "1e999", "[-1e400]"])
def test_loads_strict_refuses_what_is_no_json_number(text: str) -> None:
    with pytest.raises(ValueError):
        loads_strict(text)


def test_loads_strict_parses_standard_json() -> None:
    assert loads_strict(b'{"a": [1, 2.5, -0.0, 1e300, "NaN", null]}') == {
        "a": [1, 2.5, -0.0, 1e300, "NaN", None]
    }
