"""Streaming: provider token -> client SSE event latency and aggregate streamed tokens/s
with 100 concurrent streams (DESIGN §11). Prints a table, writes
bench/results/streaming.json.

    .venv/bin/python bench/streaming.py            # full run (~30 seconds)
    .venv/bin/python bench/streaming.py --quick    # ~15 seconds

Method (details in bench/README.md):

* A real uvicorn per phase, mock provider, `PARLEY_MAX_CONCURRENT_EXECUTIONS=0`, SQLite
  store in a temporary directory (`--store postgres` for a scratch PostgreSQL database).
  `--streams` conversations are created first; each round sends one streamed turn on every
  conversation at once (`POST /conversations/{id}/messages` with `"stream": true`); a phase
  is `--rounds` rounds. The streams are read by `--client lean` (default: `bench/loadgen.py`,
  one keep-alive connection per conversation, on uvloop) or `--client httpx` (httpx +
  httpx-sse on asyncio, as before; it costs the machine ~4x the CPU per event).
* Each message is ~50 words, unique per stream; the mock echoes `echo: <message>`, one token
  per word, sleeping `PARLEY_MOCK_DELAY_MS` between consecutive tokens (none before the
  first). The service publishes the text that arrived while it was busy with the previous
  `message.delta` as one event: with a delay every token is its own event, with delay 0
  an event may carry several. Tokens are therefore counted from the text (the mock's
  tokenization of the received reply), and events per stream are reported beside them.
* Latency phase (delay 20 ms): the server is `bench.streaming_app:create_app`, Parley plus a
  wrapper that stamps each token with `time.monotonic_ns()` as it leaves the mock provider.
  The client stamps each `message.delta` event as httpx-sse hands it over; a token arrives
  with the event that carries it. Token -> event latency is the difference (CLOCK_MONOTONIC
  is shared by all processes on Linux). The client-only estimate, which needs no
  instrumentation, is also reported: receive(token i) - (receive(message.created) + i x
  delay); it assumes the provider emits token i exactly i x delay after the user message is
  announced, so it also counts the context building before the first token and the mock's
  own timer lateness. Beside the overall latency, the steady state's: tokens that left the
  provider while every stream of the round was streaming (after the round's last first token,
  before its first last token), i.e. without the turn-opening burst and the commits.
* Throughput phase (delay 0): the plain `app.main:create_app`; aggregate tokens/s is the
  number of tokens received over the wall time of the rounds.

Modules: `bench/streaming_client.py` (one stream as the client sees it),
`bench/streaming_summary.py` (what a phase's records say), `bench/streaming_app.py` (the
instrumented server).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import RESULTS_DIR, run_fast
from bench.report import loadavg, machine_info, publish
from bench.servers import parley_env, uvicorn_server
from bench.stats import fmt, format_table
from bench.stores import STORES, provisioned_store
from bench.streaming_breakdown import STREAM_SPANS, TOKEN_SPANS, breakdown
from bench.streaming_client import (
    CpuMeter,
    LeanStreams,
    StreamRecord,
    create_conversations,
    one_stream,
    unique_message,
)
from bench.streaming_profile import per_unit, stage_shares, start_py_spy, stop_py_spy
from bench.streaming_summary import (
    ROUND_SPANS,
    round_spans_ms,
    streaming_window_s,
    summarize_phase,
)


@dataclass(frozen=True)
class Params:
    streams: int
    rounds: int
    delay_ms: float
    words: int
    store: str
    seed: int
    output: Path
    quick: bool = False
    client: str = "lean"
    py_spy: Path | None = None
    py_spy_rate: int = 250


async def run_phase(
    p: Params,
    url: str,
    workdir: Path,
    rng: random.Random,
    *,
    delay_ms: float,
    instrumented: bool,
) -> dict[str, Any]:
    """One phase on its own uvicorn: `p.streams` conversations, an untimed warm-up round,
    then `p.rounds` measured rounds; `instrumented` serves `bench.streaming_app` and
    collects the provider's token stamps."""
    target = "bench.streaming_app:create_app" if instrumented else "app.main:create_app"
    env = parley_env(url, workdir, PARLEY_MOCK_DELAY_MS=str(delay_ms))
    log = workdir / f"uvicorn-stream-{delay_ms:g}.log"
    limits = httpx.Limits(max_connections=p.streams * 2, max_keepalive_connections=p.streams * 2)
    timeout = httpx.Timeout(120.0, connect=10.0)
    async with (
        uvicorn_server(target, env, log) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=timeout, limits=limits) as client,
    ):
        ids = await create_conversations(client, p.streams)
        lean = LeanStreams(server.base_url) if p.client == "lean" else None

        async def stream(conv_id: str, content: str) -> StreamRecord:
            if lean is not None:
                return await lean.one_stream(conv_id, content)
            return await one_stream(client, conv_id, content)

        async def one_round(tag: str) -> list[StreamRecord]:
            return await asyncio.gather(
                *(
                    stream(conv_id, unique_message(rng, f"{tag}s{i}", p.words))
                    for i, conv_id in enumerate(ids)
                )
            )

        await one_round("warmup")  # connections opened, caches warm; not measured
        if instrumented:
            await client.get("/__bench/emissions")  # forget the warm-up's stamps
            await client.get("/__bench/stages")
        records: list[StreamRecord] = []
        spans: list[dict[str, float]] = []
        wall = streaming = 0.0
        spy = await start_py_spy(server.pid, p.py_spy, p.py_spy_rate) if instrumented else None
        cpu = CpuMeter(server)
        for r in range(p.rounds):
            t0 = time.perf_counter()
            done = await one_round(f"r{r}")
            wall += time.perf_counter() - t0
            streaming += streaming_window_s(done)
            records += done
            shape = round_spans_ms(done)
            if shape is not None:
                spans.append(shape)
        usage = cpu.done(wall)
        await stop_py_spy(spy)
        emissions = (await client.get("/__bench/emissions")).json() if instrumented else {}
        stages = (await client.get("/__bench/stages")).json() if instrumented else {}
        if lean is not None:
            lean.close()
    phase = summarize_phase(p.streams, p.rounds, records, emissions, wall, usage, delay_ms)
    phase["streaming_s"] = round(streaming, 3)
    if spans:
        phase["round_spans_mean_ms"] = {
            k: round(sum(s[k] for s in spans) / len(spans), 1) for k in ROUND_SPANS
        }
    phase["tokens_per_s_while_streaming"] = (
        round(phase["tokens_received"] / streaming, 1) if streaming else None
    )
    if instrumented:
        phase["breakdown"] = breakdown(records, emissions, stages, delay_ms)
        phase["round_wall_mean_ms"] = round(wall * 1000 / p.rounds, 1)
    if spy is not None and p.py_spy is not None and p.py_spy.exists():
        shares = stage_shares(p.py_spy)
        cpu_s = (usage["server_cpu_utilization"] or 0.0) * wall
        shares["per_unit"] = per_unit(shares, cpu_s, phase["streams_ok"], phase["tokens_received"])
        phase["cpu_by_stage"] = shares
    return phase


