"""The streamed responses open on this instance, for cutting what outlives a shutdown.

On a shutdown signal the manager drains the runs (`PARLEY_SHUTDOWN_GRACE_S`, then
cancellation), which ends every stream following a run of this instance with the run's
terminal event. A stream can still outlive that (it follows a run executing on another
instance, or its run's cancellation is slow to land), and the server waits for every open
request before it stops: `cut_after` cancels the tasks serving the streams still open
`delay_s` later (`app.api.sse_response` ends each one cleanly; the client reconnects
elsewhere with `Last-Event-ID`).
"""

from __future__ import annotations

import asyncio
from typing import Any

CUT_MARGIN_S = 10.0  # after the drain's grace: its cancellations have landed by then


class OpenStreams:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.cutting = False  # the tasks are being cancelled by `cut_after`

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)

    def discard(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)

    def cut_after(self, delay_s: float) -> None:
        """Cancel, `delay_s` from now, the streams open then (once; later calls keep the
        first deadline)."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay_s, self._cut)

    def _cut(self) -> None:
        self.cutting = True
        for task in list(self._tasks):
            task.cancel()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
