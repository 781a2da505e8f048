"""Key names and number encodings of the Redis store (the layout is described in
`app.stores.redis`). Pure functions, no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DEFAULT_PREFIX = "parley:"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

# Separates a parent id from a child id in the children index (`kids`); ids never hold it.
KID_SEP = "\x00"


def to_us(when: datetime) -> int:
    """Microseconds since the epoch, exactly (naive datetimes are taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // _US


_MIN_US = to_us(datetime.min.replace(tzinfo=UTC))
_MAX_US = to_us(datetime.max.replace(tzinfo=UTC))


def from_us(us: int) -> datetime:
    """Inverse of `to_us`: a tz-aware UTC datetime. A value past the ends of the datetime
    range (`0001-01-01T00:00:00+14:00` was storable: an import before its dates were
    bounded, outside tester T14) reads as the nearest end instead of an OverflowError on
    every read of the record, so it can still be read, exported and deleted."""
    return _EPOCH + timedelta(microseconds=min(max(us, _MIN_US), _MAX_US))


def us_to_ms_ceil(us: int) -> int:
    """Milliseconds for PEXPIREAT, rounded up so Redis never deletes a key before the
    instant it becomes invisible."""
    return -(-us // 1000)


@dataclass(frozen=True)
class LineageKeys:
    """The fixed keys of one lineage, all under the hash tag `{<lineage_id>}`."""

    lineage_id: str
    convs: str  # hash: conversation id -> its expiry in ms ("" = never)
    msg: str  # hash: message id -> Message JSON
    par: str  # hash: message id -> parent id ("" for a root)
    wr: str  # hash: message id -> id of the conversation that wrote it
    kids: str  # zset (all scores 0): "<parent id>\0<child id>", lex-ranged per parent
    tag: str  # "<prefix>{<lineage_id>}:" — per-conversation keys start with it

    @property
    def mrefs(self) -> str:
        """Zset (scores 0): "<media id>\0<message id>" per media reference of a stored
        message, written by the append script and removed by the deletion script."""
        return f"{self.tag}mrefs"

    @property
    def sums(self) -> str:
        """Hash: summary id -> Summary JSON (`redis_summaries`); follows the lineage's
        expiry, dropped with the messages the summaries cover."""
        return f"{self.tag}sums"

    @property
    def ctx(self) -> str:
        """Hash: "<conversation id>\0<item id>" -> ContextItem JSON
        (`redis_context_items`); follows the lineage's expiry, an item dropped with its
        conversation."""
        return f"{self.tag}ctx"

    @property
    def gc(self) -> str:
        """Hash, present while a deletion's unreachable messages are being reclaimed in
        chunks (`redis_reclaim`): `cur` is the scan cursor over `wr` ("done" once the
        pass ended)."""
        return f"{self.tag}gc"

    @property
    def gct(self) -> str:
        """List: message ids to look at again (parents of reclaimed messages)."""
        return f"{self.tag}gct"

    @property
    def fixed(self) -> list[str]:
        """KEYS[1..5] of every lineage script, in this order."""
        return [self.convs, self.msg, self.par, self.wr, self.kids]

    def conv(self, conversation_id: str) -> str:
        """Hash: the conversation (see `redis_codec`)."""
        return f"{self.tag}c:{conversation_id}"

    def cps(self, conversation_id: str) -> str:
        """Hash: checkpoint id -> Checkpoint JSON, for one conversation."""
        return f"{self.tag}cp:{conversation_id}"

    def with_conversation(self, conversation_id: str) -> list[str]:
        """KEYS[1..7]: the fixed keys plus the conversation's hash and checkpoints."""
        return [*self.fixed, self.conv(conversation_id), self.cps(conversation_id)]


@dataclass(frozen=True)
class RedisKeys:
    """Every key name the store uses, under one prefix (default `parley:`)."""

    prefix: str = DEFAULT_PREFIX

    def lineage(self, lineage_id: str) -> LineageKeys:
        tag = f"{self.prefix}{{{lineage_id}}}:"
        return LineageKeys(
            lineage_id=lineage_id,
            convs=f"{tag}convs",
            msg=f"{tag}msg",
            par=f"{tag}par",
            wr=f"{tag}wr",
            kids=f"{tag}kids",
            tag=tag,
        )

    def ref(self, conversation_id: str) -> str:
        """Hash: conversation id -> lineage (`l`), incarnation token (`t`), claim time in ms
        (`c`), committed flag (`s`) and expiry version (`ev`). Its own slot."""
        return f"{self.prefix}ref:{{{conversation_id}}}"

    @property
    def reclaim_pending(self) -> str:
        """Zset: lineage ids with a chunked reclaim in progress, scored by when it started
        (ms), so the sweep finishes one whose deleting process died (`redis_reclaim`)."""
        return f"{self.prefix}gc:pending"

    # --- listing indexes (hints; see the consistency model) -----------------------------

    @property
    def idx_all(self) -> str:
        return f"{self.prefix}idx:all"

    def idx_user(self, user_id: str) -> str:
        return f"{self.prefix}idx:user:{user_id}"

    def idx_pack(self, pack_id: str) -> str:
        return f"{self.prefix}idx:pack:{pack_id}"

    @property
    def idx_ids(self) -> str:
        """Zset with every score 0: conversation ids in lex order, for prefixes."""
        return f"{self.prefix}idx:ids"

    @property
    def idx_exp(self) -> str:
        """Zset: `exp_member(...)` scored by expires_at in µs, to clean up the other
        indexes after Redis expired a conversation."""
        return f"{self.prefix}idx:exp"

    # --- media records (each its own slot; see `redis_media`) ----------------------------

    def media(self, media_id: str) -> str:
        """Hash: `r` record JSON, `a` attached, `k` retain, `d` doomed-at ms."""
        return f"{self.prefix}m:{{{media_id}}}"

    def media_lineages(self, media_id: str) -> str:
        """Hash, same slot as `media`: lineage id -> "c" (a committed reference may exist
        there) or "p:<ms>:<token>" (a commit referencing it is in flight)."""
        return f"{self.prefix}ml:{{{media_id}}}"

    def media_owner(self, user_id: str) -> str:
        """Hash: sha256 -> the user's media id."""
        return f"{self.prefix}mu:{{{user_id}}}"

    def media_blob(self, sha256: str) -> str:
        """Zset: media ids holding these bytes, scored by when the hint was written."""
        return f"{self.prefix}mb:{{{sha256}}}"

    @property
    def media_collect(self) -> str:
        """Zset: attached, non-retained media ids, scored by when to look at them next."""
        return f"{self.prefix}mc"

    # --- uploaded packs --------------------------------------------------------------

    @property
    def pack_docs(self) -> str:
        return f"{self.prefix}{{packs}}:docs"

    @property
    def pack_order(self) -> str:
        return f"{self.prefix}{{packs}}:order"


def exp_member(conversation_id: str, user_id: str, pack_id: str) -> str:
    """Member of `idx:exp`: enough to find every index entry of the conversation."""
    return json.dumps([conversation_id, user_id, pack_id], separators=(",", ":"))


def parse_exp_member(member: str) -> tuple[str, str, str] | None:
    try:
        cid, user, pack = json.loads(member)
    except (ValueError, TypeError):
        return None
    if not all(isinstance(v, str) for v in (cid, user, pack)):
        return None
    return cid, user, pack


def pack_field(pack_id: str, version: str) -> str:
    return json.dumps([pack_id, version], separators=(",", ":"))
