"""The body of `POST .../messages`: JSON (`SendMessage`) or `multipart/form-data`.

Multipart fields: `content` (text), `metadata` (a JSON object), `stream`, `if_busy`,
`on_disconnect`, and any number of files. A file's form field names its part type
(`image`, `audio`, `video`, `document`; any other name is `file`, typed by its bytes);
files become media parts after the text, streamed into media staging as they arrive.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from app.api.multipart import Form, boundary_of, read_form
from app.domain import MediaRef, Part
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
    if not raw.strip():
        raise InvalidRequest(
            "The request body is missing.", errors=[{"loc": ["body"], "msg": "Field required"}]
        )
    try:
        return SendMessage.model_validate_json(raw)
    except ValidationError as exc:
        raise _schema_error(exc, ["body"]) from None


def _from_form(form: Form) -> tuple[SendMessage, dict[int, StagedBlob]]:
    values: dict[str, Any] = {}
    for name in ("content", "if_busy", "on_disconnect"):
        if name in form.fields:
            values[name] = form.fields[name]
    if "stream" in form.fields:
        values["stream"] = form.fields["stream"].strip().lower() in ("1", "true", "yes", "on")
    if "metadata" in form.fields:
        try:
            values["metadata"] = json.loads(form.fields["metadata"])
        except ValueError:
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
    if base and base != "application/json" and not base.endswith("+json"):
        raise UnsupportedContentType(
            f"Send application/json or multipart/form-data, not {base}.",
            headers={"Accept-Post": "application/json, multipart/form-data"},
        )
    return validate_json_body(await request.body()), None, {}
