"""Helpers shared by the store backends (no I/O): listing cursors and prefix ranges."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from app.domain import Conversation
from app.domain.pagination import decode_cursor_time
from app.stores.base import decode_cursor, encode_cursor

log = logging.getLogger("parley.stores")

_MAX_CODEPOINT = 0x10FFFF


@dataclass(frozen=True)
class Unreadable:
    """A stored conversation that does not decode (or decodes into something that cannot
    be sent as JSON). Listing skips it and leaves it where it is, for an operator."""

    conversation_id: str


def decode_listed(
    conversation_id: str, decode: Callable[[], Conversation]
) -> Conversation | Unreadable:
    """Decode one listed conversation; a row that cannot be read is logged with its id and
    reported as `Unreadable`, so one bad row never takes listing down for everybody."""
    try:
        conversation = decode()
        conversation.model_dump_json()  # decodes but cannot be serialized: just as unreadable
    except Exception as exc:
        log.error("skipping unreadable stored conversation %r: %s", conversation_id, exc)
        return Unreadable(conversation_id)
    return conversation


_SURROGATES = range(0xD800, 0xE000)


def listing_cursor(conversation: Conversation) -> str:
    """Cursor after `conversation` in (updated_at desc, id desc) order."""
    return listing_cursor_at(conversation.updated_at, conversation.id)


def listing_cursor_at(updated_at: datetime, conversation_id: str) -> str:
    """Cursor after the conversation at (updated_at, id), read or not."""
    return encode_cursor(updated_at.astimezone(UTC).isoformat(), conversation_id)


def parse_listing_cursor(cursor: str) -> tuple[datetime, str]:
    updated_at, conversation_id = decode_cursor(cursor, 2)
    return decode_cursor_time(updated_at), conversation_id


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (code point
    order), or None if there is none. `id >= prefix AND id < bound` is a prefix match that
    needs no LIKE escaping and uses the primary-key index."""
    while prefix and ord(prefix[-1]) == _MAX_CODEPOINT:
        prefix = prefix[:-1]
    if not prefix:
        return None
    nxt = ord(prefix[-1]) + 1
    if nxt in _SURROGATES:
        nxt = _SURROGATES.stop
    return prefix[:-1] + chr(nxt)
