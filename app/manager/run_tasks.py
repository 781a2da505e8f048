"""The runs executing in this process: their tasks and plans, and how to cancel one so that
its clean-up runs.

A task cancelled before its first step never runs its coroutine at all: none of the
`try`/`finally` of the run (`TurnExecutor.execute`) happens, so its lease is kept (and
renewed) forever, its record stays `queued`, its limiter slot stays taken and whoever waits
for it waits forever. A cancel can come that early: an `if_busy: interrupt` send (or a
cancel request, a client disconnecting) can find the holder of the turn lock between the
admission that created the run's task and that task's first step (found by the outside
tester: 4 of 8 conversations stuck under reject+interrupt races). `cancel` therefore
delivers the cancellation only once the run has started: a task's first step is scheduled
when it is created, so a cancellation scheduled after it (`call_soon`) lands after that step,
inside the run's `try`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, ItemsView, Iterator, ValuesView

from app.coordination.base import RunRecord
from app.manager.turn_plan import TurnPlan


class RunTasks:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[RunRecord]] = {}
        self._plans: dict[str, TurnPlan] = {}
        self._entered: set[str] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[str]:
        """The ids of the runs executing here."""
        return iter(list(self._tasks))

    def start(
        self, plan: TurnPlan, body: Callable[[TurnPlan], Awaitable[RunRecord]]
    ) -> asyncio.Task[RunRecord]:
        """Run `body(plan)` in a task of its own, registered until it ends."""
        run_id = plan.run.id
        task = asyncio.create_task(self._run(plan, body), name=f"run-{run_id}")
        self._tasks[run_id] = task
        self._plans[run_id] = plan
        return task

    async def _run(
        self, plan: TurnPlan, body: Callable[[TurnPlan], Awaitable[RunRecord]]
    ) -> RunRecord:
        run_id = plan.run.id
        self._entered.add(run_id)
        try:
            return await body(plan)
        finally:
            self._entered.discard(run_id)
            self._tasks.pop(run_id, None)
            self._plans.pop(run_id, None)

    def get(self, run_id: str) -> asyncio.Task[RunRecord] | None:
        return self._tasks.get(run_id)

    def plan(self, run_id: str) -> TurnPlan | None:
        return self._plans.get(run_id)

    def items(self) -> ItemsView[str, asyncio.Task[RunRecord]]:
        return self._tasks.items()

    def values(self) -> ValuesView[asyncio.Task[RunRecord]]:
        return self._tasks.values()

    def cancel(self, run_id: str) -> bool:
        """Cancel run `run_id` if it executes here (False if not), once it has started."""
        task = self._tasks.get(run_id)
        if task is None:
            return False
        if run_id in self._entered:
            task.cancel()
        else:
            asyncio.get_running_loop().call_soon(task.cancel)
        return True
