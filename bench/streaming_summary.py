"""What the records of one phase of `bench/streaming.py` say: tokens/s, events per stream,
time to first token, and the provider token -> client event latency.

Tokens are counted from the text, never from events: the service publishes the text that
arrived while it was busy with the previous `message.delta` as one event, so a provider
faster than the event log (the mock with zero delay) yields fewer, larger events, while a
slow one (a delay per token) still yields one event per token. A reply's tokens are the
mock's own (`split_tokens`: a word and its trailing whitespace), and a token reaches the
client with the event that carries its last character.

A round's tokens fall in three windows by the time they leave the provider (`WINDOWS`):
`opening`, before the round's last stream has its first token (turns are still being
opened: their CPU comes in bursts that tokens queue behind); `steady`, from then until the
first stream of the round emits its last token (every stream is streaming, nothing else
runs); `closing`, after that (replies being committed). The overall latency is reported
with the steady-state one beside it, and each window's in the JSON.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

from app.providers.mock import split_tokens
from bench.stats import ratio, summarize_ms
from bench.streaming_client import StreamRecord

WINDOWS = ("opening", "steady", "closing")


def token_arrivals(record: StreamRecord) -> list[int]:
    """The client's receive time (monotonic ns) of each token of the reply, in order."""
    event_ends = list(accumulate(len(text) for _, text in record.deltas))
    reply = "".join(text for _, text in record.deltas)
    token_ends = accumulate(len(t) for t in split_tokens(reply))
    return [record.deltas[bisect_left(event_ends, end)][0] for end in token_ends]


def streaming_window_s(records: Sequence[StreamRecord]) -> float:
    """One round's time from its first token received to its last (seconds): the round
    minus its opening (requests, turn set-up before any token) and its tail (commits)."""
    firsts = [r.deltas[0][0] for r in records if r.error is None and r.deltas]
    lasts = [r.deltas[-1][0] for r in records if r.error is None and r.deltas]
    return (max(lasts) - min(firsts)) / 1e9 if firsts else 0.0


ROUND_SPANS = ("opening", "streaming", "closing")


def round_spans_ms(records: Sequence[StreamRecord]) -> dict[str, float] | None:
    """One round's wall time, as the client sees it, in three consecutive spans (ms) that
    add up to it: `opening`, its first request sent -> the first token of its last stream to
    get one (every turn of the round opened); `streaming`, -> its last token; `closing`, ->
    its last terminal event. With a delay the ideal is 0, (tokens - 1) x delay and 0: the
    opening and closing are what the round loses to turn set-up and commits, the excess of
    `streaming` is per-token cost and the provider's timer waking late."""
    ok = [r for r in records if r.error is None and r.deltas and r.done]
    if not ok:
        return None
    start = min(r.sent for r in ok)
    first = max(r.deltas[0][0] for r in ok)
    last = max(r.deltas[-1][0] for r in ok)
    end = max(r.done or 0 for r in ok)
    return {
        "opening": (first - start) / 1e6,
        "streaming": (last - first) / 1e6,
        "closing": (end - last) / 1e6,
    }


def window_of(stamp: int, opening_end: int, closing_start: int) -> str:
    """The window (`WINDOWS`) of a token that left the provider at `stamp`, in a round whose
    last first token left at `opening_end` and whose first last token at `closing_start`."""
    if stamp < opening_end:
        return "opening"
    return "closing" if stamp > closing_start else "steady"


def lags_by_window(
    records: Sequence[StreamRecord], emissions: dict[str, list[int]], streams: int
) -> dict[str, list[float]]:
    """Token -> client latencies (ms) per window. `records` are the phase's, round after
    round (`streams` each); streams that failed or whose stamps do not match are left out
    (their round's windows are taken from the others)."""
    out: dict[str, list[float]] = {w: [] for w in WINDOWS}
    for start in range(0, len(records), streams):
        pairs = []
        for r in records[start : start + streams]:
            stamps = emissions.get(r.content) if r.error is None else None
            arrivals = token_arrivals(r) if stamps else []
            if stamps and len(stamps) == len(arrivals):
                pairs.append((stamps, arrivals))
        if not pairs:
            continue
        opening_end = max(stamps[0] for stamps, _ in pairs)
        closing_start = min(stamps[-1] for stamps, _ in pairs)
        for stamps, arrivals in pairs:
            for tx, rx in zip(stamps, arrivals, strict=True):
                out[window_of(tx, opening_end, closing_start)].append((rx - tx) / 1e6)
    return out


