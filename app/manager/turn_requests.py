"""Turning client requests into runs: a new user message (JSON or multipart, media
prepared), results for pending client-side tools, decisions on pending approvals, an
edited user message, a regenerated reply (both branch off the tree at a `BranchPoint`
and otherwise run exactly like a new message: one execution path). Each
is validated here, then started as an ordinary run by `RunService.start`, whose request
identity (for `Idempotency-Key`) is the request's kind and body."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel

from app.domain import Conversation, Part
from app.domain.preconditions import IfMatch
from app.domain.principal import Principal
from app.domain.requests import (
    EditMessage,
    Regenerate,
    SendMessage,
    SubmitToolApprovals,
    SubmitToolResults,
)
from app.errors import InvalidRequest, MessageTooLarge, ProviderNotConfigured
from app.manager.admission import AdmissionGate
from app.manager.branch_points import BranchPoints
from app.manager.conversations import ConversationService
from app.manager.media import MediaService
from app.manager.media_facts import PartRules
from app.manager.packs import PackLibrary
from app.manager.runs import RunService, StartedRun
from app.manager.turn_plan import BranchPoint, TurnInput
from app.media.base import StagedBlob
from app.providers.base import LLMProvider
from app.settings import Settings


def _empty_message(loc: list[str]) -> InvalidRequest:
    """Empty and whitespace-only messages are refused alike: neither says anything."""
    return InvalidRequest(
        "The message is empty (only whitespace counts as empty too).",
        errors=[{"loc": loc, "msg": "content or parts with non-blank text required"}],
    )


class TurnRequests:
    def __init__(
        self,
        *,
        runs: RunService,
        conversations: ConversationService,
        branch_points: BranchPoints,
        media: MediaService,
        packs: PackLibrary,
        providers: Mapping[str, LLMProvider],
        settings: Settings,
        admission: AdmissionGate,
    ) -> None:
        self._admission = admission
        self._runs = runs
        self._conversations = conversations
        self._branch_points = branch_points
        self._media = media
        self._packs = packs
        self._providers = providers
        self._settings = settings

    async def _read(
        self, principal: Principal, conversation_id: str
    ) -> tuple[Conversation, int | None]:
        """The conversation a turn starts from, and the turn lock's stamp taken before
        reading it (`RunService.lock_stamp`)."""
        stamp = self._runs.lock_stamp(conversation_id)
        return await self._conversations.get(principal, conversation_id), stamp

    async def send_message(
        self,
        principal: Principal,
        conversation_id: str,
        req: SendMessage,
        *,
        key: str | None,
        staged: Mapping[int, StagedBlob] | None = None,
        if_match: IfMatch | None = None,
    ) -> StartedRun:
        """Start a turn. `staged` holds the bytes of parts uploaded as multipart files
        (by part index; those parts carry no source); the caller closes them. Every turn's
        `if_match` goes with its input (`TurnInput.if_match`)."""
        async with self._admission.admit():
            conv, stamp = await self._read(principal, conversation_id)
            turn, body = await self._user_turn(
                conv, req, staged or {}, identity=key is not None, if_match=if_match
            )
            return await self._runs.start(
                conv, turn, req.if_busy, key, ("message", body), stamp=stamp
            )

    async def edit_message(
        self,
        principal: Principal,
        conversation_id: str,
        message_id: str,
        req: EditMessage,
        *,
        key: str | None,
        if_match: IfMatch | None = None,
    ) -> StartedRun:
        """Start a turn whose user message is a new sibling of user message `message_id`
        (`app.manager.branch_points`)."""
        async with self._admission.admit():
            conv, stamp = await self._read(principal, conversation_id)
            branch = await self._branch_points.for_edit(conv, message_id)
            turn, body = await self._user_turn(
                conv,
                req,
                {},
                kind="edit",
                branch_from=branch,
                identity=key is not None,
                if_match=if_match,
            )
            if body is not None:
                body["message_id"] = message_id
            return await self._runs.start(conv, turn, req.if_busy, key, ("edit", body), stamp=stamp)

    async def regenerate(
        self,
        principal: Principal,
        conversation_id: str,
        req: Regenerate,
        *,
        key: str | None,
        if_match: IfMatch | None = None,
    ) -> StartedRun:
        """Start a run that generates a new sibling of an assistant reply from the same
        context (`app.manager.branch_points`)."""
        async with self._admission.admit():
            conv, stamp = await self._read(principal, conversation_id)
            branch = await self._branch_points.for_regenerate(conv, req.message_id)
            turn = TurnInput(kind="regenerate", branch_from=branch, if_match=if_match)
            body = req.model_dump(mode="json", exclude={"stream", "on_disconnect"})
            return await self._runs.start(
                conv, turn, req.if_busy, key, ("regenerate", body), stamp=stamp
            )

    async def _user_turn(
        self,
        conv: Conversation,
        req: SendMessage,
        staged: Mapping[int, StagedBlob],
        *,
        kind: Literal["message", "edit"] = "message",
        branch_from: BranchPoint | None = None,
        identity: bool = True,
        if_match: IfMatch | None = None,
    ) -> tuple[TurnInput, dict[str, Any] | None]:
        """The user message of `req` as a turn input (media prepared), and its identity for
        `Idempotency-Key` retries (with `identity`; None without: a request without a key
        has no retry to compare, and dumping the body cost every turn a validation pass)."""
        content, parts = self._user_content(req, staged)
        if any(p.type != "text" for p in parts):
            parts = await self._media.prepare_parts(
                parts, user_id=conv.user_id, rules=await self._media_rules(conv), staged=staged
            )
        turn = TurnInput(
            kind=kind,
            content=content,
            parts=parts,
            metadata=req.metadata,
            branch_from=branch_from,
            if_match=if_match,
        )
        if not identity:
            return turn, None
        body = req.model_dump(mode="json", exclude={"stream", "on_disconnect", "parts"})
        body["parts"] = [p.model_dump(mode="json", exclude_none=True) for p in parts]
        return turn, body

    async def _media_rules(self, conv: Conversation) -> PartRules:
        pack = await self._packs.get(conv.pack_id, conv.pack_version)
        provider = self._providers.get(conv.provider)
        if provider is None:
            raise ProviderNotConfigured(
                f"Provider {conv.provider!r} is not configured on this instance."
            )
        prompt = pack.prompts[conv.prompt_name]
        return PartRules(config=prompt.media, provider=provider, max_mb=self._settings.media_max_mb)

    async def submit_tool_results(
        self,
        principal: Principal,
        conversation_id: str,
        req: SubmitToolResults,
        *,
        key: str | None,
        if_match: IfMatch | None = None,
    ) -> StartedRun:
        turn = TurnInput(kind="tool_results", tool_results=req.results, if_match=if_match)
        return await self._continue(principal, conversation_id, req, turn, req.results, key)

    async def submit_tool_approvals(
        self,
        principal: Principal,
        conversation_id: str,
        req: SubmitToolApprovals,
        *,
        key: str | None,
        if_match: IfMatch | None = None,
    ) -> StartedRun:
        turn = TurnInput(kind="tool_approvals", decisions=req.decisions, if_match=if_match)
        return await self._continue(principal, conversation_id, req, turn, req.decisions, key)

    async def _continue(
        self,
        principal: Principal,
        conversation_id: str,
        req: SubmitToolResults | SubmitToolApprovals,
        turn: TurnInput,
        items: Sequence[BaseModel],
        key: str | None,
    ) -> StartedRun:
        """Start a run that goes on with a paused turn: `items` (its tool results or
        approval decisions) count against `PARLEY_MAX_MESSAGE_BYTES` as a message would."""
        async with self._admission.admit():
            conv, stamp = await self._read(principal, conversation_id)
            self._check_size(len(json.dumps([i.model_dump(mode="json") for i in items]).encode()))
            body = req.model_dump(mode="json", exclude={"stream", "on_disconnect"})
            return await self._runs.start(
                conv, turn, req.if_busy, key, (turn.kind, body), stamp=stamp
            )

    def _user_content(
        self, req: SendMessage, staged: Mapping[int, StagedBlob]
    ) -> tuple[str, list[Part]]:
        if req.parts:
            if req.content is not None:
                raise InvalidRequest(
                    "Send either content or parts, not both.",
                    errors=[{"loc": ["body"], "msg": "content and parts are exclusive"}],
                )
            parts = req.parts
            content = "".join(p.text or "" for p in parts if p.type == "text")
            for i, p in enumerate(parts):
                if p.type == "text" and p.text is None:
                    raise InvalidRequest(
                        "A text part needs text.",
                        errors=[{"loc": ["body", "parts", i, "text"], "msg": "required"}],
                    )
                if p.type == "text" and p.media is not None:
                    raise InvalidRequest(
                        "A text part carries no media (give the media its own part).",
                        errors=[{"loc": ["body", "parts", i, "media"], "msg": "not allowed"}],
                    )
                if p.type != "text" and p.media is None and i not in staged:
                    raise InvalidRequest(
                        "A media part needs media (base64, url or media_id).",
                        errors=[{"loc": ["body", "parts", i, "media"], "msg": "required"}],
                    )
            if not content.strip() and all(p.type == "text" for p in parts):
                raise _empty_message(["body", "parts"])
        else:
            if req.content is None or not req.content.strip():
                raise _empty_message(["body", "content"])
            content = req.content
            parts = [Part(type="text", text=content)]
        # Media bytes have their own limits (PARLEY_MEDIA_MAX_MB, the prompt's media config).
        size = len(content.encode()) + len(json.dumps(req.metadata).encode())
        size += sum(len((p.media.url or "").encode()) for p in parts if p.media)
        size += sum(len((p.media.caption or "").encode()) for p in parts if p.media)
        self._check_size(size)
        return content, parts

    def _check_size(self, size: int) -> None:
        limit = self._settings.max_message_bytes
        if size > limit:
            raise MessageTooLarge(f"The message is {size} bytes; the limit is {limit} bytes.")
