"""Process logging: `PARLEY_LOG_FORMAT=text|json` and the request id on every line.

The request id of the HTTP request being served lives in a `ContextVar`
(`REQUEST_ID`), set by `app.api.request_log`. asyncio copies the context into tasks a
request starts, so a run's lines carry the id of the request that started it. A filter on
the handler copies it onto every record, so any logger's line can be followed back to one
request. Message content and secrets are never logged at INFO by Parley's own loggers.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

REQUEST_ID: ContextVar[str | None] = ContextVar("parley_request_id", default=None)
# The key under which the auth dependency leaves the caller's user id in the request's
# ASGI `state`, for the access line ("service" for a service key).
PRINCIPAL_USER_KEY = "parley_user"

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

# Attributes every LogRecord has; anything else on a record came from `extra=` and is a
# structured field of the line.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    """Stamps `request_id` ("-" outside a request) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `ts`, `level`, `logger`, `message`, `request_id`, the
    `extra=` fields of the call, and `exc` for a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class ParleyHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler `configure_logging` installs (a class of its own so it can be
    found and replaced)."""


def configure_logging(level: str, fmt: LogFormat) -> None:
    """One handler on the root logger (replacing any earlier one of ours), so a second
    app in the same process reconfigures instead of doubling lines."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, ParleyHandler)]:
        root.removeHandler(old)
    handler = ParleyHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Alembic reports every migration step at INFO; start-up says what matters in one line.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    # uvicorn's own access log would duplicate ours (`parley.access`) without the fields.
    logging.getLogger("uvicorn.access").disabled = True
    if fmt == "json":
        # uvicorn's dictConfig gives "uvicorn" a plain-text handler of its own (start-up,
        # shutdown, "Exception in ASGI application"); json promises one object per line,
        # so its lines go through ours instead.
        server = logging.getLogger("uvicorn")
        server.handlers.clear()
        server.propagate = True
