"""Waiting for a run's end on behalf of a reader that may go away first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def unless_gone(ended: Awaitable[T], reader_gone: Awaitable[None]) -> tuple[bool, T | None]:
    """(True, what `ended` gave) if it finished first, else (False, None) once
    `reader_gone` completed first; whichever is left is cancelled. An error of `ended` is
    raised as it is."""
    end = asyncio.ensure_future(ended)
    gone = asyncio.ensure_future(reader_gone)
    try:
        await asyncio.wait((end, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not end.done():
            end.cancel()
    if end.done() and not end.cancelled():
        return True, end.result()
    return False, None
