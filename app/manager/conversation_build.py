"""What a conversation holds when it is created or PATCHed (`ConversationService`, which
stores it): the pack's rendered system prompt and variables, the provider and model, the
context and checkpoint policies merged over the settings' defaults within their caps, the
TTL and expiry. Refusals are `InvalidRequest`s (422) raised before anything is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from app.domain import ContextPolicy, Conversation, new_id
from app.domain.limits import METADATA_LIMITS, VARIABLES_LIMITS
from app.domain.requests import CreateConversation, PatchConversation
from app.errors import InvalidRequest
from app.manager.conversation_policy import (
    check_context_policy,
    merge_nullable,
    merged_policy,
    merged_within_caps,
)
from app.manager.packs import PackLibrary
from app.packs import PromptPack, render_system_prompt
from app.providers.base import LLMProvider
from app.settings import Settings


class ConversationBuilder:
    def __init__(
        self,
        *,
        packs: PackLibrary,
        providers: Mapping[str, LLMProvider],
        settings: Settings,
        clock: Callable[[], datetime],
    ) -> None:
        self._packs = packs
        self._providers = providers
        self._settings = settings
        self._now = clock

    async def new(self, user_id: str, req: CreateConversation, lineage_id: str) -> Conversation:
        """The conversation `req` creates for `user_id` in `lineage_id` (not stored)."""
        pack = await self._packs.get(req.pack_id, req.pack_version)
        provider_name = req.provider or self._settings.resolved_provider()
        provider = self._providers.get(provider_name)
        if provider is None:
            raise InvalidRequest(
                f"Provider {provider_name!r} is not configured.",
                errors=[
                    {"loc": ["body", "provider"], "msg": f"configured: {sorted(self._providers)}"}
                ],
            )
        model = req.model or self._default_model(provider)
        now = self._now()
        system_prompt, variables = self._render(pack, req.prompt_name, req.variables, model, now)
        if req.system_prompt is not None:
            system_prompt = req.system_prompt
        policy = merged_policy(self._default_context_policy(), req.context_policy, "context_policy")
        check_context_policy(policy, self._providers)
        ttl = req.ttl_seconds or self._settings.default_ttl_s
        conv_id = req.conversation_id or new_id()
        conv = Conversation(
            id=conv_id,
            user_id=user_id,
            pack_id=pack.id,
            pack_version=pack.version,
            prompt_name=req.prompt_name,
            provider=provider.name,
            model=model,
            variables=variables,
            system_prompt=system_prompt,
            custom_system_prompt=req.system_prompt is not None,
            metadata=req.metadata,
            context_policy=policy,
            checkpoint_policy=merged_policy(
                self._settings.checkpoint_policy(), req.checkpoint_policy
            ),
            created_at=now,
            updated_at=now,
            ttl_seconds=ttl,
            expires_at=now + timedelta(seconds=ttl) if ttl else None,
            # a lineage of its own, never the id: ids are reusable, so a conversation
            # re-created under a deleted one's id must not be taken for it by that one's
            # turns (the commit's compare-and-set names the lineage), runs and keys, which
            # all check the lineage (outside tester T4/T5)
            lineage_id=lineage_id,
            media_policy=req.media_policy,
        )
        return conv

    async def patched(self, conv: Conversation, req: PatchConversation) -> Conversation:
        """`conv` as `req` changes it (not stored)."""
        now = self._now()
        update: dict[str, Any] = {"updated_at": now}
        if req.metadata is not None:
            update["metadata"] = merged_within_caps(
                METADATA_LIMITS, merge_nullable(conv.metadata, req.metadata), "metadata"
            )
        if req.variables is not None:
            pack = await self._packs.get(conv.pack_id, conv.pack_version)
            wanted = merged_within_caps(
                VARIABLES_LIMITS, merge_nullable(conv.variables, req.variables), "variables"
            )
            text, variables = self._render(pack, conv.prompt_name, wanted, conv.model, now)
            update["variables"] = variables
            if not conv.custom_system_prompt:
                update["system_prompt"] = text
        sent = req.model_fields_set
        if req.context_policy is not None:
            # checked merged: a partial policy alone would be checked against the defaults
            policy = merged_policy(conv.context_policy, req.context_policy, "context_policy")
            check_context_policy(policy, self._providers)
            update["context_policy"] = policy
        elif "context_policy" in sent:  # an explicit null resets to the settings' defaults
            update["context_policy"] = self._default_context_policy()
        if req.checkpoint_policy is not None:
            base = conv.checkpoint_policy or self._settings.checkpoint_policy()
            update["checkpoint_policy"] = merged_policy(base, req.checkpoint_policy)
        elif "checkpoint_policy" in sent:
            update["checkpoint_policy"] = self._settings.checkpoint_policy()
        if "ttl_seconds" in sent and req.ttl_seconds is None:
            raise InvalidRequest(
                "ttl_seconds cannot be removed: give a number of seconds, or leave the field "
                "out to keep the conversation's TTL.",
                errors=[{"loc": ["body", "ttl_seconds"], "msg": "null is not accepted here"}],
            )
        ttl = req.ttl_seconds or conv.ttl_seconds
        if req.ttl_seconds is not None:
            update["ttl_seconds"] = req.ttl_seconds
        if ttl:
            update["expires_at"] = now + timedelta(seconds=ttl)
        return conv.model_copy(update=update)

    def _default_context_policy(self) -> ContextPolicy:
        """The `context_policy` of a conversation created without one (and of one PATCHed
        with `"context_policy": null`)."""
        return ContextPolicy(
            max_input_tokens=self._settings.default_max_input_tokens,
            reserve_output_tokens=self._settings.default_reserve_output_tokens,
        )

    def _default_model(self, provider: LLMProvider) -> str:
        if self._settings.default_model and provider.name == self._settings.resolved_provider():
            return self._settings.default_model
        return provider.default_model

    def _render(
        self,
        pack: PromptPack,
        prompt_name: str,
        variables: Mapping[str, Any],
        model: str,
        now: datetime,
    ) -> tuple[str, dict[str, Any]]:
        rendered = render_system_prompt(pack, prompt_name, variables, now=now, model=model)
        return rendered.text, dict(rendered.variables)