def render(results: dict[str, Any]) -> str:
    rows = []
    for name, ph in results["phases"].items():
        ttft = ph.get("time_to_first_token") or {}
        tail = ph.get("last_token_to_completed") or {}
        rows.append(
            [
                name,
                fmt(ph["streams"]),
                f"{ph['streams_ok']:,}/{ph['streams'] * ph['rounds']:,}",
                fmt(ph["tokens_per_stream"], 0),
                fmt(ph["delta_events_per_stream"], 1),
                fmt(ph["tokens_per_s"], 0),
                fmt(ph.get("tokens_per_s_while_streaming"), 0),
                fmt(ph.get("ideal_tokens_per_s"), 0),
                fmt(ph["streams_per_s"], 0),
                fmt(ttft.get("p50_ms"), 0),
                fmt(ttft.get("p99_ms"), 0),
                fmt(tail.get("p50_ms"), 0),
                fmt(tail.get("p99_ms"), 0),
                fmt(ph.get("server_cpu_utilization"), 2),
                fmt(ph.get("server_cpu_us_per_token"), 0),
                fmt(ph.get("server_runqueue_wait"), 2),
                fmt(ph.get("client_cpu_utilization"), 2),
                fmt(ph.get("client_runqueue_wait"), 2),
            ]
        )
    parts = [
        format_table(
            [
                "phase",
                "concurrent",
                "streams ok",
                "tokens/stream",
                "events/stream",
                "tokens/s",
                "streaming/s",
                "ideal/s",
                "streams/s",
                "TTFT p50",
                "TTFT p99",
                "last->done p50",
                "last->done p99",
                "srv CPU",
                "µs/token",
                "srv wait",
                "cli CPU",
                "cli wait",
            ],
            rows,
            "Streaming throughput (real uvicorn, mock provider; times in ms; CPU and run-queue "
            "wait in cores; streaming/s: tokens over first -> last token of each round; "
            "µs/token: all server CPU over tokens)",
        )
    ]
    rows = []
    for name, ph in results["phases"].items():
        shape = ph.get("round_spans_mean_ms")
        if shape:
            ideal = ph["delay_ms"] * (ph["tokens_per_stream"] - 1)
            total = sum(shape.values())
            rows.append(
                [name, *(fmt(shape[k], 1) for k in ROUND_SPANS), fmt(total, 1), fmt(ideal, 0)]
            )
    if rows:
        parts.append(
            format_table(
                ["phase", "opening", "streaming", "closing", "round", "ideal streaming"],
                rows,
                "Where a round's time goes, client side (ms, mean over rounds): opening = first "
                "request -> the last stream's first token; streaming -> the round's last token; "
                "closing -> its last terminal event",
            )
        )
    rows = []
    for name, ph in results["phases"].items():
        windows = ph.get("token_to_client_by_window") or {}
        for s, label in (
            (ph.get("token_to_client"), "measured: server stamp -> client event"),
            (windows.get("steady"), "  steady state (every stream streaming)"),
            (windows.get("opening"), "  opening (turns still starting)"),
            (windows.get("closing"), "  closing (replies committing)"),
            (ph.get("token_to_client_estimate"), "client-only estimate (created + i x delay)"),
        ):
            if s:
                rows.append(
                    [
                        name,
                        label,
                        fmt(s["n"]),
                        fmt(s["p50_ms"], 2),
                        fmt(s["p99_ms"], 2),
                        fmt(s["mean_ms"], 2),
                        fmt(s["max_ms"], 1),
                    ]
                )
    if rows:
        parts.append(
            format_table(
                ["phase", "method", "tokens", "p50 ms", "p99 ms", "mean ms", "max ms"],
                rows,
                "Provider token -> client SSE event latency (measured, then by window of the "
                "round the token left the provider in; client: "
                f"{results['parameters'].get('client', 'httpx')})",
            )
        )
    for name, ph in results["phases"].items():
        bd = ph.get("breakdown") or {}
        if bd.get("stream_mean_ms"):
            rows = [
                [span, fmt(bd["stream_mean_ms"][span], 1), fmt(bd["stream_p99_ms"][span], 1)]
                for span in STREAM_SPANS
            ]
            rows.append(["whole stream", fmt(bd["stream_mean_total_ms"], 1), "-"])
            rows.append(["round (all streams)", fmt(ph.get("round_wall_mean_ms"), 1), "-"])
            late = bd["timer_lateness_ms"]
            pub = bd["event_log_publish_ms_per_stream"]
            parts.append(
                format_table(
                    ["span", "mean ms", "p99 ms"],
                    rows,
                    f"{name}: where a stream's time goes ({bd['streams']:,} streams; ideal "
                    f"token span {ph['delay_ms'] * (ph['tokens_per_stream'] - 1):.0f} ms)",
                )
                + f"\n  timer lateness (first -> last token minus ideal): mean "
                f"{late['mean_ms']:.1f} ms, p99 {late['p99_ms']:.1f} ms; event-log publish time "
                f"per stream: mean {pub['mean_ms']:.2f} ms"
            )
        tok = bd.get("token_ms")
        if tok:
            rows = [
                [span, *(fmt(tok[span][k], 2) for k in ("p50_ms", "p99_ms", "mean_ms"))]
                for span in TOKEN_SPANS
            ]
            parts.append(
                format_table(
                    ["token span", "p50 ms", "p99 ms", "mean ms"],
                    rows,
                    f"{name}: provider token -> client event, by stage",
                )
            )
    for name, ph in results["phases"].items():
        prof = ph.get("cpu_by_stage") or {}
        if prof.get("samples"):
            unit = prof.get("per_unit") or {}
            rows = [[stage, fmt(pct, 1)] for stage, pct in prof["share_pct"].items()]
            parts.append(
                format_table(
                    ["stage", "% of server CPU"],
                    rows,
                    f"{name}: server CPU by stage (py-spy, {prof['samples']:,} GIL samples)",
                )
                + "\n  "
                + ", ".join(f"{k}: {v:g}" for k, v in unit.items())
            )
    lines = []
    for name, ph in results["phases"].items():
        events, tokens, multi = (
            ph["delta_events_received"],
            ph["tokens_received"],
            ph["multi_token_events"],
        )
        how = "one per token" if events == tokens else f"{multi:,} carried several tokens"
        lines.append(f"  {name}: {events:,} events for {tokens:,} tokens ({how})")
    parts.append("\n".join(["message.delta events (coalesced by arrival):", *lines]))
    for name, ph in results["phases"].items():
        if ph["streams_failed"]:
            parts.append(f"{name}: {ph['streams_failed']} streams failed: {ph['errors_sample']}")
    return "\n\n".join(parts)


