"""Parse a complete `text/event-stream` body into events (for buffered test responses).

Every event is validated against `RunStreamEvent` of the committed OpenAPI document (its
wire form, then its decoded `data` against the payload schema the event names), so any test
that streams also checks that the events are what the document says."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Event:
    id: str | None
    event: str
    data: dict[str, Any]
    raw_data: str = ""


def check_event(event: Event) -> None:
    from tests.api.openapi_rules import committed_document, schema_validator

    frame = {"event": event.event, "id": event.id, "data": event.raw_data}
    schema_validator("RunStreamEvent").validate(frame)
    union = committed_document()["components"]["schemas"]["RunStreamEvent"]
    component = union["discriminator"]["mapping"][event.event].rsplit("/", 1)[-1]
    event_schema = committed_document()["components"]["schemas"][component]
    payload = event_schema["properties"]["data"]["contentSchema"]["$ref"].rsplit("/", 1)[-1]
    schema_validator(payload).validate(event.data)


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
            raw = "\n".join(data)
            event = Event(fields.get("id"), fields.get("event", "message"), json.loads(raw), raw)
            check_event(event)
            events.append(event)
    return events
