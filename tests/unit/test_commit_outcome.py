"""`commit_landed` stays within its time bound against a store that does not answer: each
read could otherwise take the whole store timeout and delay the run's failure by several."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from app.domain import Message
from app.manager.commit_outcome import CHECK_TRIES, commit_landed
from app.stores.base import StateStore


class _Hanging:
    def __init__(self) -> None:
        self.reads = 0

    async def get_messages(self, lineage_id: str, ids: list[str]) -> list[Any]:
        self.reads += 1
        await asyncio.sleep(10)  # a black-holed store, past the check's bound
        return []


class _Found:
    def __init__(self, message: Message) -> None:
        self.message = message

    async def get_messages(self, lineage_id: str, ids: list[str]) -> list[Any]:
        return [self.message]


def _message() -> Message:
    return Message.model_construct(id="m1", run_id="run-1")


async def test_a_store_that_does_not_answer_is_given_up_within_the_bound() -> None:
    store = _Hanging()
    started = time.monotonic()
    landed = await commit_landed(cast(StateStore, store), "lin", [_message()], within_s=0.3)
    assert landed is False
    assert time.monotonic() - started < 1.0  # not CHECK_TRIES x 10 s
    assert store.reads == 1 < CHECK_TRIES


async def test_a_stored_last_message_of_the_run_means_landed() -> None:
    store = _Found(_message())
    assert await commit_landed(cast(StateStore, store), "lin", [_message()], within_s=0.3)
