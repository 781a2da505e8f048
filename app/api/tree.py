"""The message tree: checkpoints, rollback, branches and the head, forks (DESIGN §6)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Response

from app.api.guard import api_router
from app.api.operation import operation
from app.api.params import IfMatchDep, PathId, set_etag
from app.api.schemas import BranchList, BranchOut, CheckpointList, HeadMoved
from app.deps import ManagerDep, PrincipalDep
from app.domain import Checkpoint, CheckpointKind, Conversation
from app.domain.requests import CreateCheckpoint, ForkConversation, Rollback, SetHead
from app.errors import (
    CheckpointNotFound,
    ConversationBusy,
    ConversationExists,
    ConversationNotFound,
    InvalidCursor,
    MessageNotFound,
    Overloaded,
    PreconditionFailed,
    StoreUnavailable,
    Unauthorized,
    VersionConflict,
)

router = api_router(tags=["tree"])

MOVE_ERRORS = (
    ConversationNotFound,
    MessageNotFound,
    ConversationBusy,
    PreconditionFailed,
    VersionConflict,
    StoreUnavailable,
)


def _moved(conv: Conversation, abandoned: str | None, response: Response) -> HeadMoved:
    set_etag(response, conv)
    return HeadMoved(**conv.model_dump(), abandoned_head_id=abandoned)


@router.post(
    "/conversations/{conversation_id}/checkpoints",
    status_code=201,
    response_model=Checkpoint,
    description="A named pointer to the head, or to `message_id` on the current path. "
    "O(1) at the head; nothing is copied.",
    **operation(
        "createCheckpoint",
        ConversationNotFound,
        MessageNotFound,
        PreconditionFailed,
        StoreUnavailable,
    ),
)
async def create_checkpoint(
    conversation_id: PathId,
    body: CreateCheckpoint,
    manager: ManagerDep,
    principal: PrincipalDep,
    if_match: IfMatchDep,
) -> Checkpoint:
    return await manager.tree.create_checkpoint(principal, conversation_id, body, if_match)


@router.get(
    "/conversations/{conversation_id}/checkpoints",
    response_model=CheckpointList,
    description="Newest first; `kind` filters.",
    **operation("listCheckpoints", ConversationNotFound, InvalidCursor, StoreUnavailable),
)
async def list_checkpoints(
    conversation_id: PathId,
    manager: ManagerDep,
    principal: PrincipalDep,
    kind: CheckpointKind | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> CheckpointList:
    page = await manager.tree.list_checkpoints(
        principal, conversation_id, kind=kind, limit=limit, cursor=cursor
    )
    return CheckpointList(data=page.data, next_cursor=page.next_cursor)


@router.get(
    "/conversations/{conversation_id}/checkpoints/{checkpoint_id}",
    response_model=Checkpoint,
    **operation("getCheckpoint", ConversationNotFound, CheckpointNotFound, StoreUnavailable),
)
async def get_checkpoint(
    conversation_id: PathId, checkpoint_id: PathId, manager: ManagerDep, principal: PrincipalDep
) -> Checkpoint:
    return await manager.tree.get_checkpoint(principal, conversation_id, checkpoint_id)


@router.delete(
    "/conversations/{conversation_id}/checkpoints/{checkpoint_id}",
    status_code=204,
    description="Only the pointer goes; messages still reachable from the conversation stay.",
    **operation(
        "deleteCheckpoint",
        ConversationNotFound,
        CheckpointNotFound,
        PreconditionFailed,
        StoreUnavailable,
    ),
)
async def delete_checkpoint(
    conversation_id: PathId,
    checkpoint_id: PathId,
    manager: ManagerDep,
    principal: PrincipalDep,
    if_match: IfMatchDep,
) -> Response:
    await manager.tree.delete_checkpoint(principal, conversation_id, checkpoint_id, if_match)
    return Response(status_code=204)


@router.post(
    "/conversations/{conversation_id}/rollback",
    response_model=HeadMoved,
    description="Move the head back to a checkpoint or to a message of the current path. "
    "Nothing is deleted: `abandoned_head_id` is listed among the branches and `PUT .../head` "
    "with it restores the old history. 409 `conversation_busy` while a turn runs.",
    **operation("rollbackConversation", *MOVE_ERRORS, CheckpointNotFound, etag=True),
)
async def rollback(
    conversation_id: PathId,
    body: Rollback,
    response: Response,
    manager: ManagerDep,
    principal: PrincipalDep,
    if_match: IfMatchDep,
) -> HeadMoved:
    conv, abandoned = await manager.tree.rollback(principal, conversation_id, body, if_match)
    return _moved(conv, abandoned, response)


@router.put(
    "/conversations/{conversation_id}/head",
    response_model=HeadMoved,
    description="Select a branch: the head becomes `message_id` (a leaf from `GET "
    ".../branches`, or any message on the current path or written by this conversation).",
    **operation("setConversationHead", *MOVE_ERRORS, etag=True),
)
async def set_head(
    conversation_id: PathId,
    body: SetHead,
    response: Response,
    manager: ManagerDep,
    principal: PrincipalDep,
    if_match: IfMatchDep,
) -> HeadMoved:
    conv, abandoned = await manager.tree.set_head(principal, conversation_id, body, if_match)
    return _moved(conv, abandoned, response)


@router.get(
    "/conversations/{conversation_id}/branches",
    response_model=BranchList,
    description="Every leaf reachable from the current path through messages this "
    "conversation wrote (abandoned tails, edits, regenerations), and the head (marked), "
    "oldest first. Reads the whole current path.",
    **operation("listBranches", ConversationNotFound, StoreUnavailable),
)
async def list_branches(
    conversation_id: PathId, manager: ManagerDep, principal: PrincipalDep
) -> BranchList:
    branches = await manager.tree.branches(principal, conversation_id)
    return BranchList(data=[BranchOut(**vars(b)) for b in branches])


@router.post(
    "/conversations/{conversation_id}/fork",
    status_code=201,
    response_model=Conversation,
    description="A new conversation sharing this one's history up to the head, a "
    "checkpoint or a message of the current path (`forked_from`); no message is copied. "
    "A user key may fork only for its own user.",
    **operation(
        "forkConversation",
        ConversationNotFound,
        MessageNotFound,
        CheckpointNotFound,
        ConversationExists,
        Unauthorized,
        Overloaded,
        StoreUnavailable,
        etag=True,
    ),
)
async def fork_conversation(
    conversation_id: PathId,
    body: ForkConversation,
    response: Response,
    manager: ManagerDep,
    principal: PrincipalDep,
) -> Conversation:
    conv = await manager.forks.fork(principal, conversation_id, body)
    response.headers["Location"] = f"/conversations/{conv.id}"
    return set_etag(response, conv)
