"""Path and query parameters that carry ids: one rule for every id (`app.domain.ids`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from app.domain.ids import ID_MAX_LENGTH, ID_PATTERN, ID_PREFIX_PATTERN, ID_RULE

PathId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, description=ID_RULE)]
QueryId = Annotated[
    str | None, Query(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, description=ID_RULE)
]
QueryIdPrefix = Annotated[
    str | None,
    Query(pattern=ID_PREFIX_PATTERN, max_length=ID_MAX_LENGTH, description="Leading part of ids."),
]
