"""What every benchmark shares that is neither a process, a store nor a statistic: where
the repository and the results are, and the realistic message text the clients send."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"

_VOCABULARY_TEXT = (
    "the a to and of in is it you that for on with as this be are was have not at but can "
    "we my your what if or from about so there how do all when they would like just one "
    "order account invoice shipping delivery refund password reset email address payment "
    "card plan upgrade subscription billing support ticket issue problem error update "
    "version install download setting configure report export data file folder project "
    "meeting schedule tomorrow today week month morning afternoon please thanks help need "
    "want know think could should make sure check again still already soon later before "
    "after because while customer product service team manager question answer detail "
    "number date time price total amount discount code link page screen button login "
    "mobile app browser website server network connection slow fast working broken new"
)
_VOCABULARY = _VOCABULARY_TEXT.split()


def random_text(rng: random.Random, min_words: int = 10, max_words: int = 40) -> str:
    """A message of `min_words`..`max_words` everyday words (about 5 characters each)."""
    n = rng.randint(min_words, max_words)
    words = [rng.choice(_VOCABULARY) for _ in range(n)]
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice(".?!")


def run_fast(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on uvloop when it is installed (it comes with `uvicorn[standard]`): the
    load generator and the mock upstream then cost less CPU next to the servers they test."""
    # SIGTERM (e.g. `kill <pid>`) as Ctrl-C: the run is cancelled and its servers, scratch
    # databases and child processes are cleaned up instead of left behind.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
