"""`app.manager.provider_text`: provider text and tool calls made storable (review R10)."""

from __future__ import annotations

from app.domain import ToolCall
from app.manager.provider_text import StreamedText, storable_tool_call


def _stream(*deltas: str) -> list[str]:
    cleaner = StreamedText()
    out = [cleaner.feed(d) for d in deltas]
    return [*out, cleaner.flush()]


def test_clean_text_passes_through_unchanged() -> None:
    text = "héllo 😀 wörld"
    assert _stream(text, " more") == [text, " more", ""]


def test_a_pair_split_across_deltas_is_joined() -> None:
    assert "".join(_stream("smile \ud83d", "\ude00 ok")) == "smile 😀 ok"
    assert _stream("smile \ud83d", "\ude00 ok")[0] == "smile "  # the high half waits


def test_lone_halves_and_nul_become_the_replacement_character() -> None:
    assert "".join(_stream("a\ude00b", "c\x00d")) == "a\ufffdbc\ufffdd"
    assert "".join(_stream("a\ud83d", "b")) == "a\ufffdb"  # a high half not followed by a low
    assert "".join(_stream("end \ud83d")) == "end \ufffd"  # held at the end: flushed


def test_every_output_encodes_as_utf8() -> None:
    for piece in _stream("\ud83d", "\ud83d", "\ude00", "\x00", "\udbff"):
        piece.encode("utf-8")


def test_tool_calls_are_copied_only_when_needed() -> None:
    fine = ToolCall(id="call_1", name="lookup", arguments={"q": "😀", "n": [1, "x"]})
    assert storable_tool_call(fine) is fine
    bad = ToolCall(id="call_\x00", name="look\ud83dup", arguments={"q\ude00": ["a\x00"]})
    clean = storable_tool_call(bad)
    assert (clean.id, clean.name, clean.arguments) == (
        "call_\ufffd",
        "look\ufffdup",
        {"q\ufffd": ["a\ufffd"]},
    )
