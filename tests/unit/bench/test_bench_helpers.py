"""Smoke tests of the benchmark helpers (bench/): statistics, tables, history building, and
tiny runs of both benchmarks against a real uvicorn."""

from __future__ import annotations

import random
from itertools import pairwise
from pathlib import Path

import pytest

from app.domain import Conversation, Role, utcnow
from bench import streaming, turns, turns_parley, turns_report, turns_timing
from bench.common import random_text
from bench.report import update_readme
from bench.servers import parley_env
from bench.stats import fmt, format_table, percentile, ratio, summarize_ms
from bench.stores import STORES, provisioned_store
from bench.streaming_client import StreamRecord
from bench.streaming_summary import (
    lags_by_window,
    round_spans_ms,
    summarize_phase,
    token_arrivals,
)


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1 and percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([3, 1, 2], 50) == 2  # order does not matter
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_summary_and_ratio() -> None:
    s = summarize_ms([1.0, 2.0, 3.0, 4.0])
    assert s == {
        "n": 4,
        "p50_ms": 2.5,
        "p99_ms": 3.97,
        "mean_ms": 2.5,
        "min_ms": 1.0,
        "max_ms": 4.0,
    }
    assert ratio(13, 10) == 1.3 and ratio(None, 1) is None and ratio(1, 0) is None


def test_table_aligns_columns() -> None:
    table = format_table(["store", "p50 ms"], [["sqlite", fmt(8.123, 2)], ["pg", fmt(None)]], "T")
    assert table.splitlines() == [
        "T",
        "store   p50 ms",
        "------  ------",
        "sqlite    8.12",
        "pg           -",
    ]
    assert fmt(10_000) == "10,000" and fmt(1.25, 1, "x") == "1.2x" and fmt(True) == "yes"
    with pytest.raises(ValueError):
        format_table(["a", "b"], [["only one"]])


def test_readme_table_is_replaced_between_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- t:begin -->\nold\n<!-- t:end -->\nafter\n")
    assert update_readme("t", "new table\n", readme)
    assert readme.read_text() == (
        "intro\n<!-- t:begin -->\n```text\nnew table\n```\n<!-- t:end -->\nafter\n"
    )
    assert not update_readme("missing", "x", readme)
    assert not update_readme("t", "x", tmp_path / "absent.md")


def test_random_text_is_realistic_and_reproducible() -> None:
    texts = [random_text(random.Random(3)) for _ in range(2)]
    assert texts[0] == texts[1]
    rng = random.Random(1)
    counts = [len(random_text(rng).split()) for _ in range(200)]
    assert min(counts) >= 10 and max(counts) <= 40


def test_timed_turns_keep_history_within_five_percent() -> None:
    assert turns_timing.turns_per_conversation(10) == 1
    assert turns_timing.turns_per_conversation(10_000) == 250
    for size in (10, 1000, 5000, 10_000):
        assert 2 * turns_timing.turns_per_conversation(size) <= max(2, 0.05 * size)
    assert turns_timing.conversations_needed(10, 200) == 200
    assert turns_timing.conversations_needed(1000, 200) == 8


async def test_slots_prime_each_conversation_right_before_its_first_timed_turn() -> None:
    slots = turns_timing.Slots(1000, ["a", "b"], per_id=2)
    log: list[str] = []

    async def prime(conv_id: str) -> None:
        log.append(f"prime {conv_id}")

    for _ in range(4):
        log.append(await slots.next_primed(prime))
    assert log == ["prime a", "a", "a", "prime b", "b", "b"]


def test_history_is_a_chain_of_echo_turns() -> None:
    now = utcnow()
    conv = Conversation(
        id="c1",
        user_id="u",
        pack_id="p",
        pack_version="1.0.0",
        prompt_name="chat",
        provider="mock",
        model="mock-echo",
        created_at=now,
        updated_at=now,
        lineage_id="c1",
    )
    msgs = turns_parley.history_messages(conv, 6, random.Random(0))
    assert [m.role for m in msgs] == [Role.user, Role.assistant] * 3
    assert [m.depth for m in msgs] == list(range(6))
    assert msgs[0].parent_id is None
    assert all(b.parent_id == a.id for a, b in pairwise(msgs))
    for user, reply in zip(msgs[::2], msgs[1::2], strict=True):
        assert reply.content == f"echo: {user.content}" and reply.run_id == user.run_id
        assert user.parts[0].text == user.content and reply.finish_reason == "stop"
    with pytest.raises(ValueError):
        turns_parley.history_messages(conv, 3, random.Random(0))


