"""Identifiers and clocks. ULIDs sort by creation time."""

from __future__ import annotations

from datetime import UTC, datetime

from ulid import ULID


def new_id() -> str:
    return str(ULID())


def utcnow() -> datetime:
    return datetime.now(UTC)
