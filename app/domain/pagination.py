"""A page of results with an opaque cursor to the next one."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Generic, TypeVar

from pydantic import BaseModel

from app.errors import InvalidCursor

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = None


def encode_cursor(*parts: str) -> str:
    """Opaque cursor from string parts (the sort key of the last item returned)."""
    raw = json.dumps(list(parts), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[str]:
    """Inverse of `encode_cursor`; a malformed cursor is the client's error (400)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor("The cursor is not one this service issued.") from exc
    if (
        not isinstance(parts, list)
        or len(parts) != arity
        or not all(isinstance(p, str) for p in parts)
    ):
        raise InvalidCursor("The cursor is not one this service issued.")
    return parts


def decode_cursor_time(text: str) -> datetime:
    """A cursor's timestamp as an aware UTC datetime. Anything else is a cursor we did not
    issue (400): not ISO 8601, no offset (comparing it with stored times is a TypeError), or
    an offset that pushes it past the ends of the datetime range in UTC
    (`0001-01-01T00:00:00+14:00`: an OverflowError, outside tester T12)."""
    try:
        when = datetime.fromisoformat(text)
        if when.tzinfo is None:
            raise ValueError("no UTC offset")
        return when.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidCursor("The cursor is not one this service issued.") from exc


def encode_item_cursor(scope: str, created_at: datetime, item_id: str) -> str:
    """The cursor after an item of a (created_at, id)-ordered listing of one `scope` (the
    conversation the listing is of): bound to it, so it cannot page another one."""
    return encode_cursor(scope, created_at.isoformat(), item_id)


def decode_item_cursor(cursor: str, scope: str) -> tuple[datetime, str]:
    """The (created_at, id) an `encode_item_cursor` cursor of `scope` points after. A
    cursor of another scope (e.g. another conversation's listing) is the client's error:
    without the check it paged whatever that one's times happened to select."""
    issued_for, when, item_id = decode_cursor(cursor, 3)
    if issued_for != scope:
        raise InvalidCursor("The cursor was issued for another listing; pass this one's.")
    return decode_cursor_time(when), item_id
