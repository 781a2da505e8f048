from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.providers.sse_lines import SSEDecoder, SSEEvent
from tests.unit.providers.wire import crlf, fixture_bytes, split_at


def decode(chunks: list[bytes]) -> list[SSEEvent]:
    dec = SSEDecoder()
    out: list[SSEEvent] = []
    for c in chunks:
        out.extend(dec.feed(c))
    out.extend(dec.flush())
    return out


def test_basic_fields_comments_and_multiline_data() -> None:
    raw = b": keep-alive\nevent: greet\nid: 7\ndata: hello\ndata:world\nretry: 10\n\ndata: x\n\n"
    assert decode([raw]) == [
        SSEEvent("greet", "hello\nworld", "7"),
        SSEEvent("message", "x", "7"),  # the last event id persists
    ]


def test_only_one_leading_space_is_stripped_and_field_without_colon() -> None:
    assert decode([b"data:  two\ndata\n\n"]) == [SSEEvent("message", " two\n")]


def test_blank_line_without_data_dispatches_nothing() -> None:
    assert decode([b"event: ping\n\n\n\ndata: a\n\n"]) == [SSEEvent("message", "a")]


def test_cr_only_and_crlf_line_endings() -> None:
    assert decode([b"data: a\r\rdata: b\r\n\r\n"]) == [
        SSEEvent("message", "a"),
        SSEEvent("message", "b"),
    ]


def test_cr_at_chunk_end_waits_for_possible_lf() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: a\r\n\r") == []  # the last CR may be half of a CRLF
    assert dec.feed(b"\n") == [SSEEvent("message", "a")]


def test_utf8_split_across_chunks_and_bom() -> None:
    raw = "\ufeffdata: à ☀️\n\n".encode()
    at = raw.find("☀".encode()) + 1
    assert decode([raw[:at], raw[at:]]) == [SSEEvent("message", "à ☀️")]


def test_flush_dispatches_unterminated_last_event() -> None:
    assert decode([b"data: [DONE]"]) == [SSEEvent("message", "[DONE]")]


def test_events_are_returned_as_soon_as_complete() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: one\n") == []
    assert dec.feed(b"\ndata: tw") == [SSEEvent("message", "one")]
    assert dec.feed(b"o\n\n") == [SSEEvent("message", "two")]


@settings(max_examples=150, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=5000), max_size=40),
    use_crlf=st.booleans(),
    fixture=st.sampled_from(
        ["openai_text.txt", "openai_parallel_tool_calls.txt", "anthropic_tool_use.txt"]
    ),
)
def test_any_chunking_yields_the_same_events(cuts: list[int], use_crlf: bool, fixture: str) -> None:
    raw = fixture_bytes(fixture)
    if use_crlf:
        raw = crlf(raw)
    whole = decode([raw])
    assert len(whole) > 5
    assert decode(split_at(raw, cuts)) == whole
