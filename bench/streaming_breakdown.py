"""Where a streamed turn's time goes (bench/streaming.py, instrumented phase), from the
server's stamps (`bench/streaming_app.py`) and the client's, all on CLOCK_MONOTONIC.

Per stream, consecutive spans that add up to its whole duration (request sent -> the client
reads the terminal event):

* `client -> run service`: HTTP, body parsing and validation, up to `RunService.send_message`;
* `run service -> executor`: conversation read, run record, lock, the run's task starting;
* `executor -> first token`: conversation read, pack, context window, provider start;
* `first -> last token`: the provider's own stream; its ideal is `(tokens - 1) x delay`, the
  excess is the mock's timer waking late on a busy event loop (`timer lateness`);
* `last token -> commit done`: the rest of the reply published, `message.completed`, the
  store's `append_messages`;
* `commit -> client done`: the run recorded, the terminal event published, written and read.

Per token (when every token is its own event, as with a delay): provider emission -> event
log publish start (the turn loop and the arrival batching), the publish itself, publish end
-> SSE frame encoded by the response (the reader's wake-up), frame -> client event
(encoding, uvicorn, the socket, httpx, the SSE parser).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.stats import summarize_ms
from bench.streaming_client import StreamRecord

STREAM_SPANS = (
    "client -> run service",
    "run service -> executor",
    "executor -> first token",
    "first -> last token",
    "last token -> commit done",
    "commit -> client done",
)
TOKEN_SPANS = (
    "emit -> publish start",
    "publish",
    "publish end -> SSE frame",
    "SSE frame -> client event",
)


def _ms(a: int, b: int) -> float:
    return (b - a) / 1e6


def stream_spans(rec: StreamRecord, stamps: Sequence[int], st: Mapping[str, Any]) -> list[float]:
    """The six spans of one stream, in ms (see the module docstring)."""
    done = rec.done or rec.sent
    return [
        _ms(rec.sent, st["accept"]),
        _ms(st["accept"], st["execute"]),
        _ms(st["execute"], stamps[0]),
        _ms(stamps[0], stamps[-1]),
        _ms(stamps[-1], st["finish"]),
        _ms(st["finish"], done),
    ]


def token_spans(
    rec: StreamRecord, stamps: Sequence[int], st: Mapping[str, Any]
) -> list[list[float]] | None:
    """Per token, the four spans of TOKEN_SPANS; None unless every token is one event on
    every side (emission, publish, frame, client)."""
    pubs = [(a, b) for t, a, b in st["publish"] if t == "message.delta"]
    frames = [ns for t, ns in st["frames"] if t == "message.delta"]
    client = [ns for ns, _ in rec.deltas]
    if not len(stamps) == len(pubs) == len(frames) == len(client):
        return None
    return [
        [_ms(e, p0), _ms(p0, p1), _ms(p1, f), _ms(f, c)]
        for e, (p0, p1), f, c in zip(stamps, pubs, frames, client, strict=True)
    ]


def breakdown(
    records: Sequence[StreamRecord],
    emissions: Mapping[str, Sequence[int]],
    stages: Mapping[str, Mapping[str, Any]],
    delay_ms: float,
) -> dict[str, Any]:
    per_stream: list[list[float]] = []
    per_token: list[list[float]] = []
    publish_ms: list[float] = []
    lateness: list[float] = []
    skipped = 0
    for rec in records:
        stamps = emissions.get(rec.content) or []
        st = stages.get(rec.content) or {}
        if rec.error or not stamps or not {"accept", "execute", "finish"} <= st.keys():
            skipped += 1
            continue
        spans = stream_spans(rec, stamps, st)
        per_stream.append(spans)
        lateness.append(spans[3] - (len(stamps) - 1) * delay_ms)
        publish_ms.append(sum(_ms(a, b) for _, a, b in st["publish"]))
        tokens = token_spans(rec, stamps, st)
        if tokens is not None:
            per_token += tokens
    out: dict[str, Any] = {"streams": len(per_stream), "streams_skipped": skipped}
    if not per_stream:
        return out
    n = len(per_stream)
    out["stream_mean_ms"] = {
        name: round(sum(s[i] for s in per_stream) / n, 2) for i, name in enumerate(STREAM_SPANS)
    }
    out["stream_mean_total_ms"] = round(sum(sum(s) for s in per_stream) / n, 2)
    out["stream_p99_ms"] = {
        name: summarize_ms([s[i] for s in per_stream])["p99_ms"]
        for i, name in enumerate(STREAM_SPANS)
    }
    out["timer_lateness_ms"] = summarize_ms(lateness)
    out["event_log_publish_ms_per_stream"] = summarize_ms(publish_ms)
    if per_token:
        out["token_ms"] = {
            name: summarize_ms([t[i] for t in per_token]) for i, name in enumerate(TOKEN_SPANS)
        }
    return out
