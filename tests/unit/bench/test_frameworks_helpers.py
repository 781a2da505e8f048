"""The framework benchmark's pieces (bench/): the mock upstream and the load generator
against each other on loopback, SSE parsing, tier summaries, and the other benchmark
helpers added with it (SQL statement shapes, stream breakdown, figures, profile summary,
process trees)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench import plot
from bench.counting_app import sql_shape
from bench.frameworks import summarize_tier
from bench.loadgen import DIALECTS, Connection, RequestRecord, SseParser, stream_request
from bench.mock_upstream import PROFILES, Counters, Profile, handle_connection, stream_events
from bench.profile_turns import library_of, profile_summary
from bench.servers import process_tree, tree_rss_bytes
from bench.streaming_breakdown import breakdown
from bench.streaming_client import StreamRecord

TINY = Profile("tiny", chunks=3, first_chunk_delay_s=0.02, inter_chunk_delay_s=0.01)
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def test_profiles_are_promptkits() -> None:
    fast, realistic = PROFILES["fast"], PROFILES["realistic"]
    assert (fast.chunks, fast.first_chunk_delay_s, fast.inter_chunk_delay_s) == (10, 0.01, 0.01)
    assert (realistic.chunks, realistic.first_chunk_delay_s) == (30, 0.2)
    assert realistic.inter_chunk_delay_s == 0.03
    assert fast.ideal_stream_s() == pytest.approx(0.1)
    assert fast.reply_text() == "".join(f"chunk-{i} " for i in range(1, 11))


def test_stream_events_are_openai_chunks_then_stop_then_done() -> None:
    events = stream_events(TINY, "gpt-x")
    assert len(events) == TINY.chunks + 2 and events[-1] == b"data: [DONE]\n\n"
    docs = [json.loads(e.removeprefix(b"data: ")) for e in events[:-1]]
    assert all(d["object"] == "chat.completion.chunk" and d["model"] == "gpt-x" for d in docs)
    text = "".join(d["choices"][0]["delta"].get("content", "") for d in docs)
    assert text == TINY.reply_text() and docs[-1]["choices"][0]["finish_reason"] == "stop"


def test_sse_parser_handles_split_feeds_and_crlf() -> None:
    parser = SseParser()
    assert parser.feed(b'event: message.delta\r\ndata: {"delta"') == []
    events = parser.feed(b': "a"}\r\n\r\n: ping\n\ndata: [DONE]\n\n')
    assert [(e.event, e.data) for e in events] == [
        ("message.delta", '{"delta": "a"}'),
        ("message", "[DONE]"),
    ]


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, int, Counters]]:
    counters = Counters()
    server = await asyncio.start_server(
        lambda r, w: handle_connection(r, w, TINY, counters), "127.0.0.1", 0
    )
    host, port = server.sockets[0].getsockname()[:2]
    async with server:
        yield host, port, counters
        server.close()


async def test_load_generator_streams_from_the_mock_upstream(
    upstream: tuple[str, int, Counters],
) -> None:
    host, port, counters = upstream
    conn = Connection(host, port)
    try:
        path = "/v1/chat/completions"
        want = TINY.reply_text()
        first = await stream_request(conn, path, BODY, DIALECTS["openai"], want, "one")
        again = await stream_request(conn, path, BODY, DIALECTS["openai"], want, "one")
        wrong = await stream_request(conn, path, BODY, DIALECTS["openai"], "other", "one")
        plain = await conn.request("POST", path, {**BODY, "stream": False})
        missing = await conn.request("GET", "/nope")
    finally:
        conn.close()
    assert first.ok and again.ok and first.chunks == TINY.chunks, (first, again)
    assert first.ttfb_ms is not None and first.ttfb_ms >= 15  # the first-chunk delay
    assert first.total_ms is not None and first.total_ms >= 30  # + two 10 ms gaps
    assert not wrong.ok and "unexpected reply" in (wrong.error or "")
    assert plain.status == 200
    assert json.loads(plain.body)["choices"][0]["message"]["content"] == TINY.reply_text()
    assert missing.status == 404
    assert counters.streams == 3 and counters.requests == 5  # all on one keep-alive connection


async def test_a_refused_connection_is_an_error_record() -> None:
    conn = Connection("127.0.0.1", 1)  # nothing listens on port 1
    rec = await stream_request(conn, "/x", BODY, DIALECTS["openai"], "", "one")
    assert not rec.ok and rec.error


def test_parley_dialect_reads_deltas_and_failures() -> None:
    from bench.loadgen import SseEvent

    d = DIALECTS["parley"]
    assert d.text(SseEvent("message.delta", '{"delta": "x"}')) == "x"
    assert d.text(SseEvent("run.created", "{}")) is None
    assert d.failed(SseEvent("run.failed", "{}")) == "run.failed"
    assert d.failed(SseEvent("run.completed", "{}")) is None


def test_tier_summary() -> None:
    recs = [RequestRecord("new", True, 10.0, 50.0, 3), RequestRecord("continue", True, 20.0, 60.0)]
    recs.append(RequestRecord("new", False, error="timeout"))
    s = summarize_tier(10, recs, 2.0, 100 * 2**20, 1.0, 0.5, 0.25)
    assert s["requests"] == 3 and s["ok"] == 2 and s["errors"] == 1
    assert s["req_per_s"] == 1.0 and s["peak_rss_mb"] == 100.0
    assert s["server_cpu_pct"] == 50.0 and s["req_per_s_per_server_core"] == 2.0
    assert s["upstream_cpu_pct"] == 25.0 and s["loadgen_cpu_pct"] == 12.5
    assert s["ttfb_p50_ms_by_kind"] == {"continue": 20.0, "new": 10.0}
    assert s["error_samples"] == ["timeout"]


def test_sql_statement_shapes() -> None:
    assert sql_shape("SELECT a, b FROM conversations WHERE id = ?") == "SELECT conversations"
    assert sql_shape('UPDATE "conversations" SET v = 2') == "UPDATE conversations"
    assert sql_shape("INSERT INTO messages (id) VALUES (?)") == "INSERT messages"
    assert sql_shape("BEGIN IMMEDIATE") == "BEGIN" and sql_shape("") == ""


MS = 1_000_000


def test_stream_breakdown_spans_add_up() -> None:
    rec = StreamRecord(content="m", sent=0, deltas=[(40 * MS, "a "), (62 * MS, "b")])
    rec.done, rec.terminal = 100 * MS, "run.completed"
    stages = {
        "m": {
            "accept": 5 * MS,
            "execute": 10 * MS,
            "finish": 90 * MS,
            "publish": [["message.delta", 31 * MS, 32 * MS], ["message.delta", 51 * MS, 52 * MS]],
            "frames": [
                ["run.created", 11 * MS],
                ["message.delta", 35 * MS],
                ["message.delta", 55 * MS],
            ],
        }
    }
    out = breakdown([rec], {"m": [30 * MS, 50 * MS]}, stages, delay_ms=20)
    spans = out["stream_mean_ms"]
    assert list(spans.values()) == [5, 5, 20, 20, 40, 10]
    assert sum(spans.values()) == out["stream_mean_total_ms"] == 100
    assert out["timer_lateness_ms"]["mean_ms"] == 0
    tok = out["token_ms"]
    assert tok["emit -> publish start"]["mean_ms"] == 1 and tok["publish"]["mean_ms"] == 1
    assert tok["publish end -> SSE frame"]["mean_ms"] == 3
    assert tok["SSE frame -> client event"]["max_ms"] == 7
    assert breakdown([rec], {}, stages, 20)["streams_skipped"] == 1


def test_profile_summary_attributes_self_and_inclusive_time(tmp_path: Path) -> None:
    raw = tmp_path / "p.raw"
    raw.write_text(
        "run (asyncio/runners.py:1);turn (app/manager/turns.py:5);"
        "execute (/x/site-packages/sqlalchemy/engine/base.py:9) 3\n"
        "run (asyncio/runners.py:1);turn (app/manager/turns.py:6) 1\n"
    )
    s = profile_summary(raw, turns=2)
    assert s["samples"] == 4
    assert dict(s["self_by_library_pct"]) == {"sqlalchemy": 75.0, "app": 25.0}
    assert dict(s["inclusive_by_library_pct"])["app"] == 100.0
    assert dict(s["app_inclusive_functions_pct"]) == {"turn (app/manager/turns.py)": 100.0}
    assert library_of("x (/v/site-packages/pydantic_core/core.py)") == "pydantic"
    buckets = dict(s["buckets_inclusive_pct"])
    assert buckets["SQLAlchemy engine/result/pool"] == 75.0
    assert buckets["SQLAlchemy greenlet bridge (self)"] == 0.0


def test_process_tree_and_rss_of_this_process() -> None:
    assert process_tree(os.getpid())[0] == os.getpid()
    assert (tree_rss_bytes(os.getpid()) or 0) > 1 << 20


def _turns_results() -> dict[str, object]:
    sizes = {"10": {"p50_ms": 9.0}, "1000": {"p50_ms": 9.5}}
    return {
        "benchmark": "turns",
        "machine": {"date_utc": "d", "git_commit": "abcdef0", "cpu_count": 2},
        "parley": {"sqlite": {"status": "ok", "sizes": sizes}, "pg": {"status": "skipped"}},
        "langgraph": {
            "status": "ok",
            "sizes": {"10": {"p50_ms": 8.0}, "1000": {"p50_ms": 35.0}},
            "http": {"sizes": {"10": {"p50_ms": 11.0}, "1000": {"p50_ms": 40.0}}},
        },
    }


def test_figure_series_come_from_the_results() -> None:
    series = plot.turns_series(_turns_results())
    assert series["Parley sqlite (HTTP)"] == [(10, 9.0), (1000, 9.5)]
    assert series["LangGraph behind FastAPI (HTTP)"] == [(10, 11.0), (1000, 40.0)]
    assert "Parley pg (HTTP)" not in series
    profile = {"targets": {"t": {"status": "ok", "tiers": {"50": {"req_per_s": 5.0}}}}}
    assert plot.frameworks_series(profile, "req_per_s") == {"t": [(50, 5.0)]}


def test_figures_are_written_as_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is in the `bench` extra")
    path = tmp_path / "turns.json"
    path.write_text(json.dumps(_turns_results()))
    out = plot.plot_file(path)
    assert out == tmp_path / "turns.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_a_failed_request_of_the_concurrent_phase_is_counted_not_fatal() -> None:
    from bench.servers import Server
    from bench.turns_timing import concurrent_throughput

    calls = 0

    async def request(item: str) -> float:
        nonlocal calls
        calls += 1
        if item == "bad" and calls % 2:
            raise RuntimeError("turn failed: 500")
        return 1.0

    out = await concurrent_throughput(Server("http://x", os.getpid()), ["ok", "bad"], 3, request)
    assert out["requests"] + out["errors"] == 6 and out["errors"] >= 1
    assert out["error_samples"] == ["RuntimeError: turn failed: 500"]
    assert out["p50_ms"] == 1.0
