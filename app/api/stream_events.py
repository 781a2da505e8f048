"""The SSE events of a run (DESIGN §7) as document models.

OpenAPI 3.1 has no SSE framing, so a `text/event-stream` response's schema describes one
event, as OpenAPI tools (schemathesis, OpenAPI 3.2's `itemSchema`) read a stream:
`{"event", "id", "data"}` with the text of the `event:`, `id:` and `data:` lines.
`RunStreamEvent` is a union discriminated on `event`. These models are the *decoded* form
(`id` a number, `data` the parsed payload); the document carries the wire form, where `data`
is a string of `contentMediaType: application/json` whose `contentSchema` is the payload
component (`app.api.openapi._events_in_wire_form`). The payloads are built by
`app.manager`; the API tests validate every streamed event against the committed document,
so they cannot drift.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from typing_extensions import TypeAliasType

from app.domain import Message, Run, RunError, ToolCall, Usage
from app.domain.model import DomainModel
from app.domain.run import PendingApproval

SSE_DESCRIPTION = """\
Server-Sent Events. Each event is `id: <seq>` (1, 2, … within the run), `event: <type>`,
and one `data:` line of JSON; the schema describes one event as the text of those lines,
`{"event", "id", "data"}` (`RunStreamEvent`, discriminated on `event`; `data` is a JSON
document whose schema is the event's payload component, e.g. `MessageDeltaData`). The
first event is preceded by a `retry:` hint; `: ping` comment lines keep idle connections
open. Exactly one terminal event (`run.completed`, `run.failed`, `run.cancelled` or
`run.requires_action`) ends the stream. Reconnect with `Last-Event-ID` (or `?after=`) to
resume after that event; when the log no longer holds the events asked for, the stream
starts with `run.snapshot`.
"""


class RunCreatedData(DomainModel):
    run: Run


class MessageCreatedData(DomainModel):
    """The user message was accepted, or a tool message was written."""

    message: Message


class MessageDeltaData(DomainModel):
    message_id: str
    delta: str


class ToolCallCreatedData(DomainModel):
    message_id: str
    tool_call: ToolCall


class ToolCallCompletedData(DomainModel):
    tool_call_id: str
    output: Any
    is_error: bool
    latency_ms: float | None = Field(
        default=None, description="Server-side calls; null for a client's result."
    )


class MessageCompletedData(DomainModel):
    """The reply in its final form, identical to what is committed."""

    message: Message


class RunRequiresActionData(DomainModel):
    run: Run
    pending_tool_calls: list[ToolCall]
    pending_approvals: list[PendingApproval]


class RunCompletedData(DomainModel):
    run: Run
    usage: Usage
    cost_usd: float


class RunFailedData(DomainModel):
    run: Run
    error: RunError


class RunCancelledData(DomainModel):
    run: Run


class RunSnapshotData(DomainModel):
    """Stands in for events the log no longer holds: the run and its committed messages."""

    run: Run
    messages: list[Message]


class _Frame(DomainModel):
    id: int = Field(ge=1, description="The `id:` line: the event's sequence number in the run.")


class RunCreatedEvent(_Frame):
    event: Literal["run.created"]
    data: RunCreatedData


class MessageCreatedEvent(_Frame):
    event: Literal["message.created"]
    data: MessageCreatedData


class MessageDeltaEvent(_Frame):
    event: Literal["message.delta"]
    data: MessageDeltaData


class ToolCallCreatedEvent(_Frame):
    event: Literal["tool_call.created"]
    data: ToolCallCreatedData


class ToolCallCompletedEvent(_Frame):
    event: Literal["tool_call.completed"]
    data: ToolCallCompletedData


class MessageCompletedEvent(_Frame):
    event: Literal["message.completed"]
    data: MessageCompletedData


class RunRequiresActionEvent(_Frame):
    event: Literal["run.requires_action"]
    data: RunRequiresActionData


class RunCompletedEvent(_Frame):
    event: Literal["run.completed"]
    data: RunCompletedData


class RunFailedEvent(_Frame):
    event: Literal["run.failed"]
    data: RunFailedData


class RunCancelledEvent(_Frame):
    event: Literal["run.cancelled"]
    data: RunCancelledData


class RunSnapshotEvent(_Frame):
    event: Literal["run.snapshot"]
    data: RunSnapshotData


RunStreamEvent = TypeAliasType(
    "RunStreamEvent",
    Annotated[
        RunCreatedEvent
        | MessageCreatedEvent
        | MessageDeltaEvent
        | ToolCallCreatedEvent
        | ToolCallCompletedEvent
        | MessageCompletedEvent
        | RunRequiresActionEvent
        | RunCompletedEvent
        | RunFailedEvent
        | RunCancelledEvent
        | RunSnapshotEvent,
        Field(discriminator="event"),
    ],
)
