"""Conversation lifecycle: create, read, list, patch, delete (DESIGN §6, Conversations).

What a created or patched conversation holds is `conversation_build`'s; this module reads,
stores, keys creates to their `Idempotency-Key` and deletes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from app.coordination.base import Coordinator, IdempotencyRecord
from app.domain import (
    Conversation,
    ConversationStatus,
    Page,
    new_id,
)
from app.domain.filters import ConversationFilter
from app.domain.incarnation import Incarnation
from app.domain.preconditions import IfMatch
from app.domain.principal import Principal
from app.domain.requests import CreateConversation, PatchConversation
from app.errors import (
    ConversationExists,
    ConversationNotFound,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    PreconditionFailed,
    Unauthorized,
    VersionConflict,
)
from app.manager.admission import AdmissionGate
from app.manager.conversation_build import ConversationBuilder
from app.manager.create_marks import CreateMarks
from app.manager.media import MediaService
from app.manager.packs import PackLibrary
from app.manager.run_erasure import RunErasure
from app.providers.base import LLMProvider
from app.settings import Settings
from app.stores.base import StateStore

log = logging.getLogger("parley.conversations")

IDEMPOTENCY_TTL_S = 24 * 3600.0
# How long a retry waits for the conversation its key's first request is creating.
CREATE_WAIT_S = 5.0
PATCH_RETRIES = 20
# `IdempotencyRecord.extra` member of a create key: the conversation id it creates
KEYED_ID = "conversation_id"


def fingerprint(*parts: Any) -> str:
    """A stable hash of a request, to tell an idempotent retry from a different request."""
    raw = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


class ConversationService:
    def __init__(
        self,
        *,
        store: StateStore,
        packs: PackLibrary,
        providers: Mapping[str, LLMProvider],
        coordinator: Coordinator,
        settings: Settings,
        clock: Callable[[], datetime],
        media: MediaService,
        admission: AdmissionGate,
        erasure: RunErasure,
    ) -> None:
        self._erasure = erasure
        self._admission = admission
        self._store = store
        self._coord = coordinator
        self._marks = CreateMarks(coordinator.idempotency, IDEMPOTENCY_TTL_S)
        self._build = ConversationBuilder(
            packs=packs, providers=providers, settings=settings, clock=clock
        )
        self._now = clock
        self._media = media

    # --- reads -------------------------------------------------------------------------

    async def get(
        self,
        principal: Principal,
        conversation_id: str,
        *,
        live_status: bool = False,
        if_match: IfMatch | None = None,
    ) -> Conversation:
        """The conversation if the principal may see it (else 404: no existence leak).
        Reading slides its TTL. `live_status` reports `running` while a turn holds the
        conversation; it costs a lock lookup, so only the read that shows it asks.
        `if_match`: the request's `If-Match`, checked against what was read (412
        `precondition_failed` when false, before anything changes)."""
        now = self._now()
        conv = await self._store.get_conversation(conversation_id, now=now)
        if conv is None or not principal.can_access(conv.user_id):
            raise ConversationNotFound(f"Conversation {conversation_id!r} not found.")
        if if_match is not None:
            if_match.require(conv)
        await self._slide_ttl(conv, now)
        if (
            live_status
            and conv.status == ConversationStatus.idle
            and await self._coord.locks.holder(conv.id)
        ):
            conv = conv.model_copy(update={"status": ConversationStatus.running})
        return conv

    async def list(
        self,
        principal: Principal,
        flt: ConversationFilter,
        *,
        limit: int,
        cursor: str | None,
    ) -> Page[Conversation]:
        if principal.role == "user":
            if flt.user_id not in (None, principal.user_id):
                return Page(data=[], next_cursor=None)
            flt = ConversationFilter(
                user_id=principal.user_id,
                prefix=flt.prefix,
                pack_id=flt.pack_id,
                metadata=flt.metadata,
            )
        return await self._store.list_conversations(
            flt, now=self._now(), limit=limit, cursor=cursor
        )

    async def _slide_ttl(self, conv: Conversation, now: datetime) -> None:
        """Reads extend the TTL too, but only write when it moves noticeably (1% of the
        TTL, at least one second), so a hot conversation is not rewritten on every read."""
        if conv.ttl_seconds is None or conv.expires_at is None:
            return
        new_expiry = now + timedelta(seconds=conv.ttl_seconds)
        slack = max(1.0, conv.ttl_seconds * 0.01)
        if (new_expiry - conv.expires_at).total_seconds() >= slack:
            await self._store.touch_conversation(conv.id, new_expiry)
            conv.expires_at = new_expiry

    # --- create ------------------------------------------------------------------------

    async def create(
        self, principal: Principal, req: CreateConversation, *, idempotency_key: str | None
    ) -> Conversation:
        user_id = self.resolve_user(principal, req.user_id)
        if idempotency_key is None:
            return await self._create(user_id, req)
        scope = f"create:{principal.scope}"
        conversation_id = req.conversation_id or new_id()
        # The ref is the lineage this request would create, unique to the attempt (a
        # client-chosen id is not: concurrent retries after a delete shared it, so one's
        # failure freed another's key); the id is in `extra`.
        record = IdempotencyRecord(
            fingerprint=fingerprint(req.model_dump(mode="json"), user_id),
            ref=new_id(),
            extra={KEYED_ID: conversation_id},
        )
        existing = await self._coord.idempotency.reserve(
            scope, idempotency_key, record, ttl_s=IDEMPOTENCY_TTL_S
        )
        deadline = asyncio.get_running_loop().time() + CREATE_WAIT_S
        while existing is not None:
            if existing.fingerprint != record.fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was already used to create a different conversation."
                )
            found = await self._keyed(principal, existing)
            if isinstance(found, Conversation):
                return found
            # still being created, failed and freed the key, or deleted since (and maybe
            # created again by another request: `found` is then ConversationExists)
            if await self._marks.finished(scope, idempotency_key, existing.ref):
                # The mark is written after the conversation is stored, so the look-up
                # above may have come before both (tester T2): look again, now that the
                # mark says it was stored; only a miss now means "deleted since".
                found = await self._keyed(principal, existing)
                if isinstance(found, Conversation):
                    return found
                await self._marks.release(scope, idempotency_key, existing.ref)
            else:
                if asyncio.get_running_loop().time() > deadline:
                    raise found
                await asyncio.sleep(0.02)
            existing = await self._coord.idempotency.reserve(
                scope, idempotency_key, record, ttl_s=IDEMPOTENCY_TTL_S
            )
        try:
            created = await self._create(
                user_id,
                req.model_copy(update={"conversation_id": conversation_id}),
                lineage_id=record.ref,
            )
        except BaseException:
            await self._coord.idempotency.forget(scope, idempotency_key, ref=record.ref)
            raise
        await self._marks.mark(scope, idempotency_key, record)  # (`create_marks`)
        return created

    async def _keyed(
        self, principal: Principal, record: IdempotencyRecord
    ) -> Conversation | ConversationNotFound | ConversationExists:
        """The conversation a create key's `record` made, or why it is not there: missing,
        or another conversation under its id (one that another request created after the
        key's was deleted: answered as the key's own, it was a 201 with the other request's
        content). A record written before ids moved to `extra` has the id as its ref. A
        create starts its own lineage and is never a fork, so a fork found under the id in
        that lineage (forked from a fork of it after it was deleted) is another
        conversation too (review R3; `app.domain.incarnation`)."""
        conversation_id = str(record.extra.get(KEYED_ID, record.ref))
        try:
            conv = await self.get(principal, conversation_id, live_status=True)
        except ConversationNotFound as exc:
            return exc
        if KEYED_ID in record.extra and (
            conv.lineage_id != record.ref or conv.forked_from is not None
        ):
            return ConversationExists(f"Conversation {conversation_id!r} already exists.")
        return conv

    async def _create(
        self, user_id: str, req: CreateConversation, *, lineage_id: str | None = None
    ) -> Conversation:
        async with self._admission.admit():
            return await self._create_admitted(user_id, req, lineage_id or new_id())

    async def _create_admitted(
        self, user_id: str, req: CreateConversation, lineage_id: str
    ) -> Conversation:
        conv = await self._build.new(user_id, req, lineage_id)
        try:
            created = await self._store.create_conversation(conv)
        except ConversationExists:
            raise ConversationExists(f"Conversation {conv.id!r} already exists.") from None
        log.info(
            "conversation created id=%s user=%s pack=%s@%s",
            conv.id,
            user_id,
            conv.pack_id,
            conv.pack_version,
        )
        return created

    @staticmethod
    def resolve_user(principal: Principal, requested: str | None, *, loc: str = "body") -> str:
        """The user a request acts for: a user key's own, or the `user_id` a service key
        names (required then)."""
        if principal.role == "user":
            if requested not in (None, principal.user_id):
                raise Unauthorized("This API key may only act for its own user.")
            assert principal.user_id is not None
            return principal.user_id
        if not requested:
            raise InvalidRequest(
                "user_id is required.", errors=[{"loc": [loc, "user_id"], "msg": "required"}]
            )
        return requested

    # --- patch / delete ----------------------------------------------------------------

    async def patch(
        self,
        principal: Principal,
        conversation_id: str,
        req: PatchConversation,
        *,
        if_match: IfMatch | None,
    ) -> Conversation:
        """Apply a PATCH with optimistic concurrency. Without If-Match (or with `*`) a
        concurrent change (for example a turn committing) is absorbed by re-reading and
        re-applying; with versions, the one read must be listed and must still be current
        at the write."""
        for _ in range(PATCH_RETRIES):
            conv = await self.get(principal, conversation_id, if_match=if_match)
            updated = await self._build.patched(conv, req)
            try:
                return await self._store.update_conversation(updated, expected_version=conv.version)
            except VersionConflict:
                if if_match is not None and if_match.tags is not None:
                    raise PreconditionFailed(
                        f"Conversation changed; If-Match {if_match} is stale."
                    ) from None
        raise VersionConflict("The conversation kept changing; try again.")

    async def delete(
        self, principal: Principal, conversation_id: str, *, if_match: IfMatch | None = None
    ) -> None:
        """Even while a turn runs: that turn's commit then fails (its compare-and-set
        names the lineage, so it can never land in a conversation created under the id
        since), as does a turn queued behind it (404 `conversation_not_found`). Its runs'
        records and events are erased after the data; a live run's once it ended
        (`app.manager.run_erasure`). The store deletes only the incarnation read here (404
        if the id names another by then: review R-A); `if_match` is checked against it
        (412 when false), and with listed tags its version must still be current at the
        delete (412 otherwise, as for a PATCH)."""
        conv = await self.get(principal, conversation_id, if_match=if_match)
        tags = None if if_match is None else if_match.tags
        expected = None if tags is None else conv.version
        media_ids = await self._store.lineage_media_ids(conv.lineage_id)
        try:
            deleted = await self._store.delete_conversation(
                conversation_id, incarnation=Incarnation.of(conv), expected_version=expected
            )
        except VersionConflict:
            raise PreconditionFailed(
                f"Conversation changed; If-Match {if_match} is stale."
            ) from None
        if not deleted:
            raise ConversationNotFound(f"Conversation {conversation_id!r} not found.")
        log.info("conversation deleted id=%s", conversation_id)
        await self._erasure.erase(conversation_id, conv.lineage_id, conv.created_at)
        await self._release_media(self._media.release(media_ids))

    async def delete_user(self, principal: Principal, user_id: str) -> int:
        if not principal.can_access(user_id):
            raise NotFound(f"User {user_id!r} not found.")  # 404 like any cross-user call
        deleted = await self._store.delete_user_conversations(user_id)
        log.info("user erased user=%s conversations=%d", user_id, len(deleted))
        await self._erasure.erase_all(deleted)
        await self._release_media(self._media.erase_user(user_id))
        return len(deleted)

    @staticmethod
    async def _release_media(release: Awaitable[int]) -> None:
        """Media goes after the conversation's data (never the other way round); if it
        fails, the deletion stands and the periodic media sweep retries."""
        try:
            await release
        except Exception as exc:
            log.warning("media release after a deletion failed (the sweep retries): %r", exc)
