"""Conversations: create, list, read, patch, delete; erase a user's data."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response

from app.api.guard import api_router
from app.api.operation import operation
from app.api.params import IfMatchDep, PathId, set_etag
from app.api.schemas import ConversationList, Deleted
from app.deps import IdempotencyKey, ManagerDep, PrincipalDep
from app.domain import Conversation
from app.domain.filters import ConversationFilter, object_filter_problem
from app.domain.limits import METADATA_LIMITS
from app.domain.requests import CreateConversation, PatchConversation
from app.errors import (
    ConversationExists,
    ConversationNotFound,
    IdempotencyKeyReused,
    InvalidCursor,
    InvalidRequest,
    InvalidVariables,
    NotFound,
    Overloaded,
    PackNotFound,
    PreconditionFailed,
    PromptNotFound,
    StoreUnavailable,
    UnresolvedPlaceholder,
    VersionConflict,
)

router = api_router(tags=["conversations"])

METADATA_PREFIX = "metadata."


def metadata_filters(request: Request) -> dict[str, str]:
    """`metadata.KEY=VALUE` query parameters, within the metadata caps (`app.domain.limits`)."""
    metadata = {
        key[len(METADATA_PREFIX) :]: value
        for key, value in request.query_params.items()
        if key.startswith(METADATA_PREFIX) and len(key) > len(METADATA_PREFIX)
    }
    if len(metadata) > METADATA_LIMITS.max_keys or any(
        len(k) > METADATA_LIMITS.max_key_chars for k in metadata
    ):
        raise InvalidRequest(
            "Too many or too long metadata filters.",
            errors=[
                {
                    "loc": ["query", "metadata"],
                    "msg": f"at most {METADATA_LIMITS.max_keys} keys of at most "
                    f"{METADATA_LIMITS.max_key_chars} characters",
                }
            ],
        )
    for key, value in metadata.items():
        problem = object_filter_problem(value)
        if problem is not None:
            raise InvalidRequest(
                "A metadata filter names an object or array value.",
                errors=[{"loc": ["query", METADATA_PREFIX + key], "msg": problem}],
            )
    return metadata


@router.post(
    "/conversations",
    status_code=201,
    response_model=Conversation,
    **operation(
        "createConversation",
        Overloaded,
        PackNotFound,
        ConversationExists,
        PromptNotFound,
        InvalidVariables,
        UnresolvedPlaceholder,
        IdempotencyKeyReused,
        StoreUnavailable,
        etag=True,
    ),
)
async def create_conversation(
    body: CreateConversation,
    response: Response,
    manager: ManagerDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> Conversation:
    conv = await manager.conversations.create(principal, body, idempotency_key=idempotency_key)
    response.headers["Location"] = f"/conversations/{conv.id}"
    return set_etag(response, conv)


@router.get(
    "/conversations",
    response_model=ConversationList,
    **operation("listConversations", InvalidCursor, StoreUnavailable),
    description="Filter with `user_id`, `prefix` (of the id), `pack_id` and any number of "
    "`metadata.KEY=VALUE` parameters; newest activity first.",
)
async def list_conversations(
    request: Request,
    manager: ManagerDep,
    principal: PrincipalDep,
    user_id: PathId | None = None,
    prefix: Annotated[str | None, Query(max_length=200)] = None,
    pack_id: PathId | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> ConversationList:
    metadata = metadata_filters(request)
    flt = ConversationFilter(user_id=user_id, prefix=prefix, pack_id=pack_id, metadata=metadata)
    page = await manager.conversations.list(principal, flt, limit=limit, cursor=cursor)
    return ConversationList(data=page.data, next_cursor=page.next_cursor)


@router.get(
    "/conversations/{conversation_id}",
    response_model=Conversation,
    **operation("getConversation", ConversationNotFound, StoreUnavailable, etag=True),
)
async def get_conversation(
    conversation_id: PathId, response: Response, manager: ManagerDep, principal: PrincipalDep
) -> Conversation:
    conv = await manager.conversations.get(principal, conversation_id, live_status=True)
    return set_etag(response, conv)


@router.patch(
    "/conversations/{conversation_id}",
    response_model=Conversation,
    **operation(
        "updateConversation",
        ConversationNotFound,
        PreconditionFailed,
        VersionConflict,
        InvalidVariables,
        UnresolvedPlaceholder,
        StoreUnavailable,
        etag=True,
    ),
)
async def patch_conversation(
    conversation_id: PathId,
    body: PatchConversation,
    response: Response,
    manager: ManagerDep,
    principal: PrincipalDep,
    if_match: IfMatchDep,
) -> Conversation:
    conv = await manager.conversations.patch(principal, conversation_id, body, if_match=if_match)
    return set_etag(response, conv)


@router.delete(
    "/conversations/{conversation_id}",
    status_code=204,
    **operation("deleteConversation", ConversationNotFound, PreconditionFailed, StoreUnavailable),
)
async def delete_conversation(
    conversation_id: PathId, manager: ManagerDep, principal: PrincipalDep, if_match: IfMatchDep
) -> Response:
    await manager.conversations.delete(principal, conversation_id, if_match=if_match)
    return Response(status_code=204)


@router.delete(
    "/users/{user_id}/conversations",
    response_model=Deleted,
    description="Erase every conversation of the user. A user key may erase only its own "
    "user (another user's id is a 404 `not_found`, like every cross-user call).",
    **operation("deleteUserConversations", NotFound, StoreUnavailable),
)
async def delete_user_conversations(
    user_id: PathId, manager: ManagerDep, principal: PrincipalDep
) -> Deleted:
    return Deleted(deleted=await manager.conversations.delete_user(principal, user_id))
