"""Start-up warm-up: the per-process first-use costs a fresh server's first turn would
otherwise pay, paid before it reports ready.

Measured on a fresh SQLite server (per call, 10,000-message conversation): its first turn
paid the run log's heartbeat and first sweep (~22 ms), the first compile of the hot
statements (`get_conversation` 5 ms vs 2 ms warm; the path read likewise) and, with an
OpenAI model, the tokenizer encoding (~0.1-0.4 s of CPU). Each step reads nothing that
exists (an id no record has) and writes only what the first run would write anyway (the
heartbeat). The whole warm-up is bounded (`timeout_s`); a step that fails or runs out of
time is logged and skipped: a warm-up never stops a start-up, it only makes it slower.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from app.coordination.base import Coordinator
from app.domain import new_id, utcnow
from app.manager.context import ContextBuilder
from app.providers.base import LLMProvider
from app.stores.base import StateStore

log = logging.getLogger("parley")


async def _store_reads(store: StateStore) -> None:
    """The turn's reads, each once: statements compiled, a connection opened."""
    missing = new_id()
    await store.get_conversation(missing, now=utcnow())
    await store.get_path(missing, missing, limit=64)


async def _encodings(context: ContextBuilder, providers: Mapping[str, LLMProvider]) -> None:
    """The tokenizer encodings of the providers' default models, loaded in a thread."""
    encodings = {p.token_encoding(p.default_model) for p in providers.values()}
    for encoding in sorted(e for e in encodings if e is not None):
        await context.counter(encoding)


async def warm_up(
    *,
    store: StateStore,
    coordinator: Coordinator,
    context: ContextBuilder,
    providers: Mapping[str, LLMProvider],
    timeout_s: float,
) -> dict[str, float]:
    """Run the steps in order within `timeout_s` in all; returns each finished step's
    milliseconds (also logged at INFO); `timeout_s` 0 skips it."""
    if timeout_s <= 0:
        return {}
    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("store", lambda: _store_reads(store)),
        ("coordination", coordinator.warm_up),
        ("encodings", lambda: _encodings(context, providers)),
    ]
    deadline = time.monotonic() + timeout_s
    took: dict[str, float] = {}
    for name, step in steps:
        left = deadline - time.monotonic()
        if left <= 0:
            log.warning("warm-up: out of time (%.1f s) before %s", timeout_s, name)
            break
        t = time.perf_counter()
        try:
            await asyncio.wait_for(step(), timeout=left)
        except TimeoutError:
            log.warning("warm-up: %s did not finish within %.1f s", name, timeout_s)
            break
        except Exception as exc:
            log.warning("warm-up: %s failed: %r", name, exc)
            continue
        took[name] = round((time.perf_counter() - t) * 1000, 1)
    log.info("warm-up: %s", ", ".join(f"{k} {v} ms" for k, v in took.items()) or "nothing")
    return took
