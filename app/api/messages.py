"""Turns (send a message, submit tool results or approvals, edit a message, regenerate a
reply) and reading messages."""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import Query, Request
from fastapi.responses import Response

from app.api.guard import api_router
from app.api.json_response import CompactJSONResponse
from app.api.operation import TURN_ERRORS, operation
from app.api.params import IfMatchDep, PathId
from app.api.schemas import MessageDetail, MessageList, TurnResponse
from app.api.send_body import read_send_body
from app.api.sse import wants_stream
from app.api.sse_response import event_stream
from app.deps import IdempotencyKey, ManagerDep, PrincipalDep
from app.domain.requests import (
    EditMessage,
    OnDisconnect,
    Regenerate,
    SubmitToolApprovals,
    SubmitToolResults,
)
from app.errors import (
    ApprovalConflict,
    ConversationNotFound,
    InvalidCursor,
    MediaNotFound,
    MediaTooLarge,
    MessageNotFound,
    NotAnAssistantMessage,
    NotAUserMessage,
    StoreUnavailable,
    UnsupportedContentType,
    UnsupportedMedia,
)
from app.manager.manager import ConversationManager
from app.manager.runs import StartedRun

router = api_router(tags=["messages"])


class RunOptions(Protocol):
    """What every run-starting body says about its answer."""

    stream: bool
    on_disconnect: OnDisconnect

    @property
    def model_fields_set(self) -> set[str]: ...


async def respond_to_run(
    manager: ConversationManager, request: Request, started: StartedRun, body: RunOptions
) -> Any:
    """The answer of every endpoint that starts a run: its SSE events, or its result.
    With `on_disconnect: "cancel"` a client hanging up before the end cancels the run,
    whichever form it asked for."""
    headers = {"X-Run-Id": started.run_id}
    # only the request that started the run may cancel it by hanging up: a same-key retry
    # attached to it must not cancel what the first request still waits for (review R6)
    cancel_on_disconnect = body.on_disconnect == "cancel" and not started.attached
    if wants_stream(request, body.stream if "stream" in body.model_fields_set else None):
        events = manager.runs.events(
            started.run_id, after=0, cancel_on_disconnect=cancel_on_disconnect
        )
        return await event_stream(
            events,
            ping_s=manager.settings.sse_ping_s,
            run_id=started.run_id,
            streams=manager.streams,
            first_wait_s=manager.settings.store_timeout_s,
        )
    if not cancel_on_disconnect:
        return CompactJSONResponse(await manager.runs.result(started.run_id), headers=headers)
    result = await manager.runs.result_for(started.run_id, _client_gone(request))
    if result is None:  # nobody is there to read an answer
        return Response(status_code=204, headers=headers)
    return CompactJSONResponse(result, headers=headers)


async def _client_gone(request: Request) -> None:
    """Returns once the client has disconnected (its body has been read: the server's
    next message for this request is its disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


SEND_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SendMessage"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "content": {"type": "string"},
                        "metadata": {"type": "string", "description": "a JSON object"},
                        "stream": {"type": "boolean"},
                        "if_busy": {"type": "string", "enum": ["enqueue", "reject", "interrupt"]},
                        "on_disconnect": {"type": "string", "enum": ["continue", "cancel"]},
                        "image": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "audio": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "video": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "document": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        },
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    },
                }
            },
        },
    }
}


@router.post(
    "/conversations/{conversation_id}/messages",
    response_model=TurnResponse,
    **operation(
        "sendMessage",
        *TURN_ERRORS,
        MediaNotFound,
        MediaTooLarge,
        UnsupportedMedia,
        UnsupportedContentType,
        stream="on_request",
        openapi_extra=SEND_BODY,
    ),
)
async def send_message(
    conversation_id: PathId,
    request: Request,
    manager: ManagerDep,
    principal: PrincipalDep,
    if_match: IfMatchDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """JSON (`SendMessage`) or multipart/form-data (fields `content`, `metadata`, files).
    With `If-Match`, every turn (this one, tool results, approvals, edit, regenerate) runs
    only if the conversation, as read when the turn takes its lock (a queued turn: when
    its turn comes), is at a listed ETag; else 412 `precondition_failed` and nothing is
    stored (before the run is created: a problem, also for a stream; found stale only
    once a queued turn has the lock: that run fails with it)."""
    body, form, staged = await read_send_body(request, manager)
    try:
        started = await manager.turns.send_message(
            principal,
            conversation_id,
            body,
            key=idempotency_key,
            staged=staged,
            if_match=if_match,
        )
    finally:
        if form is not None:
            await form.aclose(keep=True)
    return await respond_to_run(manager, request, started, body)


@router.post(
    "/conversations/{conversation_id}/tool-results",
    response_model=TurnResponse,
    **operation("submitToolResults", *TURN_ERRORS, stream="on_request"),
)
async def submit_tool_results(
    conversation_id: PathId,
    body: SubmitToolResults,
    request: Request,
    manager: ManagerDep,
    principal: PrincipalDep,
    if_match: IfMatchDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    started = await manager.turns.submit_tool_results(
        principal, conversation_id, body, key=idempotency_key, if_match=if_match
    )
    return await respond_to_run(manager, request, started, body)


@router.post(
    "/conversations/{conversation_id}/tool-approvals",
    response_model=TurnResponse,
    **operation("submitToolApprovals", *TURN_ERRORS, ApprovalConflict, stream="on_request"),
)
async def submit_tool_approvals(
    conversation_id: PathId,
    body: SubmitToolApprovals,
    request: Request,
    manager: ManagerDep,
    principal: PrincipalDep,
    if_match: IfMatchDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Decide the calls listed in `pending_approvals`: approved ones run (with `arguments`
    instead of the model's when given), rejected ones answer the model `rejected: <reason>`.
    Calls not named stay pending. A call another decision already answered is 409
    `approval_conflict`: when two approvers race exactly one wins."""
    started = await manager.turns.submit_tool_approvals(
        principal, conversation_id, body, key=idempotency_key, if_match=if_match
    )
    return await respond_to_run(manager, request, started, body)


