"""Path and query parameters that carry ids: one rule for every id (`app.domain.ids`);
and a conversation's entity tag over HTTP: the `If-Match` header of the operations that
change a conversation, the `ETag` header of those that answer with one (`set_etag`; each
declares it with `operation(..., etag=True)`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request, Response

from app.domain import Conversation
from app.domain.ids import ID_MAX_LENGTH, ID_PATTERN, ID_PREFIX_PATTERN, ID_RULE
from app.domain.incarnation import entity_tag
from app.domain.preconditions import IfMatch, parse_if_match

PathId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, description=ID_RULE)]
QueryId = Annotated[
    str | None, Query(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, description=ID_RULE)
]
QueryIdPrefix = Annotated[
    str | None,
    Query(pattern=ID_PREFIX_PATTERN, max_length=ID_MAX_LENGTH, description="Leading part of ids."),
]


async def _if_match(
    request: Request,
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description="`*`, or one or more of the conversation's ETags "
            '(`"3.9f86d081884c"`, or its bare version `"3"`; a list: `"3.9f86d081884c", '
            '"4.9f86d081884c"`): the operation is performed only if the current ETag or '
            "version is listed (a weak tag never matches; a bare version also matches a "
            "conversation created again under a deleted one's id, the ETag does not); 412 "
            "`precondition_failed` otherwise, and nothing changes.",
        ),
    ] = None,
) -> IfMatch | None:
    """Every field line of the header (FastAPI's parameter is the first line alone)."""
    return parse_if_match(request.headers.getlist("if-match") if if_match is not None else [])


IfMatchDep = Annotated[IfMatch | None, Depends(_if_match)]


def set_etag(response: Response, conv: Conversation) -> Conversation:
    """Put `conv`'s ETag (`"<version>.<incarnation>"`, `entity_tag`) on `response`; returns
    `conv` (the body)."""
    response.headers["ETag"] = f'"{entity_tag(conv)}"'
    return conv
