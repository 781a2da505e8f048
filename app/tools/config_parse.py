"""Plumbing shared by the RuntimeConfig checks: model validation into `Problem`s, and
the small value checks several sections use."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from app.tools.bindings import Loc, Problem

M = TypeVar("M", bound=BaseModel)

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _message(error: Any) -> str:
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg = str(error.get("msg", "invalid"))
    if kind in ("literal_error", "enum"):
        return f"{msg} (got {error.get('input')!r})"
    return msg


def parse_model(cls: type[M], raw: Any, loc: Loc) -> tuple[M | None, list[Problem]]:
    """Validate `raw` as `cls`; on failure, one `Problem` per error, located under `loc`."""
    try:
        return cls.model_validate(raw), []
    except ValidationError as exc:
        return None, [Problem((*loc, *e["loc"]), _message(e)) for e in exc.errors()]


def timeout_s(value: int | None, loc: Loc, problems: list[Problem]) -> float | None:
    """A `timeout_ms` as seconds; 0 or absent means unset (as in PromptKit)."""
    if value is None or value == 0:
        return None
    if value < 0:
        problems.append(Problem(loc, "must be a positive number of milliseconds"))
        return None
    return value / 1000.0


def go_duration_s(text: str | None, loc: Loc, problems: list[Problem]) -> float | None:
    """A Go duration string (`"90s"`, `"1m30s"`, `"250ms"`) as seconds; None if absent."""
    if text is None or text == "":
        return None
    pos, total = 0, 0.0
    for match in _GO_DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        problems.append(Problem(loc, f"{text!r} is not a duration like '30s', '1m30s', '250ms'"))
        return None
    return total


def strings_without_crlf(
    values: dict[str, str] | None, loc: Loc, problems: list[Problem], *, header_names: bool
) -> dict[str, str]:
    """A string map checked for header safety (no CR/LF; optionally token header names)."""
    out: dict[str, str] = {}
    for key, value in (values or {}).items():
        if header_names and not HEADER_NAME.match(key):
            problems.append(Problem((*loc, key), "is not a valid HTTP header name"))
        if "\r" in value or "\n" in value:
            problems.append(Problem((*loc, key), "must not contain line breaks"))
        out[key] = value
    return out