def test_child_env_is_only_what_the_benchmark_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real")
    monkeypatch.setenv("PARLEY_AUTH", "keys")
    env = parley_env("sqlite+aiosqlite:///x.db", Path("/tmp/w"))
    assert "OPENAI_API_KEY" not in env and "PARLEY_AUTH" not in env
    assert env["PARLEY_STATE_URL"] == "sqlite+aiosqlite:///x.db"
    assert env["PARLEY_MAX_CONCURRENT_EXECUTIONS"] == "0"


def test_in_process_settings_are_the_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_DEFAULT_MAX_INPUT_TOKENS", "100")  # the bench's own env
    env = parley_env("sqlite+aiosqlite:///x.db", Path("/tmp/w"), PARLEY_MOCK_DELAY_MS="5")
    settings = turns_parley.settings_from_env(env)
    assert settings.default_max_input_tokens == 8000  # the server does not see it either
    assert settings.mock_delay_ms == 5.0 and settings.max_concurrent_executions == 0
    assert settings.state_url == "sqlite+aiosqlite:///x.db"


MS = 1_000_000  # monotonic ns per ms


def _record(content: str, events: list[tuple[int, str]]) -> StreamRecord:
    rec = StreamRecord(content=content, sent=0, created=10 * MS, deltas=events, done=100 * MS)
    rec.terminal = "run.completed"
    return rec


def test_tokens_are_counted_from_the_text_not_from_events() -> None:
    one_per_token = _record("a b", [(20 * MS, "echo: "), (30 * MS, "a "), (40 * MS, "b")])
    coalesced = _record("a b", [(20 * MS, "echo: "), (50 * MS, "a b")])
    assert token_arrivals(one_per_token) == [20 * MS, 30 * MS, 40 * MS]
    assert token_arrivals(coalesced) == [20 * MS, 50 * MS, 50 * MS]  # with its event
    assert token_arrivals(_record("", [])) == []
    emissions = {"a b": [15 * MS, 25 * MS, 35 * MS]}
    phase = summarize_phase(2, 1, [one_per_token, coalesced], emissions, 1.0, {}, 0.0)
    assert phase["tokens_received"] == 6 and phase["tokens_per_stream"] == 3
    assert phase["delta_events_received"] == 5 and phase["delta_events_per_stream"] == 2.5
    assert phase["multi_token_events"] == 1 and phase["tokens_per_s"] == 6.0
    lag = phase["token_to_client"]
    assert lag["n"] == 6 and phase["token_to_client_unmatched_streams"] == 0
    assert lag["min_ms"] == 5 and lag["max_ms"] == 25  # "a " left at 25, arrived at 50
    delayed = summarize_phase(1, 1, [one_per_token], {}, 1.0, {}, 10.0)
    # receive(token i) - (created + i x delay): 20 - 10, 30 - 20, 40 - 30
    assert delayed["token_to_client_estimate"]["max_ms"] == 10
    assert delayed["token_to_client_estimate"]["n"] == 3


def test_a_round_is_opening_then_streaming_then_closing() -> None:
    early = _record("a", [(20 * MS, "echo: "), (50 * MS, "a")])  # sent 0, done 100
    late = _record("b", [(30 * MS, "echo: "), (70 * MS, "b")])
    late.sent, late.done = 5 * MS, 80 * MS
    failed = _record("c", [(90 * MS, "echo: ")])
    failed.sent, failed.error = -50 * MS, "boom"  # (left out)
    spans = round_spans_ms([early, late, failed])
    # first request at 0; the last first token at 30; the last token at 70; the end at 100
    assert spans == {"opening": 30.0, "streaming": 40.0, "closing": 30.0}
    assert round_spans_ms([failed]) is None


