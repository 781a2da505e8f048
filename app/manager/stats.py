"""Process metrics: `GET /metrics` (Prometheus text, `prometheus-client`) and `GET /stats`
(JSON summary).

Each app builds its own `CollectorRegistry` (no module globals), so two apps in one process
(tests, several lifespans) never share or double-register series. Counters only go up and
histograms have fixed buckets, so `rate()` and `histogram_quantile()` work across scrapes;
`/stats` adds p50/p99 of the last `RECENT_RUNS` turns for humans.

The same hooks feed `RunTelemetry` (traces and the per-run log line), so every place that
reports a metric reports it once, here.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from app.domain import Usage
from app.manager.telemetry import RunTelemetry

RECENT_RUNS = 2048
TURN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
PROVIDER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index]


class Stats:
    def __init__(self, telemetry: RunTelemetry | None = None) -> None:
        self.telemetry = telemetry or RunTelemetry(None)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._runs_started = Counter("parley_runs_started", "Runs started.", registry=r)
        self._runs_finished = Counter(
            "parley_runs_finished", "Runs finished, by final status.", ["status"], registry=r
        )
        self._active = Gauge(
            "parley_runs_active", "Runs executing or queued in this process.", registry=r
        )
        self._admission_waiting = Gauge(
            "parley_admission_waiting",
            "Requests queued for an admission slot (`PARLEY_ADMISSION_CONCURRENCY`; 0 "
            "without a gate).",
            registry=r,
        )
        self._admission_active = Gauge(
            "parley_admission_active",
            "Requests holding an admission slot (opening a turn or creating a conversation).",
            registry=r,
        )
        self._messages = Counter(
            "parley_messages_committed", "Messages committed by runs.", registry=r
        )
        self._tokens = Counter(
            "parley_tokens", "Provider tokens, by direction.", ["direction"], registry=r
        )
        self._cost = Counter("parley_cost_usd", "Provider cost in USD.", registry=r)
        self._turn = Histogram(
            "parley_turn_duration_seconds",
            "Run duration from start to its terminal event, by final status.",
            ["status"],
            buckets=TURN_BUCKETS,
            registry=r,
        )
        self._provider = Histogram(
            "parley_provider_latency_seconds",
            "Provider call latency: `first_event` (time to the first streamed event) and "
            "`total` (whole completion), by provider.",
            ["provider", "phase"],
            buckets=PROVIDER_BUCKETS,
            registry=r,
        )
        self._provider_errors = Counter(
            "parley_provider_errors",
            "Failed provider calls, by provider and code.",
            ["provider", "code"],
            registry=r,
        )
        self._store = Histogram(
            "parley_store_latency_seconds",
            "State store latency of the turn path, by operation.",
            ["operation"],
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self._tool_calls = Counter(
            "parley_tool_calls",
            "Tool calls answered, by tool and outcome (ok, error, rejected, stopped); "
            "`unknown` stands for every tool the prompt does not offer.",
            ["tool", "outcome"],
            registry=r,
        )
        self._tool_latency = Histogram(
            "parley_tool_latency_seconds",
            "Latency of server-side tool calls, by tool.",
            ["tool"],
            buckets=PROVIDER_BUCKETS,
            registry=r,
        )
        self._auto_checkpoints = Counter(
            "parley_auto_checkpoints",
            "Auto checkpoints by outcome: created, pruned (by retention), failed (the turn "
            "stood; see the log).",
            ["outcome"],
            registry=r,
        )
        # For /stats only (JSON for humans): exact totals and a recent window.
        self.runs_started = 0
        self.runs_finished: dict[str, int] = {}
        self.messages_committed = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0
        self.turn_seconds: deque[float] = deque(maxlen=RECENT_RUNS)
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once per label set: `labels()` checks and
        converts the values and takes the metric's lock every time (~10 Python calls; a
        turn reports ~8 labelled values). The label sets are the metric's own series, so
        this holds no more than prometheus-client does."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def run_started(self, run_id: str, conversation_id: str) -> None:
        self.runs_started += 1
        self._runs_started.inc()
        self.telemetry.run_started(run_id, conversation_id)

    def run_finished(
        self,
        status: str,
        seconds: float,
        usage: Usage,
        cost: float,
        committed: int,
        *,
        error: str | None = None,
    ) -> None:
        self.telemetry.run_finished(status, seconds, usage, cost, error)
        self.runs_finished[status] = self.runs_finished.get(status, 0) + 1
        self.turn_seconds.append(seconds)
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cost_usd += cost
        self.messages_committed += committed
        self._child(self._runs_finished, status).inc()
        self._child(self._turn, status).observe(seconds)
        self._child(self._tokens, "input").inc(usage.input_tokens)
        self._child(self._tokens, "output").inc(usage.output_tokens)
        self._cost.inc(cost)
        self._messages.inc(committed)

    def provider_call(
        self,
        provider: str,
        *,
        model: str,
        first_event_s: float | None,
        total_s: float,
        usage: Usage,
        finish_reason: str,
    ) -> None:
        if first_event_s is not None:
            self._child(self._provider, provider, "first_event").observe(first_event_s)
        self._child(self._provider, provider, "total").observe(total_s)
        self.telemetry.provider_call(
            provider,
            model=model,
            first_event_s=first_event_s,
            total_s=total_s,
            usage=usage,
            finish_reason=finish_reason,
        )

    def provider_failed(self, provider: str, code: str, *, model: str, total_s: float) -> None:
        self._child(self._provider_errors, provider, code).inc()
        self.telemetry.provider_call(
            provider, model=model, first_event_s=None, total_s=total_s, error=code
        )

    def tool_call(self, tool: str, outcome: str, seconds: float | None) -> None:
        self._child(self._tool_calls, tool, outcome).inc()
        if seconds is not None:
            self._child(self._tool_latency, tool).observe(seconds)
            self.telemetry.tool_call(tool, outcome, seconds)

    def auto_checkpoint(self, outcome: str) -> None:
        self._child(self._auto_checkpoints, outcome).inc()

    def store_call(self, operation: str, seconds: float) -> None:
        self._child(self._store, operation).observe(seconds)
        self.telemetry.store_call(operation, seconds)

    def snapshot(self, *, active_runs: int) -> dict[str, Any]:
        durations = sorted(self.turn_seconds)
        return {
            "runs": {
                "started": self.runs_started,
                "active": active_runs,
                "by_status": dict(self.runs_finished),
            },
            "messages_committed": self.messages_committed,
            "tokens": {"input": self.input_tokens, "output": self.output_tokens},
            "cost_usd": round(self.cost_usd, 8),
            "latency_s": {
                "samples": len(durations),
                "window": RECENT_RUNS,
                "p50": _percentile(durations, 0.5),
                "p99": _percentile(durations, 0.99),
            },
        }

    def prometheus(
        self, *, active_runs: int, admission_waiting: int = 0, admission_active: int = 0
    ) -> bytes:
        """The registry's text; the gauges of state kept elsewhere (runs executing, the
        `AdmissionGate`'s counters) are read now, at the scrape."""
        self._active.set(active_runs)
        self._admission_waiting.set(admission_waiting)
        self._admission_active.set(admission_active)
        return generate_latest(self.registry)
