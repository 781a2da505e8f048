"""`PARLEY_LOG_FORMAT=json` promises one object per line; uvicorn's own lines ("Started
server process", "Shutting down", "Exception in ASGI application") come from loggers that
uvicorn's dictConfig gives a plain-text handler of their own, so they broke that promise."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator

import pytest
from uvicorn.config import LOGGING_CONFIG

from app.logs import ParleyHandler, configure_logging


@pytest.fixture
def uvicorn_logging() -> Iterator[None]:
    """uvicorn's logging as `uvicorn app.main:create_app --factory` sets it up before the
    factory runs; afterwards the loggers are put back as they were."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    names = ["uvicorn", "uvicorn.error", "uvicorn.access"]
    saved = {
        n: (
            list(logging.getLogger(n).handlers),
            logging.getLogger(n).propagate,
            logging.getLogger(n).disabled,
            logging.getLogger(n).level,
        )
        for n in names
    }
    logging.config.dictConfig(LOGGING_CONFIG)
    yield
    for n, (handlers, propagate, disabled, level) in saved.items():
        lg = logging.getLogger(n)
        lg.handlers, lg.propagate, lg.disabled, lg.level = handlers, propagate, disabled, level
    root.handlers, root.level = saved_root


def _root_stream() -> io.StringIO:
    stream = io.StringIO()
    for handler in logging.getLogger().handlers:
        if isinstance(handler, ParleyHandler):
            handler.setStream(stream)
    return stream


def test_json_format_writes_uvicorn_lines_as_json_objects(uvicorn_logging: None) -> None:
    configure_logging("INFO", "json")
    stream = _root_stream()
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("uvicorn").info("Shutting down")
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in lines] == [
        "Started server process [42]",
        "Shutting down",
    ]
    assert json.loads(lines[0])["logger"] == "uvicorn.error"
    # uvicorn's own handler no longer writes a second, plain-text copy.
    assert all(not h.handlers for h in map(logging.getLogger, ["uvicorn", "uvicorn.error"]))


def test_text_format_keeps_uvicorn_own_handler(uvicorn_logging: None) -> None:
    configure_logging("INFO", "text")
    assert logging.getLogger("uvicorn").handlers
    assert logging.getLogger("uvicorn").propagate is False
