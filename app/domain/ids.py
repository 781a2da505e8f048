"""Identifiers and clocks. ULIDs sort by creation time.

Every id the API takes (conversation, user, pack, message, run; body, path or query)
follows one rule, so anything accepted can be addressed again through an ordinary URL:
1-200 characters of `A-Z a-z 0-9 . _ : -`, not starting with `.` (so `.` and `..`, which
URL normalization removes, are impossible). `user:alice:conv:42` is a valid id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field
from ulid import ULID

ID_MAX_LENGTH = 200
ID_PATTERN = r"^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,199}$"
ID_RULE = "1-200 characters of A-Z a-z 0-9 . _ : - , not starting with '.'"
# What `prefix=` may contain: the characters of ids (any leading part of one).
ID_PREFIX_PATTERN = r"^[A-Za-z0-9._:-]{0,200}$"

Id = Annotated[str, Field(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, description=ID_RULE)]


def new_id() -> str:
    return str(ULID())


def utcnow() -> datetime:
    return datetime.now(UTC)
