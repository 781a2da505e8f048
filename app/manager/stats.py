"""Process counters behind `GET /stats` (JSON) and `GET /metrics` (Prometheus text)."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from app.domain import Usage


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index]


@dataclass
class Stats:
    runs_started: int = 0
    runs_finished: Counter[str] = field(default_factory=Counter)
    messages_committed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    turn_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=2048))

    def run_started(self) -> None:
        self.runs_started += 1

    def run_finished(
        self, status: str, seconds: float, usage: Usage, cost: float, committed: int
    ) -> None:
        self.runs_finished[status] += 1
        self.turn_seconds.append(seconds)
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cost_usd += cost
        self.messages_committed += committed

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
                "p50": _percentile(durations, 0.5),
                "p99": _percentile(durations, 0.99),
            },
        }

    def prometheus(self, *, active_runs: int) -> str:
        lines = [
            "# HELP parley_runs_started_total Runs started.",
            "# TYPE parley_runs_started_total counter",
            f"parley_runs_started_total {self.runs_started}",
            "# HELP parley_runs_finished_total Runs finished, by final status.",
            "# TYPE parley_runs_finished_total counter",
        ]
        for status, n in sorted(self.runs_finished.items()):
            lines.append(f'parley_runs_finished_total{{status="{status}"}} {n}')
        durations = sorted(self.turn_seconds)
        lines += [
            "# HELP parley_runs_active Runs executing or queued in this process.",
            "# TYPE parley_runs_active gauge",
            f"parley_runs_active {active_runs}",
            "# HELP parley_messages_committed_total Messages committed by runs.",
            "# TYPE parley_messages_committed_total counter",
            f"parley_messages_committed_total {self.messages_committed}",
            "# HELP parley_tokens_total Provider tokens, by direction.",
            "# TYPE parley_tokens_total counter",
            f'parley_tokens_total{{direction="input"}} {self.input_tokens}',
            f'parley_tokens_total{{direction="output"}} {self.output_tokens}',
            "# HELP parley_cost_usd_total Provider cost in USD.",
            "# TYPE parley_cost_usd_total counter",
            f"parley_cost_usd_total {self.cost_usd:.8f}",
            "# HELP parley_turn_seconds Turn duration over the last 2048 runs.",
            "# TYPE parley_turn_seconds summary",
            f'parley_turn_seconds{{quantile="0.5"}} {_percentile(durations, 0.5):.6f}',
            f'parley_turn_seconds{{quantile="0.99"}} {_percentile(durations, 0.99):.6f}',
            f"parley_turn_seconds_count {len(durations)}",
            f"parley_turn_seconds_sum {sum(durations):.6f}",
        ]
        return "\n".join(lines) + "\n"
