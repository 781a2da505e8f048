"""How an endpoint declares itself in the OpenAPI document (the pattern: `app/api/__init__.py`).

`operation(...)` gives a router decorator its `operationId` and the errors that only the
endpoint knows about (not found, conflicts, provider failures...). The errors every endpoint
of a kind can produce are implied and added when the document is built
(`app/api/openapi.py`): a bearer key → 401; a body → 413, 422 (a JSON body also 400, 415); any
parameter → 422. Each status becomes one `application/problem+json` response whose description names
the codes it can carry.
"""

from __future__ import annotations

from typing import Any, Literal

from starlette.responses import Response

from app.api.sse_response import MEDIA_TYPE
from app.api.stream_events import RunStreamEvent
from app.errors import (
    ContextOverflow,
    ConversationBusy,
    ConversationNotFound,
    HeadConflict,
    IdempotencyKeyReused,
    InstanceLost,
    InvalidRequest,
    InvalidState,
    MalformedJSON,
    MessageTooLarge,
    Overloaded,
    ParleyError,
    PreconditionFailed,
    ProviderError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderTimeout,
    RunCancelled,
    ShuttingDown,
    StoreUnavailable,
    TooManyExecutions,
    TurnLockLost,
    Unauthorized,
    UnsupportedContentType,
)

ERRORS_KEY = "x-parley-errors"
STREAM_KEY = "x-parley-stream"
ETAG_KEY = "x-parley-etag"

# Implied errors (see the module docstring).
AUTH_ERRORS: tuple[type[ParleyError], ...] = (Unauthorized,)
BODY_ERRORS: tuple[type[ParleyError], ...] = (MessageTooLarge, InvalidRequest)
# `app.api.guard` refuses a body of another type (or of several) than JSON: 415.
JSON_BODY_ERRORS: tuple[type[ParleyError], ...] = (MalformedJSON, UnsupportedContentType)
PARAMETER_ERRORS: tuple[type[ParleyError], ...] = (InvalidRequest,)

# What any endpoint that starts a run (send, tool results, edit, regenerate, ...) can
# answer: admission, idempotency, `If-Match` and `if_busy`, plus every way the run itself
# can fail (a non-streaming call answers with the run's error).
TURN_ERRORS: tuple[type[ParleyError], ...] = (
    ConversationNotFound,
    ConversationBusy,
    PreconditionFailed,
    RunCancelled,
    HeadConflict,
    IdempotencyKeyReused,
    MessageTooLarge,
    InvalidState,
    ContextOverflow,
    TooManyExecutions,
    Overloaded,
    ProviderRateLimited,
    ProviderError,
    ProviderTimeout,
    StoreUnavailable,
    TurnLockLost,
    ProviderNotConfigured,
    InstanceLost,
    ShuttingDown,
)

Stream = Literal["never", "on_request", "always"]


class EventStreamDocumented(Response):
    """What FastAPI documents of a streamed answer: its media type (the answer itself is
    `app.api.sse_response.RunEventStream`, returned by the endpoint)."""

    media_type = MEDIA_TYPE


def operation(
    operation_id: str,
    *errors: type[ParleyError],
    stream: Stream = "never",
    responses: dict[int | str, dict[str, Any]] | None = None,
    openapi_extra: dict[str, Any] | None = None,
    etag: bool = False,
) -> dict[str, Any]:
    """Keyword arguments for `@router.<method>(path, ..., **operation(...))`.

    `operation_id` is camelCase, verb first (`listConversations`, `sendMessage`): generated
    clients name their methods after it. `errors` are the `ParleyError` classes this
    endpoint raises beyond the implied ones. `stream="on_request"`: the 200 is JSON, or the
    run's SSE events when asked for; `"always"`: the 200 is only SSE. `responses`: other
    success responses (FastAPI's format), never errors. `openapi_extra`: merged into the
    operation (a request body the endpoint parses itself, say; its models are then listed
    in `install_openapi(..., request_models=...)`). `etag=True`: its success response
    carries the conversation's `ETag` header (`app.api.params.set_etag`).
    """
    if responses and any(int(status) >= 400 for status in responses):
        raise ValueError("declare errors as ParleyError classes, not as responses")
    declared = sorted({(e.status, e.code) for e in errors})
    kwargs: dict[str, Any] = {
        "operation_id": operation_id,
        "openapi_extra": {
            **(openapi_extra or {}),
            ERRORS_KEY: [list(pair) for pair in declared],
            STREAM_KEY: stream,
            ETAG_KEY: etag,
        },
        "responses": dict(responses or {}),
    }
    if stream == "always":
        # FastAPI then generates the event schemas with the same component names as the
        # rest of the document; `app/api/openapi.py` shapes the response.
        kwargs["response_class"] = EventStreamDocumented
        kwargs["responses"][200] = {"model": RunStreamEvent}
    return kwargs
