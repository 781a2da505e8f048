"""How `parley chat` prints (`app.cli_chat` reads, sends and follows the stream).

A reply's `message.delta` texts are written to the output as they arrive; a final assistant
message (from `message.completed`, a `run.snapshot` or a non-streaming JSON result) tops up
what its deltas did not print, so a reply is never printed twice; each message ends its own
line. The run's terminal event ends the reply, and any outcome other than `run.completed`
becomes a `ChatError`. Tool calls, re-attach notices and problems go to the error stream,
problems as `error: <code>: <detail>` with one line per validation error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx
from httpx_sse import ServerSentEvent

from app.cli_chat_errors import ChatError

__all__ = ["ChatPrinter", "StreamedTurn", "get_path", "json_object"]


@dataclass
class StreamedTurn:
    """Progress of one streamed run: what is printed, where to resume."""

    run_id: str | None = None
    last_seq: int = 0
    printed: dict[str, str] = field(default_factory=dict)  # message id -> text written
    current: str | None = None  # message whose line is still open
    terminal: ServerSentEvent | None = None
    retry_after: float = 0.0  # what the last transient refusal asked to wait


class ChatPrinter:
    """Writes replies to `stdout`, notices and problems to `stderr`."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self.stdout = stdout
        self.stderr = stderr

    def write(self, turn: StreamedTurn, message_id: str, text: str) -> None:
        if not text:
            return
        if turn.current not in (None, message_id):
            self.end_line(turn)
        turn.current = message_id
        turn.printed[message_id] = turn.printed.get(message_id, "") + text
        self.stdout.write(text)
        self.stdout.flush()

    def top_up(self, turn: StreamedTurn, message: Any) -> None:
        """Print what a final assistant message holds beyond what its deltas printed
        (everything, if it arrived without deltas, e.g. from a snapshot)."""
        if not isinstance(message, dict) or message.get("role") != "assistant":
            return
        message_id, content = message.get("id"), message.get("content")
        if not isinstance(message_id, str) or not isinstance(content, str):
            return
        printed = turn.printed.get(message_id, "")
        if content.startswith(printed):
            self.write(turn, message_id, content[len(printed) :])

    def end_line(self, turn: StreamedTurn) -> None:
        if turn.current is not None:
            self.stdout.write("\n")
            self.stdout.flush()
            turn.current = None

    def tool_call(self, turn: StreamedTurn, name: Any, args: Any) -> None:
        self.end_line(turn)
        self.notice(f"[tool call: {name}({json.dumps(args)})]")

    def notice(self, text: str) -> None:
        """One line on the error stream."""
        self.stderr.write(f"{text}\n")
        self.stderr.flush()

    def finish(self, turn: StreamedTurn, event: ServerSentEvent) -> None:
        """Handle the terminal event: end the reply's line, raise if the run did not
        complete."""
        self.end_line(turn)
        data = json_object(event.data)
        if event.event == "run.completed":
            return
        if event.event == "run.failed":
            raise ChatError(
                str(get_path(data, "error", "code") or "run_failed"),
                str(get_path(data, "error", "detail") or "the run failed"),
            )
        if event.event == "run.cancelled":
            raise ChatError("run_cancelled", "the run was cancelled")
        pending = data.get("pending_tool_calls") or []
        names = ", ".join(str(c.get("name")) for c in pending if isinstance(c, dict))
        raise ChatError(
            "requires_action",
            f"the run waits for client-side tool results ({names or 'unknown tools'}); "
            "parley chat cannot run client-side tools",
        )

    def print_result(self, turn: StreamedTurn, response: httpx.Response) -> None:
        """A non-streaming turn response (from a server that ignored `stream: true`)."""
        try:
            result = response.json()
        except ValueError:
            result = None
        if not isinstance(result, dict):
            raise ChatError("bad_response", "expected an event stream or a JSON turn result")
        self.top_up(turn, result.get("reply"))
        self.end_line(turn)

    def report(self, error: ChatError) -> None:
        self.stdout.flush()
        self.stderr.write(f"error: {error.code}: {error.detail}\n")
        for item in error.errors:
            loc = ".".join(str(p) for p in item.get("loc") or [])
            self.stderr.write(f"  {loc or '(request)'}: {item.get('msg')}\n")
        self.stderr.flush()


def json_object(raw: str) -> dict[str, Any]:
    """An event's data as a JSON object ({} if it is empty, not JSON or not an object)."""
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def get_path(data: Mapping[str, Any], *keys: str) -> Any:
    """`data[k1][k2]...`, None where a level is missing or not an object."""
    value: Any = data
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value
