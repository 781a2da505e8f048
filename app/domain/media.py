"""Media records: a user's handle on bytes in the media store (DESIGN §13)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

MediaKind = Literal["image", "audio", "video", "document", "file"]
MediaPolicy = Literal["retain", "delete"]


class MediaRecord(BaseModel):
    """One user's media item. Bytes are stored once per sha256 whoever holds them; each
    user holding the same bytes has one record of their own (its `id` is what that user
    sends as `media_id` and fetches at `GET /media/{id}`).

    `attached`: a committed message references the record (set after the commit).
    `retain`: a message of a conversation whose media policy is `retain` references it,
    so it is kept when its last reference goes. A record is collected (policy `delete`)
    when it is attached, not retained, and no message references it any more.
    """

    id: str
    user_id: str
    sha256: str
    mime_type: str
    kind: MediaKind
    size_bytes: int
    width: int | None = None
    height: int | None = None
    filename: str | None = None
    created_at: datetime
    attached: bool = False
    retain: bool = False
