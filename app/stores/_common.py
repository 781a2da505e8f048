"""Helpers shared by the store backends (no I/O): listing cursors and prefix ranges."""

from __future__ import annotations

from datetime import UTC, datetime

from app.domain import Conversation
from app.errors import InvalidCursor
from app.stores.base import decode_cursor, encode_cursor

_MAX_CODEPOINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def listing_cursor(conversation: Conversation) -> str:
    """Cursor after `conversation` in (updated_at desc, id desc) order."""
    return encode_cursor(conversation.updated_at.astimezone(UTC).isoformat(), conversation.id)


def parse_listing_cursor(cursor: str) -> tuple[datetime, str]:
    updated_at, conversation_id = decode_cursor(cursor, 2)
    try:
        when = datetime.fromisoformat(updated_at)
    except ValueError as exc:
        raise InvalidCursor("The cursor is not one this service issued.") from exc
    if when.tzinfo is None:
        raise InvalidCursor("The cursor is not one this service issued.")
    return when.astimezone(UTC), conversation_id


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
