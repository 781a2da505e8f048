"""Context items: reference documents and notes sent after the system prompt."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Response

from app.api.guard import api_router
from app.api.operation import operation
from app.api.params import IfMatchDep, PathId
from app.api.schemas import ContextItemList
from app.deps import ManagerDep, PrincipalDep
from app.domain.context_item import ContextItem
from app.domain.requests import AddContextItem, DeleteContextItems
from app.errors import (
    ContextItemNotFound,
    ContextItemTooLarge,
    ConversationNotFound,
    InvalidCursor,
    InvalidRequest,
    MediaNotFound,
    PreconditionFailed,
    StoreUnavailable,
    UnsupportedMedia,
)

router = api_router(tags=["context"])


@router.post(
    "/conversations/{conversation_id}/context",
    status_code=201,
    response_model=ContextItem,
    description="Add a context item: `content` (text or Markdown) or `media_id` (your "
    "uploaded text/plain or text/markdown media, whose text is read once). Every later "
    "turn sends it after the system prompt, within the items' budget share "
    "(`context_policy.max_context_tokens`): pinned items always, unpinned ones newest "
    "first while the share lasts. 413 `context_item_too_large` over "
    "PARLEY_CONTEXT_ITEM_MAX_KB; 422 `unsupported_media` for another media type, or a PDF "
    "with no readable text layer. Forks copy the items; export carries them.",
    **operation(
        "addContextItem",
        ConversationNotFound,
        MediaNotFound,
        ContextItemTooLarge,
        UnsupportedMedia,
        InvalidRequest,
        PreconditionFailed,
        StoreUnavailable,
    ),
)
async def add_context_item(
    conversation_id: PathId,
    body: AddContextItem,
    manager: ManagerDep,
    principal: PrincipalDep,
    if_match: IfMatchDep,
) -> ContextItem:
    return await manager.context_items.add(principal, conversation_id, body, if_match)


@router.get(
    "/conversations/{conversation_id}/context/items",
    response_model=ContextItemList,
    description="Oldest first.",
    **operation("listContextItems", ConversationNotFound, InvalidCursor, StoreUnavailable),
)
async def list_context_items(
    conversation_id: PathId,
    manager: ManagerDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> ContextItemList:
    page = await manager.context_items.list(principal, conversation_id, limit=limit, cursor=cursor)
    return ContextItemList(data=page.data, next_cursor=page.next_cursor)


@router.delete(
    "/conversations/{conversation_id}/context/items",
    status_code=204,
    description="Delete every context item of the conversation at once (204 also when it "
    "had none); the next turn sends none. Its forks keep their copies.",
    **operation("deleteContextItems", ConversationNotFound, PreconditionFailed, StoreUnavailable),
)
async def delete_context_items(
    conversation_id: PathId,
    manager: ManagerDep,
    principal: PrincipalDep,
    if_match: IfMatchDep,
    body: DeleteContextItems | None = None,  # no fields: only refuses unknown ones
) -> Response:
    await manager.context_items.delete_all(principal, conversation_id, if_match)
    return Response(status_code=204)


@router.get(
    "/conversations/{conversation_id}/context/items/{item_id}",
    response_model=ContextItem,
    **operation("getContextItem", ConversationNotFound, ContextItemNotFound, StoreUnavailable),
)
async def get_context_item(
    conversation_id: PathId, item_id: PathId, manager: ManagerDep, principal: PrincipalDep
) -> ContextItem:
    return await manager.context_items.get(principal, conversation_id, item_id)


@router.delete(
    "/conversations/{conversation_id}/context/items/{item_id}",
    status_code=204,
    description="The next turn no longer sends it (its fork copies keep theirs).",
    **operation(
        "deleteContextItem",
        ConversationNotFound,
        ContextItemNotFound,
        PreconditionFailed,
        StoreUnavailable,
    ),
)
async def delete_context_item(
    conversation_id: PathId,
    item_id: PathId,
    manager: ManagerDep,
    principal: PrincipalDep,
    if_match: IfMatchDep,
) -> Response:
    await manager.context_items.delete(principal, conversation_id, item_id, if_match)
    return Response(status_code=204)
