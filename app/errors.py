"""One error hierarchy for the whole service.

Every error a client can cause is a `ParleyError` subclass that knows its HTTP status and its
stable `code` (the DESIGN §6 contract). Layers below the API raise these directly; the
single handler installed by `app.error_handlers.install_error_handlers` turns them into
`application/problem+json`. Anything else that escapes is a bug and becomes a 500
`internal_error` without leaking details.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from app.unstorable import storable_text

PROBLEM_JSON = "application/problem+json"


class ParleyError(Exception):
    """Base class: `status` and `code` are the contract; `detail` is for humans."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        # storable: a detail may quote a provider's or a tool's text (review R12), and a
        # failed run's record keeps it (`problem_of`)
        self.detail = storable_text(detail)
        self.errors = [dict(e) for e in errors] if errors else None
        self.headers = dict(headers) if headers else {}
        self.extra = dict(extra) if extra else {}

    def to_problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://parley.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


# --- 400 / 401 ---------------------------------------------------------------------------


class MalformedJSON(ParleyError):
    status, code, title = 400, "malformed_json", "Malformed JSON body"


class InvalidRequest(ParleyError):
    status, code, title = 422, "validation_error", "Request validation failed"


class ContextItemsFull(InvalidRequest):
    """A store refused a context item: its conversation already holds the most allowed."""


class CORSRejected(ParleyError):
    """A CORS preflight from an origin, method or header set that is not allowed."""

    status, code, title = 400, "cors_rejected", "Cross-origin request not allowed"


class InvalidCursor(ParleyError):
    status, code, title = 400, "invalid_cursor", "Invalid pagination cursor"


class UnsupportedContentType(ParleyError):
    status, code, title = 415, "unsupported_media_type", "Unsupported request content type"


class Unauthorized(ParleyError):
    status, code, title = 401, "unauthorized", "Missing or invalid API key"


class Forbidden(ParleyError):
    """The key is valid but its role may not do this (a `user` key uploading a pack)."""

    status, code, title = 403, "forbidden", "This API key may not do this"


# --- 404 ---------------------------------------------------------------------------------


class NotFound(ParleyError):
    status, code, title = 404, "not_found", "Not found"


class PackNotFound(NotFound):
    code, title = "pack_not_found", "PromptPack not found"


class ConversationNotFound(NotFound):
    code, title = "conversation_not_found", "Conversation not found"


class MessageNotFound(NotFound):
    code, title = "message_not_found", "Message not found"


class RunNotFound(NotFound):
    code, title = "run_not_found", "Run not found"


class CheckpointNotFound(NotFound):
    code, title = "checkpoint_not_found", "Checkpoint not found"


class SummaryNotFound(NotFound):
    code, title = "summary_not_found", "Summary not found"


class ContextItemNotFound(NotFound):
    code, title = "context_item_not_found", "Context item not found"


class MediaNotFound(NotFound):
    """Unknown media id, or another user's (no existence leak)."""

    code, title = "media_not_found", "Media not found"


# --- 409 / 412 ---------------------------------------------------------------------------


class Conflict(ParleyError):
    status, code, title = 409, "conflict", "Conflict"


class PackExists(Conflict):
    code, title = "pack_exists", "PromptPack version already loaded with different content"


class ConversationExists(Conflict):
    code, title = "conversation_exists", "Conversation already exists"


class ConversationBusy(Conflict):
    code, title = "conversation_busy", "Conversation is running another turn"


class ApprovalConflict(Conflict):
    """Another decision (possibly on another instance) already answered the call."""

    code, title = "approval_conflict", "No approval pending for this tool call"


class HeadConflict(Conflict):
    """The head moved between read and commit (compare-and-set failed)."""

    code, title = "head_conflict", "Conversation head moved"


class VersionConflict(Conflict):
    """Optimistic concurrency failed inside the service (retried internally)."""

    code, title = "version_conflict", "Conversation was modified concurrently"


class RunCancelled(Conflict):
    code, title = "run_cancelled", "The run was cancelled"


class PreconditionFailed(ParleyError):
    status, code, title = 412, "precondition_failed", "If-Match does not match the version"


# --- 413 / 415 / 422 ---------------------------------------------------------------------


class MessageTooLarge(ParleyError):
    status, code, title = 413, "message_too_large", "Message too large"


class MediaTooLarge(ParleyError):
    """A media part over the prompt's `max_size_mb` or the service's `PARLEY_MEDIA_MAX_MB`."""

    status, code, title = 413, "media_too_large", "Media too large"


class ContextItemTooLarge(ParleyError):
    """A context item's text over `PARLEY_CONTEXT_ITEM_MAX_KB`."""

    status, code, title = 413, "context_item_too_large", "Context item too large"


class RangeNotSatisfiable(ParleyError):
    status, code, title = 416, "range_not_satisfiable", "Range not satisfiable"


class JsonTooDeep(ParleyError):
    status, code, title = 422, "json_too_deep", "JSON body nested too deep"


class Unprocessable(ParleyError):
    status, code, title = 422, "unprocessable", "Unprocessable request"


class InvalidPack(Unprocessable):
    code, title = "invalid_pack", "Invalid PromptPack"


class PromptNotFound(Unprocessable):
    code, title = "prompt_not_found", "Prompt not found in pack"


class InvalidVariables(Unprocessable):
    code, title = "invalid_variables", "Missing or invalid variables"


class UnresolvedPlaceholder(Unprocessable):
    code, title = "unresolved_placeholder", "Template placeholder has no value"


