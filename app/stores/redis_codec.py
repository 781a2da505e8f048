"""How models are stored in Redis: JSON documents, plus a few plain hash fields for what
the Lua scripts read or change.

A conversation is one hash. `doc` holds the model's JSON without the fields a script
changes or compares; those are separate fields so that an append (`HSET head count upd`,
`HINCRBY ver ...`) never rewrites, or even reads, the document:

    doc     JSON of the rest (id, lineage_id, metadata, variables, forked_from, ...)
    user    user_id                       pack    pack_id
    head    head_message_id (absent: None) count   message_count
    ver     version                       upd     updated_at, µs since the epoch
    exp     expires_at in µs (absent: None)
    ttl     ttl_seconds (absent: None)    status  status
    in out tot   usage token totals       cost    usage.cost_usd ("%.17g": exact)
    fork    forked_from.message_id (absent: None), read by the deletion script
    tok     incarnation token, equal to the ref key's `t`
    ev      expiry version: +1 whenever `exp` changes (orders the ref key's mirror)
    ca      created_at in µs (also in `doc`): the incarnation the append and update
            scripts compare (`app.domain.incarnation`; absent on hashes written before it)

Datetimes are stored as integer microseconds (or pydantic's RFC 3339 text inside JSON),
so they round-trip exactly as tz-aware UTC values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from app.domain import Conversation, Message
from app.stores.redis_keys import KID_SEP, from_us, to_us

_SCALAR_FIELDS = {
    "user_id",
    "pack_id",
    "head_message_id",
    "message_count",
    "version",
    "updated_at",
    "expires_at",
    "ttl_seconds",
    "status",
    "usage",
}

# Fields a replacement (update) may remove because the new value is None.
OPTIONAL_FIELDS = ("head", "exp", "ttl", "fork")


def float_text(value: float) -> str:
    """Shortest text that parses back to exactly `value` (what Lua's %.17g also gives)."""
    return repr(float(value))


def conversation_fields(conversation: Conversation) -> tuple[dict[str, str], list[str]]:
    """(fields to HSET, optional fields to HDEL) for storing `conversation` whole.

    `tok` and `ev` are not included: they belong to the stored incarnation."""
    c = conversation
    fields: dict[str, str] = {
        "doc": c.model_dump_json(exclude=_SCALAR_FIELDS),
        "user": c.user_id,
        "pack": c.pack_id,
        "count": str(c.message_count),
        "ver": str(c.version),
        "upd": str(to_us(c.updated_at)),
        "ca": str(to_us(c.created_at)),
        "status": c.status.value,
        "in": str(c.usage.input_tokens),
        "out": str(c.usage.output_tokens),
        "tot": str(c.usage.total_tokens),
        "cost": float_text(c.usage.cost_usd),
    }
    optional = {
        "head": c.head_message_id,
        "exp": str(to_us(c.expires_at)) if c.expires_at is not None else None,
        "ttl": str(c.ttl_seconds) if c.ttl_seconds is not None else None,
        "fork": c.forked_from.message_id if c.forked_from is not None else None,
    }
    absent = []
    for name, value in optional.items():
        if value is None:
            absent.append(name)
        else:
            fields[name] = value
    return fields, absent


def conversation_from_fields(h: Mapping[str, str]) -> Conversation:
    """Inverse of `conversation_fields` (plus whatever the scripts changed)."""
    data: dict[str, Any] = json.loads(h["doc"])
    data.update(
        user_id=h["user"],
        pack_id=h["pack"],
        head_message_id=h.get("head"),
        message_count=int(h["count"]),
        version=int(h["ver"]),
        updated_at=from_us(int(h["upd"])),
        expires_at=from_us(int(h["exp"])) if "exp" in h else None,
        ttl_seconds=int(h["ttl"]) if "ttl" in h else None,
        status=h["status"],
        usage={
            "input_tokens": int(h["in"]),
            "output_tokens": int(h["out"]),
            "total_tokens": int(h["tot"]),
            "cost_usd": float(h["cost"]),
        },
    )
    return Conversation.model_validate(data)


def pairs_to_dict(flat: list[Any]) -> dict[str, str]:
    """A script's `HGETALL` reply (a flat list) as a dict."""
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}


def message_args(messages: list[Message]) -> list[str]:
    """Per message: id, parent id ("" for a root), writer, JSON (the append script's ARGV)."""
    out: list[str] = []
    for m in messages:
        if not m.id or KID_SEP in m.id or (m.parent_id and KID_SEP in m.parent_id):
            raise ValueError(f"Message id {m.id!r} cannot be stored (empty or has NUL).")
        out += [m.id, m.parent_id or "", m.conversation_id, m.model_dump_json()]
    return out


def messages_from_json(values: list[str | None]) -> list[Message]:
    return [Message.model_validate_json(v) for v in values if v is not None]