@router.post(
    "/conversations/{conversation_id}/messages/{message_id}/edit",
    response_model=TurnResponse,
    **operation(
        "editMessage",
        *TURN_ERRORS,
        MessageNotFound,
        NotAUserMessage,
        MediaNotFound,
        MediaTooLarge,
        UnsupportedMedia,
        stream="on_request",
    ),
)
async def edit_message(
    conversation_id: PathId,
    message_id: PathId,
    body: EditMessage,
    request: Request,
    manager: ManagerDep,
    principal: PrincipalDep,
    if_match: IfMatchDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """A turn like `sendMessage` whose user message is a new sibling of user message
    `message_id` (same parent): the provider gets the path up to that parent plus the new
    message, and the head moves to the new branch. The old branch stays intact
    (`PUT .../head` selects it again; `sibling_index`/`sibling_count` count the versions).
    Any message of this conversation's tree may be edited, including one its fork origin
    wrote; the new branch belongs to this conversation only. A non-user message is 422
    `not_a_user_message`."""
    started = await manager.turns.edit_message(
        principal, conversation_id, message_id, body, key=idempotency_key, if_match=if_match
    )
    return await respond_to_run(manager, request, started, body)


@router.post(
    "/conversations/{conversation_id}/regenerate",
    response_model=TurnResponse,
    **operation(
        "regenerateReply", *TURN_ERRORS, MessageNotFound, NotAnAssistantMessage, stream="on_request"
    ),
)
async def regenerate(
    conversation_id: PathId,
    body: Regenerate,
    request: Request,
    manager: ManagerDep,
    principal: PrincipalDep,
    if_match: IfMatchDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """A run that generates a new sibling of an assistant reply (`message_id`, default the
    newest assistant message of the current path) from the same context: the path up to
    the reply's parent. When that parent is a tool result, only the reply is generated
    again (the tools are not re-run); regenerating the assistant message that called the
    tools generates the rest of the turn again, tool calls included. `messages` in the
    response holds the new reply (and any tool messages of its rounds), no user message.
    A non-assistant message is 422 `not_an_assistant_message`."""
    started = await manager.turns.regenerate(
        principal, conversation_id, body, key=idempotency_key, if_match=if_match
    )
    return await respond_to_run(manager, request, started, body)


@router.get(
    "/conversations/{conversation_id}/messages",
    response_model=MessageList,
    **operation("listMessages", ConversationNotFound, InvalidCursor, StoreUnavailable),
)
async def list_messages(
    conversation_id: PathId,
    manager: ManagerDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        str | None,
        Query(max_length=200, description="A `next_cursor` (a message id), else 400."),
    ] = None,
) -> MessageList:
    page = await manager.messages.page(principal, conversation_id, limit=limit, before=before)
    return MessageList(data=page.data, next_cursor=page.next_cursor)


@router.get(
    "/conversations/{conversation_id}/messages/{message_id}",
    response_model=MessageDetail,
    **operation("getMessage", ConversationNotFound, MessageNotFound, StoreUnavailable),
)
async def get_message(
    conversation_id: PathId, message_id: PathId, manager: ManagerDep, principal: PrincipalDep
) -> MessageDetail:
    found = await manager.messages.get(principal, conversation_id, message_id)
    return MessageDetail(
        **found.message.model_dump(),
        sibling_ids=found.sibling_ids,
        sibling_index=found.sibling_index,
        sibling_count=found.sibling_count,
        children_ids=found.children_ids,
    )