def parse_args(argv: Sequence[str] | None = None) -> Params:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds (~20 seconds)")
    ap.add_argument("--streams", type=int, default=100, help="concurrent streams (default 100)")
    ap.add_argument("--rounds", type=int, help="measured rounds per phase (default 5)")
    ap.add_argument("--delay-ms", type=float, default=20.0, help="mock delay per token")
    ap.add_argument("--words", type=int, default=50, help="words per message (default 50)")
    ap.add_argument("--store", default="sqlite", choices=sorted(STORES))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--client",
        choices=("lean", "httpx"),
        default="lean",
        help="the streams' reader: lean (bench/loadgen.py on uvloop, default) or httpx (+ "
        "httpx-sse on asyncio, as before)",
    )
    ap.add_argument("--output", type=Path, default=RESULTS_DIR / "streaming.json")
    ap.add_argument(
        "--py-spy", type=Path, help="record the server of the delay phase into this raw profile"
    )
    ap.add_argument("--py-spy-rate", type=int, default=250, help="py-spy samples per second")
    a = ap.parse_args(argv)
    if a.words < 2 or a.streams < 1 or a.delay_ms <= 0:
        ap.error("--words >= 2, --streams >= 1 and --delay-ms > 0 are required")
    return Params(
        streams=a.streams,
        rounds=a.rounds or (2 if a.quick else 5),
        delay_ms=a.delay_ms,
        words=a.words,
        store=a.store,
        seed=a.seed,
        output=a.output,
        quick=a.quick,
        client=a.client,
        py_spy=a.py_spy,
        py_spy_rate=a.py_spy_rate,
    )


async def run(p: Params) -> dict[str, Any]:
    rng = random.Random(p.seed)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "streaming",
        "machine": machine_info(),
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(p).items()},
        "phases": {},
    }
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        workdir = Path(tmp)
        async with provisioned_store(STORES[p.store], workdir) as url:
            for name, delay, instrumented in (
                (f"delay {p.delay_ms:g} ms", p.delay_ms, True),
                ("delay 0 ms", 0.0, False),
            ):
                print(f"{name}: {p.streams} concurrent streams x {p.rounds} rounds ...", flush=True)
                results["phases"][name] = await run_phase(
                    p, url, workdir, rng, delay_ms=delay, instrumented=instrumented
                )
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["machine"]["loadavg_end"] = loadavg()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = parse_args(argv)
    results = run_fast(run(p)) if p.client == "lean" else asyncio.run(run(p))
    table = render(results)
    results["table"] = table
    print()
    print(table)
    publish("streaming", results, p.output)
    failed = sum(ph["streams_failed"] for ph in results["phases"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
