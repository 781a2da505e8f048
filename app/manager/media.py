"""Media in conversations (DESIGN §13): taking media in, handing it out, resolving it for
providers and letting it go.

* **In.** Every media part is sniffed (the client's `mime_type` is replaced by what the
  bytes are), checked by `media_rules` against the prompt, the service limits and the
  provider, then kept inline (`base64`, up to `PARLEY_MEDIA_THRESHOLD_KB`) or stored: the
  bytes in the `MediaStore` under their sha256, a `MediaRecord` for the conversation's
  user in the `StateStore`, and only the reference in the message. A violation raises
  before anything is stored. Order when storing: stage, check, publish, save the record,
  close (see `app.media.base`), so a crash leaves at most an orphan blob.
* **Out.** `GET /media/{id}`: the owner (or a service key) only; another user's id is 404.
* **To providers.** `resolve` returns a request whose media parts carry the bytes; the
  bytes are read per call (through the bounded `EncodedMediaCache`, `PARLEY_MEDIA_CACHE_MB`)
  and never cached with the messages.
* **Gone.** After a conversation is deleted, records its lineage referenced that lost
  their last reference and were attached under the `delete` policy are deleted, then
  their blobs if no record holds them any more. User erasure deletes the user's records
  nothing references. A periodic sweep catches what expiry or a crash left.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from itertools import chain
from operator import attrgetter
from typing import TYPE_CHECKING

from app.domain import Message, Part, new_id
from app.domain.media import MediaPolicy, MediaRecord
from app.domain.principal import Principal
from app.errors import InvalidRequest, MediaNotFound, MediaTooLarge, UnsupportedMedia
from app.manager import media_rules
from app.manager.media_cache import EncodedMediaCache
from app.manager.media_facts import (
    PartRules,
    Sniffed,
    decode_base64,
    describe,
    info_of,
    stored_fields,
    with_default_detail,
)
from app.manager.media_rules import MB, PartFacts
from app.media.base import MediaStore, StagedBlob
from app.providers.base import ProviderRequest
from app.settings import Settings
from app.stores.base import StateStore

if TYPE_CHECKING:
    from app.manager.context import ContextWindow

log = logging.getLogger("parley.media")

ORPHAN_GRACE_S = 3600.0  # a blob no record holds is reclaimed after this (crash debris)
SWEEP_BATCH = 500


class MediaService:
    def __init__(
        self,
        *,
        store: StateStore,
        media: MediaStore,
        settings: Settings,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self.media = media
        self._settings = settings
        self._now = clock
        self._threshold = settings.media_threshold_kb * 1024
        self._max_bytes = settings.media_max_mb * MB
        self.encoded_cache = EncodedMediaCache(settings.media_cache_mb * MB)

    # --- storing -------------------------------------------------------------------------

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    def stage(self) -> StagedBlob:
        return self.media.stage(max_bytes=self._max_bytes)

    async def store_staged(
        self, staged: StagedBlob, user_id: str, *, filename: str | None = None
    ) -> MediaRecord:
        """Publish a finished, checked staged blob and record it for `user_id` (the user's
        existing record of the same bytes, if any). The caller closes `staged`."""
        s = describe(await staged.finish())
        await staged.publish()
        record = MediaRecord(
            id=f"med_{new_id()}",
            user_id=user_id,
            sha256=s.sha256,
            mime_type=s.mime_type,
            kind=s.kind,
            size_bytes=s.size_bytes,
            width=s.width,
            height=s.height,
            filename=filename,
            created_at=self._now(),
        )
        return await self._store.save_media(record)

    def too_large(self, what: str = "The upload") -> MediaTooLarge:
        return MediaTooLarge(
            f"{what} is over the service limit of {self._settings.media_max_mb} MB."
        )

    async def upload(
        self, user_id: str, staged: StagedBlob, *, filename: str | None
    ) -> MediaRecord:
        """`POST /media`: keep a streamed upload (any recognised media kind). The caller
        wrote the bytes into `staged` (from `stage()`) and closes it."""
        s = describe(await staged.finish())
        if s.kind == "file":
            raise UnsupportedMedia(
                f"{s.mime_type} is not a media type this service accepts.",
                errors=[{"loc": ["body", "file"], "msg": f"sniffed {s.mime_type}"}],
            )
        return await self.store_staged(staged, user_id, filename=filename)

    # --- reading -------------------------------------------------------------------------

    async def get(self, principal: Principal, media_id: str) -> MediaRecord:
        record = await self._store.get_media(media_id)
        if record is None or not principal.can_access(record.user_id):
            raise MediaNotFound(f"Media {media_id!r} not found.")
        return record

    def read(self, record: MediaRecord, start: int, end: int) -> AsyncIterator[bytes]:
        return self.media.read(record.sha256, start=start, end=end)

    # --- message parts -------------------------------------------------------------------

    async def prepare_parts(
        self,
        parts: Sequence[Part],
        *,
        user_id: str,
        rules: PartRules,
        staged: Mapping[int, StagedBlob] | None = None,
    ) -> list[Part]:
        """The parts as they will be stored: media sniffed, checked and inlined or
        externalized. Raises (422/413/404) before storing anything if any part fails;
        bytes of a part stored before a later part failed stay as unattached uploads."""
        images = sum(1 for p in parts if p.type == "image")
        parts = [with_default_detail(p, rules.config) for p in parts]
        staged = staged or {}
        checked: list[tuple[int, Part, bytes | None, Sniffed | None]] = []
        for index, part in enumerate(parts):
            if part.type == "text":
                checked.append((index, part, None, None))
            elif index in staged:
                s = describe(await staged[index].finish())
                facts = self._facts(index, part, s.kind, s.mime_type, s.size_bytes, "bytes")
                self._check(facts, rules, images)
                checked.append((index, part, None, s))
            else:
                checked.append(await self._check_part(index, part, user_id, rules, images))
        out = []
        for index, part, data, sniffed in checked:
            if sniffed is None:
                out.append(part)
            elif data is None:  # streamed to staging: always externalized
                assert part.media is not None
                record = await self.store_staged(
                    staged[index], user_id, filename=part.media.filename
                )
                ref = part.media.model_copy(
                    update={**stored_fields(sniffed), "media_id": record.id}
                )
                out.append(part.model_copy(update={"media": ref}))
            else:
                out.append(await self._keep(index, part, data, sniffed, user_id))
        return out

    async def _check_part(
        self, index: int, part: Part, user_id: str, rules: PartRules, images: int
    ) -> tuple[int, Part, bytes | None, Sniffed | None]:
        media = part.media
        loc: list[str | int] = ["body", "parts", index, "media"]
        sources = (
            [] if media is None else [s for s in ("base64", "url", "media_id") if getattr(media, s)]
        )
        if media is None or len(sources) != 1:
            raise InvalidRequest(
                f"Part {index}: a media part needs exactly one of base64, url, media_id.",
                errors=[{"loc": loc, "msg": "exactly one of base64, url, media_id"}],
            )
        if media.base64 is not None:
            try:
                data = await asyncio.to_thread(decode_base64, media.base64)
            except (binascii.Error, ValueError):
                raise InvalidRequest(
                    f"Part {index}: base64 is not valid.",
                    errors=[{"loc": [*loc, "base64"], "msg": "invalid base64"}],
                ) from None
            s = describe(await asyncio.to_thread(info_of, data))
            facts = self._facts(index, part, s.kind, s.mime_type, s.size_bytes, "bytes")
            self._check(facts, rules, images)
            return index, part, data, s
        if media.media_id is not None:
            record = await self._store.get_media(media.media_id)
            if record is None or record.user_id != user_id:
                raise MediaNotFound(
                    f"Part {index}: media {media.media_id!r} not found.",
                    errors=[{"loc": [*loc, "media_id"], "msg": "not found"}],
                )
            facts = self._facts(
                index, part, record.kind, record.mime_type, record.size_bytes, "bytes"
            )
            self._check(facts, rules, images)
            ref = media.model_copy(
                update={
                    "mime_type": record.mime_type,
                    "size_bytes": record.size_bytes,
                    "sha256": record.sha256,
                    "width": record.width,
                    "height": record.height,
                    "filename": media.filename or record.filename,
                }
            )
            return index, part.model_copy(update={"media": ref}), None, None
        assert media.url is not None
        if not media_rules.http_url(media.url):
            # the provider fetches it: anything else is meaningless there (file://) or
            # a way around the checks bytes get (data:)
            raise InvalidRequest(
                f"Part {index}: a media URL must be http:// or https:// (send bytes as base64 "
                "or upload them with POST /media).",
                errors=[{"loc": [*loc, "url"], "msg": "not an http(s) URL"}],
            )
        mime = media.mime_type or ""
        facts = self._facts(index, part, part.type, mime, None, "url")
        if part.type == "file":
            raise UnsupportedMedia(
                f"Part {index}: a media URL needs a part type (image, audio, video, document).",
                errors=[{"loc": [*loc, "url"], "msg": "type file needs bytes"}],
            )
        self._check(facts, rules, images, sniffed=False)
        return index, part, None, None

    @staticmethod
    def _facts(
        index: int, part: Part, kind: str, mime: str, size: int | None, source: str
    ) -> PartFacts:
        caption = part.media.caption if part.media else None
        return PartFacts(index, part.type, kind, mime, size, source, caption)

    @staticmethod
    def _check(facts: PartFacts, rules: PartRules, images: int, *, sniffed: bool = True) -> None:
        if sniffed:
            media_rules.check_kind(facts)
        media_rules.check_service_limit(facts, rules.max_mb)
        media_rules.check_prompt(facts, rules.config, images)
        media_rules.check_provider(facts, rules.provider)

    async def _keep(self, index: int, part: Part, data: bytes, s: Sniffed, user_id: str) -> Part:
        assert part.media is not None
        common = stored_fields(s)
        if s.size_bytes <= self._threshold:
            b64 = await asyncio.to_thread(lambda: base64.b64encode(data).decode("ascii"))
            ref = part.media.model_copy(update={**common, "base64": b64})
            return part.model_copy(update={"media": ref})
        async with self.stage() as staged:
            for start in range(0, len(data), 1 << 20):
                await staged.write(data[start : start + (1 << 20)])
            record = await self.store_staged(staged, user_id, filename=part.media.filename)
        ref = part.media.model_copy(update={**common, "base64": None, "media_id": record.id})
        log.debug("part %d externalized as %s (%d bytes)", index, record.id, s.size_bytes)
        return part.model_copy(update={"media": ref})

    # --- providers -----------------------------------------------------------------------

    async def resolve_window(self, window: ContextWindow) -> ProviderRequest:
        """The request of a built context window, resolved (`resolve`) unless the builder
        found no media part in it (its messages are then not scanned)."""
        return await self.resolve(window.request) if window.has_media else window.request

    async def resolve(self, request: ProviderRequest) -> ProviderRequest:
        """`request` with every stored media part's bytes filled in (`base64`)."""
        if not any(  # over the parts only: a text message has none (no step per message)
            p.media and p.media.media_id and not p.media.base64
            for p in chain.from_iterable(map(attrgetter("parts"), request.messages))
        ):
            return request
        messages = []
        for m in request.messages:
            if not any(p.media and p.media.media_id and not p.media.base64 for p in m.parts):
                messages.append(m)
                continue
            parts = [await self._resolve_part(p) for p in m.parts]
            messages.append(m.model_copy(update={"parts": parts}))
        return request.model_copy(update={"messages": messages})

    async def _resolve_part(self, part: Part) -> Part:
        media = part.media
        if media is None or media.base64 or not media.media_id or not media.sha256:
            return part
        b64 = self.encoded_cache.get(media.sha256)
        if b64 is None:
            data = await self.media.read_all(media.sha256)
            b64 = await asyncio.to_thread(lambda: base64.b64encode(data).decode("ascii"))
            self.encoded_cache.put(media.sha256, b64)
        return part.model_copy(update={"media": media.model_copy(update={"base64": b64})})

    # --- retention -----------------------------------------------------------------------

    def policy_of(self, conversation_policy: MediaPolicy | None) -> MediaPolicy:
        return conversation_policy or self._settings.media_policy

    async def attached(self, messages: Sequence[Message], policy: MediaPolicy) -> None:
        """After a commit: the records its messages reference are attached (and retained
        under the `retain` policy). A failure here only delays collection."""
        ids = [p.media.media_id for m in messages for p in m.parts if p.media and p.media.media_id]
        if ids:
            await self._store.mark_media_attached(ids, retain=policy == "retain")

    async def release(self, media_ids: Sequence[str], *, force: bool = False) -> int:
        """Collect these records if nothing references them any more, then their blobs if
        no record holds the bytes. Returns how many records went."""
        if not media_ids:
            return 0
        deleted = await self._store.collect_media(media_ids, force=force)
        for sha in dict.fromkeys(r.sha256 for r in deleted):
            await self._drop_blob(sha)
        if deleted:
            log.info("media collected: %d records", len(deleted))
        return len(deleted)

    async def _drop_blob(self, sha256: str) -> bool:
        async def in_use() -> bool:
            return await self._store.media_in_use(sha256)

        return await self.media.delete_if_unused(sha256, in_use)

    async def erase_user(self, user_id: str) -> int:
        return await self.release(await self._store.user_media_ids(user_id), force=True)

    async def sweep(self, *, orphans: bool, orphan_grace_s: float = ORPHAN_GRACE_S) -> int:
        """Collect records whose references went away without a deletion here (expiry, a
        crash); with `orphans`, also blobs no record holds and staging debris."""
        removed = await self.release(await self._store.collectable_media_ids(limit=SWEEP_BATCH))
        if orphans:
            async for sha in self.media.list_blobs(older_than_s=orphan_grace_s):
                if await self._drop_blob(sha):
                    removed += 1
            removed += await self.media.sweep_staging(older_than_s=orphan_grace_s)
        return removed
