"""Parley with the path of a streamed turn time-stamped, for bench/streaming.py.

The app is `app.main.create_app()` unchanged, plus, in this benchmark process only:

* a wrapper around `MockProvider.stream` that records `time.monotonic_ns()` as each text
  delta leaves the provider, keyed by the text of the request's last user message (the
  benchmark makes it unique per stream). It costs about a microsecond per token.
* stamps along the turn, keyed the same way (`STAGES`): the request reaching the run
  service (`TurnRequests.send_message`), the executor starting (`TurnExecutor.execute`),
  each event's publication to the run's event log (start and end of
  `TurnExecutor._publish`, by event type), the executor finishing (`_finish`, right after
  the commit), and each SSE frame as the response encodes it, just before its `send`
  (`app.api.sse_response.RunEventStream.frame`);
* `GET /__bench/emissions` and `GET /__bench/stages`, which return the records and forget
  them.

`time.monotonic_ns()` reads CLOCK_MONOTONIC, one clock for every process of a Linux host,
so the client can subtract these stamps from its own receive times.

    uvicorn bench.streaming_app:create_app --factory
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from app.main import create_app as create_parley
from app.providers.base import ProviderEvent, ProviderRequest, TextDelta
from app.providers.mock import MockProvider, message_text

EMISSIONS: dict[str, list[int]] = {}
# message text -> {"accept": ns, "execute": ns, "finish": ns,
#                  "publish": [[type, start ns, end ns]], "frames": [[type, ns]]}
STAGES: dict[str, dict[str, Any]] = {}
_RUN_KEYS: dict[str, str] = {}  # run id -> message text
TERMINAL = {"run.completed", "run.failed", "run.cancelled", "run.requires_action"}


def _last_user_text(request: ProviderRequest) -> str:
    last = next((m for m in reversed(request.messages) if m.role == "user"), None)
    return message_text(last) if last else ""


def instrument_mock_provider() -> None:
    """Wrap `MockProvider.stream` (once) so that it records when each text delta leaves."""
    original: Any = MockProvider.stream
    if getattr(original, "bench_instrumented", False):
        return

    async def stream(self: MockProvider, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        stamps = EMISSIONS.setdefault(_last_user_text(request), [])
        async for event in original(self, request):
            if isinstance(event, TextDelta) and event.text:
                stamps.append(time.monotonic_ns())
            yield event

    stream.bench_instrumented = True  # type: ignore[attr-defined]
    MockProvider.stream = stream  # type: ignore[method-assign]


def _stage(key: str) -> dict[str, Any]:
    return STAGES.setdefault(key, {"publish": [], "frames": []})


def instrument_turn_path() -> None:
    """Wrap (once) the points of a turn's path listed in the module docstring."""
    from app.api.sse_response import RunEventStream
    from app.manager.turn_requests import TurnRequests
    from app.manager.turns import TurnExecutor

    if getattr(TurnExecutor, "bench_instrumented", False):
        return
    send_message: Any = TurnRequests.send_message
    execute: Any = TurnExecutor.execute
    publish: Any = TurnExecutor._publish
    finish: Any = TurnExecutor._finish
    frame: Any = RunEventStream.frame

    async def timed_send(self: Any, principal: Any, conv_id: str, req: Any, **kw: Any) -> Any:
        _stage(req.content)["accept"] = time.monotonic_ns()
        return await send_message(self, principal, conv_id, req, **kw)

    async def timed_execute(self: Any, plan: Any) -> None:
        _stage(plan.input.content)["execute"] = time.monotonic_ns()
        _RUN_KEYS[plan.run.id] = plan.input.content
        await execute(self, plan)

    async def timed_publish(self: Any, plan: Any, type_: str, data: dict[str, Any]) -> None:
        t0 = time.monotonic_ns()
        await publish(self, plan, type_, data)
        _stage(plan.input.content)["publish"].append([type_, t0, time.monotonic_ns()])

    async def timed_finish(self: Any, plan: Any, *args: Any) -> None:
        _stage(plan.input.content)["finish"] = time.monotonic_ns()
        await finish(self, plan, *args)

    def timed_frame(self: Any, event: Any, retry: int | None) -> bytes:
        out: bytes = frame(self, event, retry)
        seen: list[list[Any]] = self.__dict__.setdefault("bench_seen", [])
        seen.append([event.type, time.monotonic_ns()])
        if self.run_id in _RUN_KEYS:  # (frames stamped before the executor named the run)
            _stage(_RUN_KEYS[self.run_id])["frames"].extend(seen)
            seen.clear()
        if event.type in TERMINAL:
            _RUN_KEYS.pop(self.run_id, None)
        return out

    TurnRequests.send_message = timed_send  # type: ignore[method-assign]
    TurnExecutor.execute = timed_execute  # type: ignore[method-assign]
    TurnExecutor._publish = timed_publish  # type: ignore[method-assign]
    TurnExecutor._finish = timed_finish  # type: ignore[method-assign]
    RunEventStream.frame = timed_frame  # type: ignore[method-assign]
    TurnExecutor.bench_instrumented = True  # type: ignore[attr-defined]


def create_app() -> FastAPI:
    instrument_mock_provider()
    instrument_turn_path()
    app = create_parley()

    @app.get("/__bench/stages", include_in_schema=False)
    async def stages() -> dict[str, dict[str, Any]]:
        out = dict(STAGES)
        STAGES.clear()
        return out

    @app.get("/__bench/emissions", include_in_schema=False)
    async def emissions() -> dict[str, list[int]]:
        out = dict(EMISSIONS)
        EMISSIONS.clear()
        return out

    return app