def test_token_latencies_are_split_by_the_window_of_their_round() -> None:
    # round 1: stream a's tokens leave at 10, 20, 30; b's at 15, 25, 35 -> the opening ends
    # at 15 (b's first), the closing starts at 30 (a's last)
    a = _record("a", [(11 * MS, "echo: "), (22 * MS, "a")])
    b = _record("b", [(16 * MS, "echo: "), (29 * MS, "b")])
    failed = _record("c", [(16 * MS, "echo: ")])
    failed.error = "boom"
    # round 2, one stream: nothing before its first token or after its last
    d = _record("d", [(101 * MS, "echo: "), (105 * MS, "d")])
    emissions = {
        "a": [10 * MS, 20 * MS],
        "b": [15 * MS, 25 * MS],
        "c": [1],  # (failed: left out, its round's windows come from a and b)
        "d": [100 * MS, 102 * MS],
    }
    windows = lags_by_window([a, b, failed, d], emissions, streams=3)
    assert windows["opening"] == [1.0]  # a's first token, before b's first
    # b's first (15), a's last (20, the closing starts after it), then d's two
    assert windows["steady"] == [2.0, 1.0, 1.0, 3.0]
    assert windows["closing"] == [4.0]  # b's last (25 > 20)
    phase = summarize_phase(3, 2, [a, b, failed, d], emissions, 1.0, {}, 0.0)
    assert phase["token_to_client_by_window"]["steady"]["n"] == 4


@pytest.mark.e2e
async def test_tiny_turns_run_against_real_uvicorn(tmp_path: Path) -> None:
    params = turns.parse_args(
        [
            "--stores=sqlite",
            "--sizes=4,10",
            "--turns=2",
            "--warmup=1",
            "--concurrency=0",
            "--no-langgraph",
            "--no-floor",
            "--no-cold",
            f"--output={tmp_path / 'turns.json'}",
        ]
    )
    results = await turns.run(params)
    sqlite = results["parley"]["sqlite"]
    assert sqlite["status"] == "ok", sqlite
    for size in (4, 10):
        s = sqlite["sizes"][str(size)]
        assert s["n"] == 2 and 0 < s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]
        assert s["history_min"] == size and s["history_max"] == size
    assert sqlite["p50_ratio_largest_over_smallest"] > 0
    assert sqlite["coordination"]  # which backend this configuration gets is recorded
    assert "Parley turn latency" in turns_report.render(results)


@pytest.mark.e2e
async def test_tiny_turns_run_times_the_floor_interleaved_with_each_stores_turns(
    tmp_path: Path,
) -> None:
    params = turns.parse_args(
        [
            *("--stores=sqlite", "--sizes=4,10", "--turns=3", "--warmup=1"),
            *("--concurrency=0", "--workers=1", "--no-langgraph", "--no-cold"),
            f"--output={tmp_path / 'turns.json'}",
        ]
    )
    results = await turns.run(params)
    paired = results["parley"]["sqlite"]["paired_floor"]
    assert paired["n"] == 3  # one echo per round of the two sizes
    assert 0 < paired["p50_ms"] <= paired["max_ms"] and paired["server_cpu_ms_per_request"] >= 0
    assert results["floor"]["sequential"]["n"] == 6  # the separate phase is still run
    row = results["comparisons"]["parley_vs_floor"]["sqlite"]
    p50 = results["parley"]["sqlite"]["sizes"]["4"]["p50_ms"]
    assert row["p50_over_paired_floor_p50"] == pytest.approx(p50 / paired["p50_ms"], rel=0.01)
    assert "the floor interleaved with its turns" in turns_report.render(results)


@pytest.mark.e2e
@pytest.mark.parametrize("client", ["lean", "httpx"])
async def test_tiny_streaming_run_measures_every_token(tmp_path: Path, client: str) -> None:
    params = streaming.parse_args(
        [
            *("--streams=3", "--rounds=1", "--delay-ms=5", "--words=6", f"--client={client}"),
            f"--output={tmp_path}/s.json",
        ]
    )
    async with provisioned_store(STORES["sqlite"], tmp_path) as url:
        phase = await streaming.run_phase(
            params, url, tmp_path, random.Random(0), delay_ms=5.0, instrumented=True
        )
    assert phase["streams_ok"] == 3 and phase["streams_failed"] == 0, phase
    assert phase["tokens_per_stream"] == 7  # "echo: " + 6 words
    assert phase["delta_events_per_stream"] == 7  # with a delay, one event per token
    lag = phase["token_to_client"]
    assert lag["n"] == 21 and phase["token_to_client_unmatched_streams"] == 0
    assert 0 <= lag["min_ms"] <= lag["p50_ms"] < 1000
    assert phase["token_to_client_estimate"]["n"] == 21
    windows = phase["token_to_client_by_window"]
    assert sum(w["n"] for w in windows.values() if w) == 21
    spans = phase["round_spans_mean_ms"]
    assert spans["opening"] > 0 and spans["streaming"] > 0 and spans["closing"] > 0
    assert phase["client_runqueue_wait"] >= 0 and phase["server_runqueue_wait"] >= 0
