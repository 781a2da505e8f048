"""Summaries of context strategy `summarize`: list, force one now (compact), go back."""

from __future__ import annotations

from fastapi import Response

from app.api.guard import api_router
from app.api.operation import operation
from app.api.params import IfMatchDep, PathId
from app.api.schemas import SummaryList
from app.deps import ManagerDep, PrincipalDep
from app.domain.requests import Compact
from app.domain.summary import Summary
from app.errors import (
    ContextOverflow,
    ConversationNotFound,
    InvalidState,
    MessageNotFound,
    PreconditionFailed,
    ProviderError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderTimeout,
    StoreUnavailable,
    SummaryNotFound,
)

router = api_router(tags=["context"])


@router.post(
    "/conversations/{conversation_id}/compact",
    status_code=201,
    response_model=Summary,
    description="Summarize the current path up to the head now (strategy `summarize`): the "
    "deepest summary on the path is extended by the messages after it, in as many "
    "summarization calls as the input budget needs; the last record is returned. The next "
    "turn sends it instead of the messages it covers. 422 `invalid_state` for another "
    "strategy, a conversation waiting for tool results, or nothing new to summarize; "
    "provider failures answer as a turn's would. Original messages are never deleted.",
    **operation(
        "compactConversation",
        ConversationNotFound,
        ContextOverflow,
        InvalidState,
        MessageNotFound,
        PreconditionFailed,
        ProviderError,
        ProviderRateLimited,
        ProviderTimeout,
        ProviderNotConfigured,
        StoreUnavailable,
    ),
)
async def compact(
    conversation_id: PathId,
    manager: ManagerDep,
    principal: PrincipalDep,
    if_match: IfMatchDep,
    body: Compact | None = None,  # no fields: only refuses unknown ones
) -> Summary:
    return await manager.summaries.compact(principal, conversation_id, if_match)


@router.get(
    "/conversations/{conversation_id}/summaries",
    response_model=SummaryList,
    description="The summaries whose covered message is on the current path, oldest first "
    "(a summary is shared by every branch and fork whose path holds that message).",
    **operation("listSummaries", ConversationNotFound, StoreUnavailable),
)
async def list_summaries(
    conversation_id: PathId, manager: ManagerDep, principal: PrincipalDep
) -> SummaryList:
    return SummaryList(data=await manager.summaries.list(principal, conversation_id))


@router.delete(
    "/conversations/{conversation_id}/summaries/{summary_id}",
    status_code=204,
    description="Stop using a summary: the next turn falls back to an older summary on the "
    "path (or writes a new one if the history does not fit). Messages are untouched.",
    **operation(
        "deleteSummary", ConversationNotFound, SummaryNotFound, PreconditionFailed, StoreUnavailable
    ),
)
async def delete_summary(
    conversation_id: PathId,
    summary_id: PathId,
    manager: ManagerDep,
    principal: PrincipalDep,
    if_match: IfMatchDep,
) -> Response:
    await manager.summaries.delete(principal, conversation_id, summary_id, if_match)
    return Response(status_code=204)
