"""`is_json_type`: which Content-Type values are JSON, parsed once per distinct value (the
email package's header parsing ran twice on every JSON request)."""

from __future__ import annotations

from typing import Any

import pytest

from app.api import guard


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("APPLICATION/JSON", True),
        ("application/merge-patch+json", True),
        ("application/problem+json;charset=UTF-8", True),
        ("text/json", False),
        ("application/jsonx", False),
        ("text/plain", False),
        ("multipart/form-data; boundary=x", False),
        ("", False),
        (None, False),
    ],
)
def test_json_content_types(value: str | None, expected: bool) -> None:
    assert guard.is_json_type(value) is expected


def test_a_value_seen_before_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[Any] = []
    real = guard.MimeHeader

    def counting() -> Any:
        parsed.append(1)
        return real()

    monkeypatch.setattr(guard, "MimeHeader", counting)
    value = "application/json; charset=utf-8; x-test=once"
    assert guard.is_json_type(value) and guard.is_json_type(value)
    assert len(parsed) <= 1
