"""The checks a create or PATCH of a conversation applies to the policies and maps it
merges over what is stored (or over the settings' defaults): the merge must itself be
valid, not only the request's part of it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from app.domain import ContextPolicy
from app.domain.limits import MapLimits
from app.errors import InvalidRequest
from app.providers.base import LLMProvider


def merge_nullable(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated with `patch`, where a None value removes the key."""
    merged = dict(base)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def merged_within_caps(limits: MapLimits, merged: dict[str, Any], field: str) -> dict[str, Any]:
    """A PATCH merges into what is stored: the result must stay within the caps too."""
    problem = limits.problem(merged)
    if problem:
        raise InvalidRequest(
            f"After merging, {problem}.",
            errors=[{"loc": ["body", field], "msg": problem}],
        )
    return merged


def check_context_policy(policy: ContextPolicy, providers: Mapping[str, LLMProvider]) -> None:
    loc = ["body", "context_policy"]
    summarize_only = {"summarizer": policy.summarizer, "summary_prompt": policy.summary_prompt}
    for name, value in summarize_only.items():
        if value is not None and policy.strategy != "summarize":
            raise InvalidRequest(
                f"{name} applies only to strategy 'summarize', not {policy.strategy!r}.",
                errors=[{"loc": [*loc, name], "msg": "only with summarize"}],
            )
    if policy.summarizer is not None and policy.summarizer.provider not in providers:
        raise InvalidRequest(
            f"Summarizer provider {policy.summarizer.provider!r} is not configured.",
            errors=[
                {
                    "loc": [*loc, "summarizer", "provider"],
                    "msg": f"configured: {sorted(providers)}",
                }
            ],
        )
    if policy.strategy == "sliding_window" and policy.max_messages is None:
        raise InvalidRequest(
            "Context strategy 'sliding_window' needs max_messages (the window's length).",
            errors=[{"loc": [*loc, "max_messages"], "msg": "required for sliding_window"}],
        )
    if policy.strategy != "sliding_window" and policy.max_messages is not None:
        raise InvalidRequest(
            f"max_messages applies only to strategy 'sliding_window', not {policy.strategy!r}.",
            errors=[{"loc": [*loc, "max_messages"], "msg": "only with sliding_window"}],
        )
    if policy.reserve_output_tokens >= policy.max_input_tokens:
        raise InvalidRequest(
            "reserve_output_tokens must be smaller than max_input_tokens.",
            errors=[{"loc": ["body", "context_policy"], "msg": "reserve >= max_input_tokens"}],
        )
    room = policy.max_input_tokens - policy.reserve_output_tokens
    if policy.max_context_tokens is not None and policy.max_context_tokens >= room:
        raise InvalidRequest(
            f"max_context_tokens ({policy.max_context_tokens}) must be smaller than "
            f"max_input_tokens - reserve_output_tokens ({room}): the history needs room too.",
            errors=[{"loc": [*loc, "max_context_tokens"], "msg": "not below the input budget"}],
        )


PolicyT = TypeVar("PolicyT", bound=BaseModel)


def merged_policy(base: PolicyT, given: PolicyT | None, name: str = "checkpoint_policy") -> PolicyT:
    """`given` over `base`: the fields a request sent replace `base`'s, the ones it left
    out keep `base`'s (the settings' at create, the conversation's at PATCH), not the
    model's own defaults. Checked again as a whole (e.g. keep_all_hours within
    max_age_days), a 422 when the merge is not valid."""
    if given is None:
        return base
    merged = {**base.model_dump(), **given.model_dump(include=given.model_fields_set)}
    try:
        return type(base).model_validate(merged)
    except ValidationError as exc:
        errors = [{"loc": ["body", name, *e["loc"]], "msg": e["msg"]} for e in exc.errors()]
        raise InvalidRequest(f"The merged {name} is not valid.", errors=errors) from None
