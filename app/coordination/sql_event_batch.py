"""What one statement of the event writer (`app.coordination.sql_event_writer`) writes,
and the JSON text of an event's data as PostgreSQL can hold it."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from app.coordination.base import LeaseRelease
from app.errors import StoreUnavailable
from app.json_text import json_str

log = logging.getLogger("parley.coordination.sql")

Event = tuple[str, int, str, str]  # run, seq, type, data (its JSON text: `event_json`)

# jsonb refuses the escape `\u0000` (NUL); one preceded by an escaped backslash is text
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def event_json(data: dict[str, Any]) -> str:
    """`data` as the JSON text of a `run_events.data` (jsonb). Raises for data it cannot
    hold: a lone surrogate (no UTF-8 for it), a NUL (jsonb refuses `\\u0000`)."""
    text = json_str(data)
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise ValueError("a run event holding NUL, which PostgreSQL's jsonb cannot store")
    return text


@dataclass
class EventBatch:
    """Events taken for one statement, with what rides along: their runs' end records
    and newest live records (JSON) and the turn leases those ends release (by run)."""

    events: list[Event] = field(default_factory=list)
    ends: dict[str, str] = field(default_factory=dict)
    lives: dict[str, str] = field(default_factory=dict)
    releases: dict[str, LeaseRelease] = field(default_factory=dict)

    def runs(self) -> list[str]:
        """The runs of its events, in the order of their first event."""
        return list(dict.fromkeys(event[0] for event in self.events))

    def of_run(self, run_id: str) -> EventBatch:
        """What of it is `run_id`'s."""

        def mine(by_run: dict[str, Any]) -> dict[str, Any]:
            return {run_id: by_run[run_id]} if run_id in by_run else {}

        return EventBatch(
            [event for event in self.events if event[0] == run_id],
            mine(self.ends),
            mine(self.lives),
            mine(self.releases),
        )


def refused(exc: Exception) -> bool:
    """Whether a batch failed for what an item of it holds rather than for the connection
    (which would fail each run's statement as well, a timeout each): a value the server
    (class 22, `asyncpg.DataError`) or the driver (a `ValueError`: its own `DataError`,
    an encoding error) does not take, or a constraint (raised as is)."""
    if isinstance(exc, StoreUnavailable):
        return isinstance(exc.__cause__, asyncpg.DataError | ValueError)
    return True


def dropped(part: EventBatch, exc: Exception) -> dict[str, StoreUnavailable]:
    """The error of each run of `part`, which could not be written (logged)."""
    log.warning("dropped %d run events that could not be written: %r", len(part.events), exc)
    error = (
        exc
        if isinstance(exc, StoreUnavailable)
        else StoreUnavailable(f"Run events could not be written: {exc!r}")
    )
    return dict.fromkeys(part.runs(), error)