def summarize_phase(
    streams: int,
    rounds: int,
    records: Sequence[StreamRecord],
    emissions: dict[str, list[int]],
    wall_s: float,
    usage: dict[str, float | None],
    delay_ms: float,
) -> dict[str, Any]:
    """The phase's numbers. `emissions` maps a stream's message to the server's stamps of
    its tokens leaving the provider (empty when the server is not instrumented)."""
    ok = [r for r in records if r.error is None]
    errors = [r.error for r in records if r.error is not None]
    arrivals = {id(r): token_arrivals(r) for r in ok}
    tokens = sum(len(a) for a in arrivals.values())
    events = sum(len(r.deltas) for r in ok)
    per_stream = tokens / len(ok) if ok else 0
    out: dict[str, Any] = {
        "delay_ms": delay_ms,
        "streams": streams,
        "rounds": rounds,
        "streams_ok": len(ok),
        "streams_failed": len(errors),
        "errors_sample": sorted(set(errors))[:5],
        "tokens_received": tokens,
        "tokens_per_stream": round(per_stream, 2),
        "delta_events_received": events,
        "delta_events_per_stream": round(events / len(ok), 2) if ok else 0,
        # Events that carry more than one token: coalesced by the service.
        "multi_token_events": sum(
            1 for r in ok for _, text in r.deltas if len(split_tokens(text)) > 1
        ),
        "wall_s": round(wall_s, 3),
        "tokens_per_s": round(tokens / wall_s, 1) if wall_s else None,
        "delta_events_per_s": round(events / wall_s, 1) if wall_s else None,
        "streams_per_s": round(len(ok) / wall_s, 1) if wall_s else None,
        **usage,
    }
    util = usage.get("server_cpu_utilization")
    if util is not None and tokens:
        # every CPU second of the server over the rounds (turn opening and commit included)
        out["server_cpu_us_per_token"] = round(util * wall_s / tokens * 1e6, 1)
        out["server_cpu_ms_per_stream"] = round(util * wall_s / len(ok) * 1e3, 2)
    if not ok:
        return out
    if delay_ms:
        # All streams of a round at once; each needs (tokens - 1) x delay at the least.
        ideal = streams * per_stream / ((per_stream - 1) * delay_ms / 1000)
        out["ideal_tokens_per_s"] = round(ideal, 1)
        out["fraction_of_ideal"] = ratio(out["tokens_per_s"], ideal)
    first = [(r.deltas[0][0] - r.sent) / 1e6 for r in ok if r.deltas]
    out["time_to_first_token"] = summarize_ms(first)
    out["stream_duration"] = summarize_ms([(r.done - r.sent) / 1e6 for r in ok if r.done])
    # From the last delta to `run.completed`: mostly the commit of the turn.
    out["last_token_to_completed"] = summarize_ms(
        [(r.done - r.deltas[-1][0]) / 1e6 for r in ok if r.done and r.deltas]
    )
    if emissions:
        lags, unmatched = [], 0
        for r in ok:
            stamps = emissions.get(r.content)
            if stamps is None or len(stamps) != len(arrivals[id(r)]):
                unmatched += 1
                continue
            lags += [(rx - tx) / 1e6 for rx, tx in zip(arrivals[id(r)], stamps, strict=True)]
        out["token_to_client"] = summarize_ms(lags) if lags else None
        out["token_to_client_unmatched_streams"] = unmatched
        windows = lags_by_window(records, emissions, streams)
        out["token_to_client_by_window"] = {
            w: summarize_ms(v) if v else None for w, v in windows.items()
        }
    estimates = [
        (rx - (r.created + i * delay_ms * 1e6)) / 1e6
        for r in ok
        if r.created is not None
        for i, rx in enumerate(arrivals[id(r)])
    ]
    if delay_ms and estimates:
        out["token_to_client_estimate"] = summarize_ms(estimates)
    return out
