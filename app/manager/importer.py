"""Import: a `parley.conversation/v1` document or a PromptKit state into a new conversation
(DESIGN §6; reading and checking the body: `app.manager.import_doc`).

Everything is checked before anything is stored: the document (in a worker thread), then
what needs the store (the pack, the media records its parts reference, the id;
`import_checks`). A document with any problem is a 422 listing all of them, and nothing
is written.

Ids: an imported conversation starts a new lineage of its own, so its message ids never
meet another lineage's and every message id, parent, checkpoint id and the head are kept
as they are, even while the exported conversation still exists (importing the same
document twice, each time as a new `conversation_id`, gives two independent
conversations with the same message ids). Only a conversation id already in use is a 409
`conversation_exists`. The new lineage has one writer, so every message's
`conversation_id` becomes the imported conversation's and `forked_from` is dropped (the
source lineage is not here); `usage` and `updated_at` are the document's, `expires_at`
restarts from the import when the conversation has a TTL.

The messages are stored through `StateStore.append_messages`, one root-to-leaf chain (up
to `CHUNK` messages) at a time, then the conversation record gets its head and totals.
If the store fails midway, the partial conversation is deleted again. Context items keep
their ids and text, take the imported conversation's id, and are counted again by this
service's counter; they are held to the limits of items added over HTTP.
If the process dies midway, the conversation expires (`UNFINISHED_IMPORT_TTL`) unless
the import finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from app.domain import Conversation, ConversationStatus, Message, Usage, new_id
from app.domain.ids import ID_PATTERN
from app.domain.incarnation import Incarnation
from app.domain.principal import Principal
from app.domain.requests import CreateConversation
from app.domain.usage import ConversationUsage
from app.errors import ConversationExists, NotFound
from app.manager.admission import AdmissionGate
from app.manager.context_item_window import item_tokens
from app.manager.conversations import ConversationService
from app.manager.import_checks import ImportChecks, tool_call_problems
from app.manager.import_doc import read_import
from app.manager.import_plan import ImportPlan, Problem, refused, schema_problems
from app.manager.media import MediaService
from app.manager.packs import PackLibrary
from app.manager.pending_calls import status_at
from app.manager.turn_numbers import number_turns
from app.settings import Settings
from app.stores.base import StateStore

log = logging.getLogger("parley.import")

CHUNK = 500  # messages per append
# How long a conversation being imported lives unless the import finishes: a process
# killed midway cannot undo, and the partial conversation it leaves would otherwise hold its
# id forever (a retry: 409). Expired, it is reclaimed by the sweep or a create of the id.
UNFINISHED_IMPORT_TTL = timedelta(minutes=15)


class ImportService:
    def __init__(
        self,
        *,
        store: StateStore,
        conversations: ConversationService,
        packs: PackLibrary,
        media: MediaService,
        settings: Settings,
        admission: AdmissionGate,
        clock: Callable[[], datetime],
    ) -> None:
        self._admission = admission
        self._store = store
        self._conversations = conversations
        self._packs = packs
        self._media = media
        self._checks = ImportChecks(store, settings)
        self._max_message_bytes = settings.max_message_bytes
        self._now = clock

    async def import_document(
        self,
        principal: Principal,
        raw: Any,
        *,
        conversation_id: str | None = None,
        user_id: str | None = None,
        pack_id: str | None = None,
        pack_version: str | None = None,
        prompt_name: str | None = None,
    ) -> Conversation:
        """Gated like a conversation's creation (`AdmissionGate`): reading a big document
        and writing its messages is more work than most turns."""
        async with self._admission.admit():
            return await self._import(
                principal,
                raw,
                conversation_id=conversation_id,
                user_id=user_id,
                pack_id=pack_id,
                pack_version=pack_version,
                prompt_name=prompt_name,
            )

    async def _import(
        self,
        principal: Principal,
        raw: Any,
        *,
        conversation_id: str | None,
        user_id: str | None,
        pack_id: str | None,
        pack_version: str | None,
        prompt_name: str | None,
    ) -> Conversation:
        plan = await asyncio.to_thread(read_import, raw, max_message_bytes=self._max_message_bytes)
        problems: list[Problem] = []
        if plan.source == "parley":
            for name, value in (
                ("pack_id", pack_id), ("pack_version", pack_version), ("prompt_name", prompt_name)
            ):  # fmt: skip
                if value is not None:
                    problems.append(
                        {
                            "loc": ["query", name],
                            "msg": "only for PromptKit states (a Parley document names its pack)",
                        }
                    )
        else:
            for name, value in (("pack_id", pack_id), ("prompt_name", prompt_name)):
                if value is None:
                    problems.append(
                        {"loc": ["query", name], "msg": "required to import a PromptKit state"}
                    )
        if problems:
            raise refused(problems)
        # a user key imports for itself; a service key for user_id, else the document's user
        wanted = user_id if user_id is not None or principal.role == "user" else plan.user_id
        owner = self._conversations.resolve_user(principal, wanted, loc="query")
        target = conversation_id or plan.conversation_id or new_id()
        if conversation_id is None and not re.match(ID_PATTERN, target):
            problems.append(
                {"loc": ["body", "conversation_id"], "msg": "not a valid id; give conversation_id"}
            )
        problems.extend(tool_call_problems(plan.messages))
        problems.extend(await self._checks.media_problems(plan.messages, owner))
        problems.extend(self._checks.item_problems(plan.context_items))
        problems.extend(await self._checks.item_media_problems(plan.context_items, owner))
        if plan.conversation is not None:
            conv = plan.conversation
            try:
                pack = await self._packs.get(conv.pack_id, conv.pack_version)
            except NotFound:
                problems.append(
                    {
                        "loc": ["body", "conversation", "pack_id"],
                        "msg": f"pack {conv.pack_id}@{conv.pack_version} is not loaded here",
                    }
                )
            else:
                if conv.prompt_name not in pack.prompts:  # (tester T12: 500 on every turn)
                    problems.append(
                        {
                            "loc": ["body", "conversation", "prompt_name"],
                            "msg": f"pack {conv.pack_id}@{conv.pack_version} has no prompt "
                            f"{conv.prompt_name!r}",
                        }
                    )
        if problems:
            raise refused(problems)
        if plan.conversation is not None:
            created = await self._store_document(plan, plan.conversation, target, owner)
        else:
            assert pack_id is not None and prompt_name is not None
            created = await self._store_promptkit(
                principal, plan, target, owner, pack_id, pack_version, prompt_name
            )
        await self._media.attached(plan.messages, self._media.policy_of(created.media_policy))
        log.info(
            "conversation imported id=%s user=%s source=%s messages=%d",
            created.id, owner, plan.source, len(plan.messages),
        )  # fmt: skip
        return created

    async def _store_document(
        self, plan: ImportPlan, src: Conversation, target: str, owner: str
    ) -> Conversation:
        now = self._now()
        ttl = src.ttl_seconds
        expires_at = now + timedelta(seconds=ttl) if ttl else None
        conv = src.model_copy(
            update={
                "id": target,
                "user_id": owner,
                "lineage_id": new_id(),
                "head_message_id": None,
                "message_count": 0,
                "usage": ConversationUsage(),
                "forked_from": None,
                "status": ConversationStatus.idle,
                "version": 1,
                "expires_at": expires_at or now + UNFINISHED_IMPORT_TTL,
                "has_context_items": bool(plan.context_items),
            }
        )
        created = await self._create(conv)
        try:
            current = await self._append_tree(created, plan.messages)
            head = _message(plan.messages, plan.head_message_id)
            final = current.model_copy(
                update={
                    "head_message_id": plan.head_message_id,
                    "message_count": head.depth + 1 if head else 0,
                    "usage": src.usage,
                    "status": await status_at(self._store, current.lineage_id, head),
                    "updated_at": src.updated_at,
                    "expires_at": expires_at,
                }
            )
            stored = await self._store.update_conversation(final, expected_version=current.version)
            mine = Incarnation.of(created)  # (not a namesake if it was deleted meanwhile)
            for cp in plan.checkpoints:
                await self._store.create_checkpoint(
                    cp.model_copy(update={"conversation_id": target}), incarnation=mine
                )
            for item in plan.context_items:  # tokens by this service's counter
                await self._store.save_context_item(
                    item.model_copy(
                        update={
                            "conversation_id": target,
                            "tokens": item_tokens(item.content, item.source),
                        }
                    ),
                    incarnation=mine,
                )
            for summary in plan.summaries:  # oldest first: what each extends is stored
                await self._store.save_summary(
                    summary.model_copy(
                        update={"lineage_id": conv.lineage_id, "conversation_id": target}
                    )
                )
        except BaseException:
            await self._undo(created)
            raise
        return stored

    async def _store_promptkit(
        self,
        principal: Principal,
        plan: ImportPlan,
        target: str,
        owner: str,
        pack_id: str,
        pack_version: str | None,
        prompt_name: str,
    ) -> Conversation:
        try:
            req = CreateConversation(
                pack_id=pack_id,
                pack_version=pack_version,
                prompt_name=prompt_name,
                user_id=owner,
                conversation_id=target,
                system_prompt=plan.system_prompt,
                metadata=plan.metadata,
            )
        except ValidationError as exc:
            raise refused(schema_problems(exc, ["body"])) from None
        created = await self._conversations.create(principal, req, idempotency_key=None)
        try:
            if created.expires_at is None:  # see UNFINISHED_IMPORT_TTL
                await self._store.touch_conversation(target, self._now() + UNFINISHED_IMPORT_TTL)
            current = await self._append_tree(created, plan.messages)
            head = plan.messages[-1] if plan.messages else None
            final = current.model_copy(
                update={
                    "usage": plan.usage,
                    "status": await status_at(self._store, current.lineage_id, head),
                    "expires_at": created.expires_at,
                }
            )
            return await self._store.update_conversation(final, expected_version=current.version)
        except BaseException:
            await self._undo(created)
            raise

    async def _create(self, conv: Conversation) -> Conversation:
        try:
            return await self._store.create_conversation(conv)
        except ConversationExists:
            raise ConversationExists(f"Conversation {conv.id!r} already exists.") from None

    async def _append_tree(self, conv: Conversation, messages: Sequence[Message]) -> Conversation:
        """Store the messages (parents first) one root-to-leaf chain at a time: each
        append starts under a stored message, so each is an ordinary append. Each is
        stored with its turn number, counted here from the root: the document holds every
        ancestor, and a message stored without one would make every later turn or branch
        under it walk the whole path back (`app.manager.turn_numbers`)."""
        children: dict[str | None, list[Message]] = {}
        for m in number_turns(messages):
            children.setdefault(m.parent_id, []).append(m)
        stack = list(reversed(children.get(None, [])))
        current = conv
        while stack:
            chain = [stack.pop()]
            while kids := children.get(chain[-1].id):
                stack.extend(reversed(kids[1:]))
                chain.append(kids[0])
            for i in range(0, len(chain), CHUNK):
                batch = [
                    m.model_copy(update={"conversation_id": conv.id}) for m in chain[i : i + CHUNK]
                ]
                current = await self._store.append_messages(
                    current, batch, usage=Usage(), cost_usd=0.0, now=self._now()
                )
        return current

    async def _undo(self, created: Conversation) -> None:
        """Delete what this import created, not a namesake created under its id if the
        import's conversation was deleted meanwhile (ids are reusable): the store checks
        the incarnation in the step that deletes (review R-A)."""
        with contextlib.suppress(Exception):
            await self._store.delete_conversation(created.id, incarnation=Incarnation.of(created))


def _message(messages: Sequence[Message], message_id: str | None) -> Message | None:
    if message_id is None:
        return None
    return next((m for m in messages if m.id == message_id), None)
