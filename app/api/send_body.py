"""The body of `POST .../messages`: JSON (`SendMessage`) or `multipart/form-data`.

Multipart fields: `content` (text), `metadata` (a JSON object), `stream`, `if_busy`,
`on_disconnect`, and any number of files. A file's form field names its part type
(`image`, `audio`, `video`, `document`; any other name is `file`, typed by its bytes);
files become media parts after the text, streamed into media staging as they arrive.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import ValidationError

from app.api.guard import is_json_type, parse_json_body
from app.api.multipart import Form, boundary_of, read_form
from app.domain import MediaRef, Part
from app.domain.limits import text_problem
from app.domain.requests import SendMessage
from app.errors import InvalidRequest, MalformedJSON, UnsupportedContentType
from app.manager.manager import ConversationManager
from app.media.base import StagedBlob

PART_FIELDS = {"image", "audio", "video", "document"}


def _schema_error(exc: ValidationError, prefix: list[str | int]) -> Exception:
    items = []
    for e in exc.errors():
        if e.get("type") == "json_invalid":
            return MalformedJSON(f"Request body is not valid JSON: {e.get('msg', '')}".strip())
        items.append({"loc": [*prefix, *e.get("loc", ())], "msg": str(e.get("msg", ""))})
    return InvalidRequest("The request does not match the expected schema.", errors=items)


def validate_json_body(raw: bytes) -> SendMessage:
    """The JSON body under the same boundary rules as every other endpoint (text, depth,
    numbers: `app.api.guard.parse_json_body`), then the schema."""
    if not raw.strip():
        raise InvalidRequest(
            "The request body is missing.", errors=[{"loc": ["body"], "msg": "Field required"}]
        )
    value = parse_json_body(raw)
    try:
        return SendMessage.model_validate(value)
    except ValidationError as exc:
        raise _schema_error(exc, ["body"]) from None


# A multipart field is text: these spellings of a boolean, any other is refused.
FORM_TRUE = frozenset({"1", "true", "yes", "on"})
FORM_FALSE = frozenset({"0", "false", "no", "off"})


def _check_form_text(form: Form) -> None:
    """Multipart text fields follow the text rule too (`metadata` is parsed as JSON below,
    under the same rules)."""
    problems = [
        {"loc": ["body", name], "msg": msg}
        for name, value in form.fields.items()
        if (msg := text_problem(value))
    ]
    if problems:
        raise InvalidRequest("The request contains values that are not allowed.", errors=problems)


def _from_form(form: Form) -> tuple[SendMessage, dict[int, StagedBlob]]:
    _check_form_text(form)
    values: dict[str, Any] = {}
    for name in ("content", "if_busy", "on_disconnect"):
        if name in form.fields:
            values[name] = form.fields[name]
    if "stream" in form.fields:
        flag = form.fields["stream"].strip().lower()
        if flag not in FORM_TRUE | FORM_FALSE:
            raise InvalidRequest(
                "The stream field is true or false.",
                errors=[{"loc": ["body", "stream"], "msg": "Input should be a valid boolean"}],
            )
        values["stream"] = flag in FORM_TRUE
    if "metadata" in form.fields:
        try:
            values["metadata"] = parse_json_body(form.fields["metadata"].encode())
        except MalformedJSON:
            raise InvalidRequest(
                "The metadata field must be a JSON object.",
                errors=[{"loc": ["body", "metadata"], "msg": "invalid JSON"}],
            ) from None
    unknown = sorted(
        set(form.fields) - {"content", "if_busy", "on_disconnect", "stream", "metadata"}
    )
    if unknown:
        raise InvalidRequest(
            f"Unknown form field {unknown[0]!r}.",
            errors=[{"loc": ["body", name], "msg": "unknown field"} for name in unknown],
        )
    parts: list[Part] = []
    staged: dict[int, StagedBlob] = {}
    if form.files:
        text = values.pop("content", None)
        if text:
            parts.append(Part(type="text", text=text))
        for f in form.files:
            kind = f.field if f.field in PART_FIELDS else "file"
            staged[len(parts)] = f.staged
            parts.append(Part(type=kind, media=MediaRef(filename=f.filename)))
        values["parts"] = parts
    try:
        return SendMessage.model_validate(values), staged
    except ValidationError as exc:
        raise _schema_error(exc, ["body"]) from None


async def read_send_body(
    request: Request, manager: ConversationManager
) -> tuple[SendMessage, Form | None, dict[int, StagedBlob]]:
    """The request as a `SendMessage`, plus the form whose files the caller must close."""
    content_type = request.headers.get("content-type", "")
    boundary = boundary_of(content_type)
    if boundary is not None:
        media = manager.media
        form = await read_form(
            request.stream(), boundary, new_blob=media.stage, too_large=media.too_large
        )
        try:
            body, staged = _from_form(form)
        except BaseException:
            await form.aclose(keep=False)
            raise
        return body, form, staged
    base = content_type.split(";", 1)[0].strip().lower()
    raw = await request.body()
    if (base or raw) and not is_json_type(content_type):
        raise UnsupportedContentType(
            f"Send application/json or multipart/form-data, not {base or 'no Content-Type'}.",
            headers={"Accept-Post": "application/json, multipart/form-data"},
        )
    return validate_json_body(raw), None, {}