class IdempotencyKeyReused(Unprocessable):
    code, title = "idempotency_key_reused", "Idempotency-Key was used with a different request"


class ContextOverflow(Unprocessable):
    code, title = "context_overflow", "Conversation does not fit the context window"


class UnsupportedMedia(Unprocessable):
    """A media part the prompt's `media` config, the service or the provider does not take."""

    code, title = "unsupported_media", "Unsupported media"


class NotAUserMessage(Unprocessable):
    """Only a user message is edited; an assistant reply is regenerated instead."""

    code, title = "not_a_user_message", "Only user messages can be edited"


class NotAnAssistantMessage(Unprocessable):
    code, title = "not_an_assistant_message", "Only assistant replies can be regenerated"


class InvalidState(Unprocessable):
    code, title = "invalid_state", "Operation not allowed in the conversation's state"


# --- 429 / 5xx ---------------------------------------------------------------------------


class TooManyExecutions(ParleyError):
    status, code, title = 429, "too_many_executions", "Too many concurrent runs"


class StoreUnavailable(ParleyError):
    """The store or the coordination backend did not answer in time (down, partitioned, or
    every pooled connection busy past `PARLEY_STORE_TIMEOUT_S`): retry after `Retry-After`
    (with an `Idempotency-Key` where a write must happen exactly once)."""

    status, code, title = 503, "store_unavailable", "State store unavailable"

    def __init__(self, detail: str, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"Retry-After": "1"})
        super().__init__(detail, **kwargs)


class Overloaded(ParleyError):
    """More requests than the instance admits at once waited longer than
    `PARLEY_ADMISSION_TIMEOUT_S` for a slot (`app.manager.admission`): retry after
    `Retry-After`."""

    status, code, title = 503, "overloaded", "Instance overloaded"


class TurnLockLost(ParleyError):
    """The run's turn lock expired (its renewals failed) before the commit: another turn
    may run, so nothing was committed; retrying is safe."""

    status, code, title = 503, "turn_lock_lost", "Turn lock lost before commit"


class ProviderNotConfigured(ParleyError):
    """The conversation's provider is not configured on this instance (another instance
    of a mixed deployment may have it)."""

    status, code, title = 503, "provider_not_configured", "Provider not configured"


class InstanceLost(ParleyError):
    """The instance executing the run died (its liveness lease expired) before the run
    ended; nothing was committed and its idempotency key is free again: retry."""

    status, code, title = 503, "instance_lost", "The instance running the turn was lost"


class NotReady(ParleyError):
    """`/readyz`: the process runs but cannot serve conversations yet (no packs loaded)."""

    status, code, title = 503, "not_ready", "Service not ready"


class ShuttingDown(ParleyError):
    """The instance is draining for a shutdown (SIGTERM): it takes no new turns. Retry
    (another instance, or this one after its restart)."""

    status, code, title = 503, "shutting_down", "The instance is shutting down"

    def __init__(self, detail: str, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"Retry-After": "1"})
        super().__init__(detail, **kwargs)


class ProviderError(ParleyError):
    """The LLM provider failed. `retryable` says whether a retry could help."""

    status, code, title = 502, "provider_error", "LLM provider error"

    def __init__(self, detail: str, *, retryable: bool = False, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retryable = retryable


class ProviderTimeout(ProviderError):
    status, code, title = 504, "provider_timeout", "LLM provider timed out"


class ProviderRateLimited(ProviderError):
    status, code, title = 429, "rate_limited", "LLM provider rate limit"


def _all_subclasses(cls: type[ParleyError]) -> list[type[ParleyError]]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


# Codes of errors raised by the HTTP layer itself (routing, content negotiation) rather than
# by a `ParleyError`; `http_error` covers any other status Starlette produces.
HTTP_ERROR_CODES: dict[int, str] = {
    404: "not_found",
    405: "method_not_allowed",
    415: "unsupported_media_type",
}
HTTP_ERROR_FALLBACK = "http_error"


def documented_codes() -> list[str]:
    """Every `code` a problem response can carry: the codes of the `ParleyError` classes
    (defined anywhere in `app`, once imported) plus the HTTP-level codes. The OpenAPI
    `Problem.code` enum and the README's error table are checked against this."""
    classes: list[type[ParleyError]] = [ParleyError, *_all_subclasses(ParleyError)]
    codes = {cls.code for cls in classes}
    return sorted(codes | set(HTTP_ERROR_CODES.values()) | {HTTP_ERROR_FALLBACK})


def error_for_code(code: str, detail: str, **details: Any) -> ParleyError:
    """Rebuild the error a run failed with from its stored code (the run may have executed
    on another instance), so a non-streaming client gets the right status. `details`:
    `errors`, `headers`, `extra` as `ParleyError` takes them."""
    for cls in _all_subclasses(ParleyError):
        if cls.code == code:
            return cls(detail, **details)
    return ParleyError(detail, **details)


def problem_of(err: ParleyError) -> dict[str, Any]:
    """Everything needed to answer with `err` again later (JSON): `error_from_problem`."""
    return {
        "code": err.code,
        "detail": err.detail,
        "errors": err.errors,
        "headers": err.headers,
        "extra": err.extra,
    }


def error_from_problem(problem: Mapping[str, Any]) -> ParleyError:
    """The error `problem_of` recorded: same status, code, headers and extra fields."""
    return error_for_code(
        str(problem.get("code", "internal_error")),
        str(problem.get("detail", "")),
        errors=problem.get("errors") or None,
        headers=problem.get("headers") or None,
        extra=problem.get("extra") or None,
    )
