"""Streaming `multipart/form-data` reading: files go chunk by chunk into media staging
(never whole in memory), small text fields are collected.

Built on `python_multipart`'s push parser (the one Starlette uses): its callbacks only
record what arrived; after each network chunk the file data recorded is written to the
current file's `StagedBlob`, off the event loop (`StagedBlob.write`).
"""

from __future__ import annotations

import contextlib
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.errors import InvalidRequest
from app.media.base import BlobTooLarge, StagedBlob

MAX_FIELD_BYTES = 1 << 20  # all text fields together
MAX_FILES = 20


@dataclass
class FormFile:
    field: str
    filename: str | None
    content_type: str | None
    staged: StagedBlob


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[FormFile] = field(default_factory=list)

    async def aclose(self, *, keep: bool) -> None:
        for f in self.files:
            await f.staged.close(keep=keep)


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    data: list[bytes] = field(default_factory=list)
    file: FormFile | None = None
    counted: int = 0


def safe_filename(raw: bytes) -> str | None:
    """A client's file name as something safe to store and show: the last path component
    (either slash), no control characters (NUL, CR/LF, escapes), undecodable bytes
    dropped, at most 255 characters; None if nothing is left. It is only ever a label:
    no file name becomes part of a storage location."""
    text = raw.decode("utf-8", "ignore").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    text = text.strip()[:255].strip()
    return text or None


def _is_file(part: _Part) -> bool:
    """A part is a file if it names a file name (even an empty one) or carries binary
    content by its type; other parts are text fields."""
    if part.filename is not None:
        return True
    ctype = part.headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    return ctype.startswith((b"application/octet", b"image/", b"audio/", b"video/"))


def boundary_of(content_type: str) -> bytes | None:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        return None
    return options.get(b"boundary") or None


def _bad(msg: str) -> InvalidRequest:
    return InvalidRequest(
        f"Malformed multipart body: {msg}", errors=[{"loc": ["body"], "msg": msg}]
    )


async def read_form(
    chunks: AsyncIterator[bytes],
    boundary: bytes,
    *,
    new_blob: Callable[[], StagedBlob],
    too_large: Callable[[], Exception],
) -> Form:
    """Parse the body; every file part is streamed into a fresh `new_blob()`. On any error
    the staged files are discarded. The caller closes the returned form's files."""
    form = Form()
    done: list[_Part] = []
    current: list[_Part] = []
    header_field = bytearray()
    header_value = bytearray()
    field_bytes = 0

    def on_part_begin() -> None:
        current.append(_Part())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        current[-1].headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        part = current[-1]
        _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_name = options.get(b"filename")
        part.filename = None if raw_name is None else (safe_filename(raw_name) or "")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        current[-1].data.append(data[start:end])

    def on_part_end() -> None:
        done.append(current.pop())

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )

    async def drain(part: _Part) -> None:
        nonlocal field_bytes
        if not _is_file(part):
            size = sum(len(d) for d in part.data)
            field_bytes += size - part.counted
            part.counted = size
            if field_bytes > MAX_FIELD_BYTES:
                raise _bad(f"text fields over {MAX_FIELD_BYTES} bytes")
            return
        if part.file is None:
            if len(form.files) >= MAX_FILES:
                raise _bad(f"more than {MAX_FILES} files")
            ctype = part.headers.get(b"content-type")
            part.file = FormFile(
                field=part.name,
                filename=part.filename or None,
                content_type=ctype.decode("latin-1") if ctype else None,
                staged=new_blob(),
            )
            form.files.append(part.file)
        data, part.data = part.data, []
        for chunk in data:
            await part.file.staged.write(chunk)

    try:
        async for chunk in chunks:
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise _bad(str(exc)) from None
            for part in [*current, *done]:
                await drain(part)
            for part in done:
                if part.file is None:
                    if part.name in form.fields:  # keeping one would drop the other silently
                        raise InvalidRequest(
                            f"The form field {part.name!r} is given more than once.",
                            errors=[{"loc": ["body", part.name], "msg": "duplicate field"}],
                        )
                    form.fields[part.name] = b"".join(part.data).decode("utf-8", "replace")
            done.clear()
        with contextlib.suppress(MultipartParseError):
            parser.finalize()
        if current:
            raise _bad("the body ended inside a part")
    except BlobTooLarge:
        await form.aclose(keep=False)
        raise too_large() from None
    except BaseException:
        await form.aclose(keep=False)
        raise
    return form
