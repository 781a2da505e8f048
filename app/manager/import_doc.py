"""Reading an import body into an `ImportPlan`, or every problem it has (DESIGN §6).

Pure and synchronous: the import service runs it in a worker thread, since a large
document costs real CPU to validate. Two formats are read: Parley's own
`parley.conversation/v1` (`app.domain.export_doc`) and PromptKit's statestore state
(`app.manager.import_promptkit`). Nothing here touches a store; a document with any
problem is refused whole (`InvalidRequest` listing each problem with its `loc`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from app.domain import Checkpoint, Conversation, Message
from app.domain.context_item import ContextItem
from app.domain.export_doc import CHECKSUM_PREFIX, DOCUMENT_FORMAT, document_checksum
from app.domain.ids import ID_PATTERN, ID_RULE
from app.domain.limits import datetime_problems, in_utc
from app.domain.requests import TtlSeconds
from app.domain.summary import Summary
from app.manager.import_caps import field_cap_problems
from app.manager.import_plan import (
    LOC,
    ImportPlan,
    Problem,
    refused,
    schema_problems,
    size_problem,
)
from app.manager.import_promptkit import is_promptkit_state, promptkit_plan
from app.manager.import_records import (
    conversation_problems,
    id_problems,
    message_problems,
    summary_problems,
    turn_problems,
)
from app.manager.import_tool_rule import unanswering_tool_messages

M = TypeVar("M", bound=BaseModel)
MEMBERS = {
    "format", "conversation", "head_message_id", "checkpoints", "messages", "summaries",
    "context_items", "checksum",
}  # fmt: skip
# The stored Conversation model does not bound ttl_seconds (its value came through a
# request); a document's must get the request's bounds, or it is stored already expired.
# Checked on the raw member: the lax model turns "60", 60.0 and true into 60.
TTL_SECONDS: TypeAdapter[int | None] = TypeAdapter(TtlSeconds)


def read_import(raw: Any, *, max_message_bytes: int) -> ImportPlan:
    """The plan of an import body, or `InvalidRequest` with every problem (a message over
    `max_message_bytes` is one, at the message's loc)."""
    if isinstance(raw, Mapping) and "format" in raw:
        if raw["format"] != DOCUMENT_FORMAT:
            raise refused(
                [{"loc": [*LOC, "format"], "msg": f"unknown format; expected {DOCUMENT_FORMAT!r}"}]
            )
        plan, problems = _parley_plan(raw, max_message_bytes)
    elif isinstance(raw, Mapping) and is_promptkit_state(raw):
        plan, problems = promptkit_plan(raw, max_message_bytes)
    else:
        problems = [
            {
                "loc": LOC,
                "msg": f"unknown document: expected a {DOCUMENT_FORMAT!r} document or a "
                "PromptKit statestore state (ID/Messages or conversation_id/messages)",
            }
        ]
        plan = None
    if problems or plan is None:
        raise refused(problems)
    return plan


def _validated(
    model: type[M], value: Any, loc: list[str | int], problems: list[Problem]
) -> M | None:
    """`value` as a `model` with its datetimes in UTC (`app.domain.limits.in_utc`), or
    None with its problems. Members the model does not have are refused (the models ignore
    extras, which would drop a typo'd field silently)."""
    unknown: list[Problem] = []
    if isinstance(value, Mapping):
        known = {*model.model_fields, *model.model_computed_fields}
        known |= {f.alias for f in model.model_fields.values() if f.alias}
        unknown = [
            {"loc": [*loc, key], "msg": "unknown member"}
            for key in sorted(map(str, value))
            if key not in known
        ]
    problems.extend(unknown)
    try:
        validated = model.model_validate(value)
    except ValidationError as exc:
        problems.extend(schema_problems(exc, loc))
        return None
    out_of_range = datetime_problems(validated, loc)
    problems.extend(out_of_range)
    if unknown:
        return None
    return validated if out_of_range else in_utc(validated)  # (refused: not converted)


def _list(raw: Mapping[str, Any], key: str, problems: list[Problem]) -> list[Any]:
    value = raw.get(key)
    if not isinstance(value, list):
        problems.append({"loc": [*LOC, key], "msg": "required: a list"})
        return []
    return value


def _parley_plan(
    raw: Mapping[str, Any], max_message_bytes: int
) -> tuple[ImportPlan | None, list[Problem]]:
    problems: list[Problem] = []
    for key in sorted(set(raw) - MEMBERS):
        problems.append({"loc": [*LOC, key], "msg": "unknown member"})
    conv = _validated(Conversation, raw.get("conversation"), [*LOC, "conversation"], problems)
    raw_conv = raw.get("conversation")
    if conv is not None and isinstance(raw_conv, Mapping):
        try:
            TTL_SECONDS.validate_python(raw_conv.get("ttl_seconds"))
        except ValidationError as exc:
            problems.extend(schema_problems(exc, [*LOC, "conversation", "ttl_seconds"]))
    raw_checkpoints = _list(raw, "checkpoints", problems)
    raw_messages = _list(raw, "messages", problems)
    raw_summaries = _list(raw, "summaries", problems)
    # optional: documents written before context items existed have none
    raw_items = _list(raw, "context_items", problems) if "context_items" in raw else None
    numbered_checkpoints = [
        (i, cp)
        for i, item in enumerate(raw_checkpoints)
        if (cp := _validated(Checkpoint, item, [*LOC, "checkpoints", i], problems)) is not None
    ]
    checkpoints = [cp for _, cp in numbered_checkpoints]
    messages: list[tuple[int, Message]] = [
        (i, m)
        for i, item in enumerate(raw_messages)
        if (m := _validated(Message, item, [*LOC, "messages", i], problems)) is not None
    ]
    problems.extend(
        problem
        for i, m in messages
        if (problem := size_problem(m, [*LOC, "messages", i], max_message_bytes)) is not None
    )
    summaries = [
        sm
        for i, item in enumerate(raw_summaries)
        if (sm := _validated(Summary, item, [*LOC, "summaries", i], problems)) is not None
    ]
    numbered_items = [
        (i, it)
        for i, item in enumerate(raw_items or [])
        if (it := _validated(ContextItem, item, [*LOC, "context_items", i], problems)) is not None
    ]
    items = [it for _, it in numbered_items]
    problems.extend(field_cap_problems(LOC, conv, messages, numbered_items))
    if conv is not None:
        problems.extend(conversation_problems(conv, LOC))
    for i, m in messages:
        problems.extend(message_problems(m, [*LOC, "messages", i]))
    for i, sm in enumerate(summaries):
        problems.extend(summary_problems(sm, [*LOC, "summaries", i]))
    if len({it.id for it in items}) != len(items):
        problems.append({"loc": [*LOC, "context_items"], "msg": "duplicate item ids"})
    head = raw.get("head_message_id")
    if head is not None and not isinstance(head, str):
        problems.append({"loc": [*LOC, "head_message_id"], "msg": "a message id or null"})
        head = None
    for key, records in (
        ("checkpoints", raw_checkpoints),
        ("messages", raw_messages),
        ("summaries", raw_summaries),
        ("context_items", raw_items or []),
    ):
        _check_addressable_ids(key, records, problems)
    _check_checksum(raw, raw_checkpoints, raw_messages, raw_summaries, raw_items, problems)
    ordered = order_tree(messages, raw_messages, problems)
    index: dict[str, int] = {}
    for i, m in messages:
        index.setdefault(m.id, i)  # the first of duplicate ids is the one kept
    problems.extend(turn_problems(ordered, {m.id: (index[m.id], m.turn) for m in ordered}, LOC))
    for at, why in unanswering_tool_messages(ordered):
        problems.append(
            {"loc": [*LOC, "messages", index[ordered[at].id], "tool_call_id"], "msg": why}
        )
    by_id = {m.id: m for m in ordered}
    if head is not None and head not in by_id and not _invalid_id(head, raw_messages):
        problems.append({"loc": [*LOC, "head_message_id"], "msg": "not among the messages"})
    if conv is not None and conv.head_message_id != head:
        problems.append(
            {
                "loc": [*LOC, "conversation", "head_message_id"],
                "msg": "differs from head_message_id",
            }
        )
    for i, cp in numbered_checkpoints:  # (the document's index, past records that failed)
        problems.extend(
            id_problems(cp.conversation_id, [*LOC, "checkpoints", i, "conversation_id"])
        )
    for i, it in numbered_items:
        problems.extend(
            id_problems(it.conversation_id, [*LOC, "context_items", i, "conversation_id"])
        )
    _check_checkpoints(checkpoints, by_id, problems)
    _check_summaries(summaries, by_id, problems)
    if problems or conv is None:
        return None, problems
    return (
        ImportPlan(
            source="parley",
            conversation=conv,
            messages=ordered,
            head_message_id=head,
            checkpoints=checkpoints,
            summaries=summaries,
            context_items=items,
            conversation_id=conv.id,
            user_id=conv.user_id,
            metadata=conv.metadata,
            usage=conv.usage,
        ),
        [],
    )


def _check_checkpoints(
    checkpoints: list[Checkpoint], by_id: Mapping[str, Message], problems: list[Problem]
) -> None:
    seen: set[str] = set()
    for i, cp in enumerate(checkpoints):
        if cp.id in seen:
            problems.append({"loc": [*LOC, "checkpoints", i, "id"], "msg": "duplicate id"})
        seen.add(cp.id)
        if cp.message_id is not None and cp.message_id not in by_id:
            problems.append(
                {"loc": [*LOC, "checkpoints", i, "message_id"], "msg": "not among the messages"}
            )


def _check_summaries(
    summaries: list[Summary], by_id: Mapping[str, Message], problems: list[Problem]
) -> None:
    """Each covers a message of the document at its depth; each extends one of them."""
    ids = {s.id for s in summaries}
    seen: set[str] = set()
    for i, summary in enumerate(summaries):
        loc = [*LOC, "summaries", i]
        if summary.id in seen:
            problems.append({"loc": [*loc, "id"], "msg": "duplicate id"})
        seen.add(summary.id)
        covered = by_id.get(summary.covers_message_id)
        if covered is None:
            problems.append({"loc": [*loc, "covers_message_id"], "msg": "not among the messages"})
        elif covered.depth != summary.covers_depth:
            problems.append({"loc": [*loc, "covers_depth"], "msg": f"should be {covered.depth}"})
        if summary.previous_id is not None and summary.previous_id not in ids:
            problems.append({"loc": [*loc, "previous_id"], "msg": "not among the summaries"})


def _check_addressable_ids(key: str, records: list[Any], problems: list[Problem]) -> None:
    """Every record id follows the API's id rule (`app.domain.ids`): the service never
    writes another, and a record imported with one (`../../x`) could not be read or
    deleted by its URL afterwards."""
    for i, item in enumerate(records):
        rid = item.get("id") if isinstance(item, Mapping) else None
        if isinstance(rid, str) and not re.fullmatch(ID_PATTERN, rid):
            problems.append({"loc": [*LOC, key, i, "id"], "msg": f"not an id: {ID_RULE}"})


def _invalid_id(message_id: str, raw_messages: list[Any]) -> bool:
    """Whether the head names a message that is present but invalid (already reported)."""
    return any(isinstance(m, Mapping) and m.get("id") == message_id for m in raw_messages)


def _check_checksum(
    raw: Mapping[str, Any],
    checkpoints: list[Any],
    messages: list[Any],
    summaries: list[Any],
    context_items: list[Any] | None,
    problems: list[Problem],
) -> None:
    given = raw.get("checksum")
    if not isinstance(given, str) or not given.startswith(CHECKSUM_PREFIX):
        problems.append({"loc": [*LOC, "checksum"], "msg": f"required: {CHECKSUM_PREFIX}<hex>"})
        return
    try:
        expected = document_checksum(
            raw.get("format"), raw.get("conversation"), raw.get("head_message_id"), checkpoints,
            messages, summaries, context_items,
        )  # fmt: skip
    except (TypeError, ValueError):
        expected = ""
    if given != expected:
        problems.append(
            {"loc": [*LOC, "checksum"], "msg": "does not match the document (altered or cut)"}
        )


def order_tree(
    messages: Sequence[tuple[int, Message]], raw: list[Any], problems: list[Problem]
) -> list[Message]:
    """The messages parents first (depth order), after checking that they form a tree:
    unique ids, every parent present, no cycle, each given `depth` its parent's + 1.
    Messages that failed their schema are not here; a parent among them is not reported
    again, and messages under a broken link are left out."""
    by_id: dict[str, Message] = {}
    index: dict[str, int] = {}
    for i, m in messages:
        if m.id in by_id:
            problems.append({"loc": [*LOC, "messages", i, "id"], "msg": "duplicate id"})
            continue
        by_id[m.id] = m
        index[m.id] = i
    present = {  # (only string ids: an object is not hashable, tester T11)
        rid for item in raw if isinstance(item, Mapping) and isinstance(rid := item.get("id"), str)
    }
    depth: dict[str, int] = {}
    bad: set[str] = set()
    for start in by_id:
        trail: list[str] = []
        on_trail: set[str] = set()
        current = start
        broken = False
        while current not in depth:
            if current in bad:
                broken = True
                break
            if current in on_trail:
                problems.append(
                    {
                        "loc": [*LOC, "messages", index[current], "parent_id"],
                        "msg": "parent links form a cycle",
                    }
                )
                broken = True
                break
            trail.append(current)
            on_trail.add(current)
            parent = by_id[current].parent_id
            if parent is None:
                depth[current] = 0
                trail.pop()
                break
            if parent not in by_id:
                if parent not in present:
                    problems.append(
                        {
                            "loc": [*LOC, "messages", index[current], "parent_id"],
                            "msg": "parent not in the document",
                        }
                    )
                broken = True
                break
            current = parent
        if broken:
            bad.update(trail)
            continue
        for mid in reversed(trail):
            parent_id = by_id[mid].parent_id
            assert parent_id is not None
            depth[mid] = depth[parent_id] + 1
    for mid, d in depth.items():
        item = raw[index[mid]]
        if "depth" in item and item["depth"] != d:
            problems.append(
                {"loc": [*LOC, "messages", index[mid], "depth"], "msg": f"should be {d}"}
            )
    ordered = [by_id[mid] for mid in depth]
    ordered.sort(key=lambda m: (depth[m.id], index[m.id]))
    return [m.model_copy(update={"depth": depth[m.id]}) for m in ordered]
