"""Backoff for the retry and polling loops of the coordination backends."""

from __future__ import annotations

import random


class Backoff:
    """Jittered exponential delays: each `next()` is in [d/2, d], d doubling up to `cap_s`."""

    def __init__(self, first_s: float, cap_s: float) -> None:
        self._first = first_s
        self._cap = cap_s
        self._next = first_s

    def reset(self) -> None:
        self._next = self._first

    def next(self) -> float:
        delay = self._next * random.uniform(0.5, 1.0)
        self._next = min(self._next * 2, self._cap)
        return delay
