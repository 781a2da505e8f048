"""Media: upload (streamed) and download (owner only; ETag, Range, nosniff)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from app.api.guard import api_router, is_json_type
from app.api.multipart import boundary_of, read_form
from app.api.operation import operation
from app.deps import ManagerDep, PrincipalDep
from app.domain.limits import capped_int
from app.domain.media import MediaRecord
from app.domain.preconditions import none_match
from app.errors import (
    InvalidRequest,
    MediaNotFound,
    MediaTooLarge,
    RangeNotSatisfiable,
    StoreUnavailable,
    UnsupportedContentType,
    UnsupportedMedia,
)
from app.manager.conversations import ConversationService
from app.media.base import BlobTooLarge
from app.media.sniff import ACTIVE_CONTENT, extension_of

router = api_router(tags=["media"])

# possessive runs (`*+`): with plain `*` a run of spaces between `=` and `-` is split
# between the runs every possible way before a failure, O(n^2) (review R1)
_RANGE = re.compile(r"^bytes\s*+=\s*+(\d*+)\s*+-\s*+(\d*+)$", re.ASCII)
# Bodies that are not media bytes: refused (415) rather than stored as a document.
NOT_RAW_UPLOADS = frozenset({"", "application/x-www-form-urlencoded"})


class MediaOut(BaseModel):
    media_id: str
    mime_type: str
    size_bytes: int
    sha256: str
    kind: str
    width: int | None = None
    height: int | None = None

    @classmethod
    def of(cls, r: MediaRecord) -> MediaOut:
        return cls(
            media_id=r.id,
            mime_type=r.mime_type,
            size_bytes=r.size_bytes,
            sha256=r.sha256,
            kind=r.kind,
            width=r.width,
            height=r.height,
        )


UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            # any other type is taken as raw bytes too (the type is sniffed from them);
            # generators refuse wildcard media types, so only this one is listed
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/media",
    status_code=201,
    response_model=MediaOut,
    **operation(
        "uploadMedia",
        MediaTooLarge,
        UnsupportedContentType,
        UnsupportedMedia,
        StoreUnavailable,
        openapi_extra=UPLOAD_BODY,
    ),
    summary="Upload media (streamed to disk); the media_id can then be sent in a part",
)
async def upload_media(
    request: Request,
    manager: ManagerDep,
    principal: PrincipalDep,
    user_id: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="Owner; required with a service key."),
    ] = None,
) -> MediaOut:
    owner = ConversationService.resolve_user(principal, user_id, loc="query")
    media = manager.media
    content_type = request.headers.get("content-type", "")
    boundary = boundary_of(content_type)
    if boundary is not None:
        form = await read_form(
            request.stream(), boundary, new_blob=media.stage, too_large=media.too_large
        )
        try:
            files = [f for f in form.files if f.field == "file"] or form.files
            if len(files) != 1:
                raise InvalidRequest(
                    "Send exactly one file (form field 'file').",
                    errors=[{"loc": ["body", "file"], "msg": f"{len(files)} files sent"}],
                )
            record = await media.upload(owner, files[0].staged, filename=files[0].filename)
        except BaseException:
            await form.aclose(keep=False)
            raise
        await form.aclose(keep=True)
        return MediaOut.of(record)
    base = content_type.split(";", 1)[0].strip().lower()
    if base in NOT_RAW_UPLOADS or base.startswith("multipart/") or is_json_type(content_type):
        raise UnsupportedContentType(
            "Upload the bytes as multipart/form-data (one file, field 'file', with a boundary) "
            f"or as the raw body with the media's type, not {base or 'no Content-Type'}.",
            headers={
                "Accept-Post": "multipart/form-data, application/octet-stream, image/*, "
                "audio/*, video/*, application/pdf, text/plain"
            },
        )
    async with media.stage() as staged:
        try:
            async for chunk in request.stream():
                await staged.write(chunk)
        except BlobTooLarge:
            raise media.too_large() from None
        record = await media.upload(owner, staged, filename=None)
    return MediaOut.of(record)


def _headers(record: MediaRecord) -> dict[str, str]:
    disposition = "attachment" if record.mime_type in ACTIVE_CONTENT else "inline"
    name = f"{record.id}.{extension_of(record.mime_type)}"
    return {
        "ETag": f'"{record.sha256}"',
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'{disposition}; filename="{name}"',
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=31536000, immutable",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for one satisfiable `bytes=` range; None for the whole
    body (no header, another unit, several ranges, which RFC 9110 lets a server ignore,
    or an invalid one such as `bytes=10-5`); 416 if unsatisfiable (`bytes=-0`, a start
    at or past the end)."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        n = capped_int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(
                "The range is empty.", headers={"Content-Range": f"bytes */{size}"}
            )
        return max(0, size - n), size - 1
    start = capped_int(first)
    if last and capped_int(last) < start:
        return None
    end = min(capped_int(last), size - 1) if last else size - 1
    if start >= size:
        raise RangeNotSatisfiable(
            f"The range starts past the {size} bytes.",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


MEDIA_ETAG = {
    "ETag": {
        "description": 'The bytes\' entity tag, `"<sha256>"` (for `If-None-Match`, `If-Range`).',
        "schema": {"type": "string"},
    }
}
DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    # the stored type, whatever it is; octet-stream too, for generators that need a
    # concrete type to hand the bytes over
    200: {
        "content": {
            "*/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
        "headers": MEDIA_ETAG,
    },
    206: {"description": "Partial content (Range)", "headers": MEDIA_ETAG},
    304: {"description": "Not modified (If-None-Match)", "headers": MEDIA_ETAG},
}
DOWNLOAD_ERRORS = (MediaNotFound, RangeNotSatisfiable, StoreUnavailable)


@router.head(
    "/media/{media_id}",
    **operation("headMedia", *DOWNLOAD_ERRORS, responses=DOWNLOAD_RESPONSES),
    response_class=Response,
    summary="Media headers (size, type, ETag) without the bytes",
)
@router.get(
    "/media/{media_id}",
    **operation("getMedia", *DOWNLOAD_ERRORS, responses=DOWNLOAD_RESPONSES),
    response_class=Response,
    summary="Download media you own (Range, ETag; served with nosniff)",
)
async def get_media(
    media_id: str, request: Request, manager: ManagerDep, principal: PrincipalDep
) -> Response:
    record = await manager.media.get(principal, media_id)
    headers = _headers(record)
    if none_match(request.headers.getlist("if-none-match"), record.sha256):
        return Response(status_code=304, headers=headers)
    size = record.size_bytes
    # Each field is one value: several lines are read together, as a list (RFC 9110
    # §5.3), which neither takes (the whole body), instead of the first line alone while
    # a cache keeping the last would have cut another range.
    wanted = _range(", ".join(request.headers.getlist("range")), size)
    if_range = request.headers.getlist("if-range")
    if if_range and ", ".join(if_range) != headers["ETag"]:
        wanted = None
    start, end = wanted if wanted is not None else (0, size - 1)
    status = 206 if wanted is not None else 200
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(max(0, end - start + 1))
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=record.mime_type)
    if size == 0:
        return Response(b"", status_code=status, headers=headers, media_type=record.mime_type)
    body = manager.media.read(record, start, end)
    return StreamingResponse(body, status_code=status, headers=headers, media_type=record.mime_type)
