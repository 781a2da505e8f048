"""What `parley chat` reports when a turn or the service fails (`app.cli_chat`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

# Statuses after which no other line can succeed: stop instead of reading more input.
FATAL_STATUSES = frozenset({401, 403, 404, 410})


class ChatError(Exception):
    """A problem reported by the service (problem+json) or met on the way to it."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        fatal: bool = False,
        errors: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.fatal = fatal
        self.errors = list(errors)

    @classmethod
    def from_response(cls, response: httpx.Response) -> ChatError:
        """Build from an error response (read it first); problem+json when it is one."""
        try:
            body = response.json()
        except ValueError:
            body = None
        fatal = response.status_code in FATAL_STATUSES
        if isinstance(body, dict) and isinstance(body.get("code"), str):
            errors = body.get("errors")
            items = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
            return cls(
                body["code"],
                str(body.get("detail") or body.get("title") or response.reason_phrase),
                fatal=fatal,
                errors=items,
            )
        text = response.text.strip()[:200] or response.reason_phrase
        return cls(f"http_{response.status_code}", text, fatal=fatal)

    @classmethod
    def from_transport(cls, exc: httpx.TransportError, url: str) -> ChatError:
        reason = str(exc) or type(exc).__name__
        return cls("unreachable", f"cannot talk to {url}: {reason}", fatal=True)
