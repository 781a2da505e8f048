"""The context window: what the next turn would send (dry run)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from app.api.guard import api_router
from app.api.operation import operation
from app.api.params import PathId
from app.deps import ManagerDep, PrincipalDep
from app.domain.context_view import ContextPreview
from app.errors import (
    ContextOverflow,
    ConversationNotFound,
    InvalidRequest,
    InvalidState,
    ProviderNotConfigured,
    StoreUnavailable,
)

router = api_router(tags=["context"])


@router.get(
    "/conversations/{conversation_id}/context",
    response_model=ContextPreview,
    **operation(
        "getConversationContext",
        ConversationNotFound,
        ContextOverflow,
        InvalidRequest,
        InvalidState,
        ProviderNotConfigured,
        StoreUnavailable,
    ),
    description="What the next turn would send, without calling the provider: the token "
    "budget by section, the committed messages included and how many were dropped, and the "
    "exact request body of the conversation's provider. With `content`, the next user "
    "message is that text and the body is byte for byte what `POST .../messages` with the "
    "same content would send; without it, the window of the history alone. 422 "
    "`context_overflow` when the turn could not be built (as the turn would fail).",
)
async def get_context(
    conversation_id: PathId,
    manager: ManagerDep,
    principal: PrincipalDep,
    content: Annotated[str | None, Query(max_length=32_000)] = None,
) -> ContextPreview:
    return await manager.context.preview(principal, conversation_id, content=content)
