"""Parse a complete `text/event-stream` body into events (for buffered test responses).

Every event is validated against `RunStreamEvent` of the committed OpenAPI document, so any
test that streams also checks that the events are what the document says."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Event:
    id: str | None
    event: str
    data: dict[str, Any]


def check_event(event: Event) -> None:
    from tests.api.openapi_rules import schema_validator

    frame = {"event": event.event, "id": int(event.id) if event.id else None, "data": event.data}
    schema_validator("RunStreamEvent").validate(frame)


def parse_sse(body: str) -> list[Event]:
    events: list[Event] = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        data: list[str] = []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
        if "event" in fields or data:
            event = Event(
                fields.get("id"), fields.get("event", "message"), json.loads("\n".join(data))
            )
            check_event(event)
            events.append(event)
    return events
