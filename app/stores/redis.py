"""`redis://`, `rediss://`, `redis+cluster://`: the Redis `StateStore` (DESIGN §4).

Implementation: `redis_store` (the class), its calls per kind of record
(`redis_conversations`, `redis_messages`, `redis_checkpoints`, `redis_context_items`,
`redis_summaries`, `redis_media`, `redis_packs`; `redis_after_commit` for the bookkeeping
after a script), `redis_scripts` (Lua), `redis_lineage` (the lineage scripts' calls and
retries), `redis_refs` (id -> lineage: ref keys, cache, claims), `redis_index` (listing
indexes), `redis_codec` (encoding), `redis_keys` (names, time units), `redis_conn` (URLs,
client, what "unavailable" means).

Key layout
----------
Every key starts with the prefix `P` (default `parley:`, `?prefix=` in the URL). All keys
of one lineage (a conversation and its forks, `Conversation.lineage_id` = L) share the
hash tag `{L}`, so every multi-key operation on a lineage (append: conversation +
messages + children index; deletion; checkpoints) is one Lua script on one Cluster slot:

    P{L}:convs       hash  conversation id -> its expiry in ms ("" = never)
    P{L}:msg         hash  message id -> Message JSON          (one field per message)
    P{L}:par         hash  message id -> parent id ("" = root)  (the tree, for walks)
    P{L}:wr          hash  message id -> writer conversation id (for deletion)
    P{L}:kids        zset  "<parent>\\0<child>", score 0        (children, by lex range)
    P{L}:c:<id>      hash  the conversation (fields in `redis_codec`)
    P{L}:cp:<id>     hash  checkpoint id -> Checkpoint JSON
    P{L}:mrefs       zset  "<media id>\\0<message id>", score 0 (media references)
    P{L}:sums        hash  summary id -> Summary JSON (follows the lineage's expiry)
    P{L}:gc          hash  `cur`: scan cursor of a chunked reclaim in progress
    P{L}:gct         list  message ids the reclaim looks at again
    P{L}:ctx         hash  "<conversation id>\\0<item id>" -> ContextItem JSON (follows the
                           lineage's expiry; a conversation's fields go with it)

Outside lineages, each in its own slot:

    P ref:{<id>}     hash  conversation id -> lineage (`l`), incarnation token (`t`),
                           claim time (`c`), committed flag (`s`), expiry version (`ev`)
    P idx:all        zset  conversation id, score = updated_at in µs
    P idx:user:<u>   zset  same, per user        P idx:pack:<p>  zset  same, per pack
    P idx:ids        zset  conversation id, score 0 (lex order, for prefix listing)
    P idx:exp        zset  [id, user, pack] JSON, score = expires_at in µs
    P{packs}:docs    hash  [pack_id, version] -> document; P{packs}:order list (upload order)

Operations
----------
* get: the lineage of an id comes from the ref key, cached in-process (a conversation
  never changes lineage while it exists; a cached lineage that finds nothing re-reads the
  ref), so a read is one HGETALL. Expiry is checked against the caller's `now`, so an
  expired conversation is invisible before Redis deletes it.
* append: one EVALSHA doing the compare-and-set on `head`, the duplicate-id check, HSET of
  the new message fields only, counters by HINCRBY, sliding expiry; it returns the new
  state. O(messages appended). On one server it re-scores the index hints too (unless a
  sliding TTL or a changed user or pack needs the full index write); on a cluster, or
  then, one pipelined round trip follows for the index hints (and, with a sliding TTL,
  the ref's expiry), which cannot join the script there.
* get_path: one EVALSHA that walks `par` for `limit` steps and HMGETs those messages.
* create: claim the ref key (a script: first writer wins), then write the conversation in
  its lineage. A ref found taken is checked: a live conversation -> ConversationExists; an
  expired one is reclaimed and the ref released; a ref whose conversation is gone is
  released if it was committed (or its claim is older than 30 s, a crashed creator); an
  uncommitted fresh claim is a concurrent create -> ConversationExists.
* delete: the lineage is marked in `P gc:pending` (zset, own slot); one script reads the
  other conversations of the lineage (their keys passed in KEYS, as read from `convs`
  just before; it asks for a retry if that set changed) and drops the conversation, or
  every lineage key if no conversation remains (O(conversations), never O(messages)).
  The unreachable messages whose writer is gone (rule of `sql_reclaim`) are then removed
  in chunks of 500 per script call (`redis_reclaim`), at most 20 chunks per deletion; a
  reclaim cut short (a crash, a failure, a huge lineage) is continued by the sweep
  (`purge_expired`), the next deletion in the lineage, or a create in it. Then the index
  entries go, then the ref (so a re-created id is never un-indexed).

Expiry (native)
---------------
`expires_at` becomes PEXPIREAT (rounded up to the ms) on the conversation's hash and its
checkpoints; the lineage keys get the latest expiry among the lineage's conversations, or
none if one never expires, recomputed by every script that changes an expiry or creates
lineage keys. The ref key gets the expiry plus a 60 s grace period, written after the
script by a "mirror" call ordered by the conversation's expiry version (`ev`), so
concurrent touches converge and the ref never disappears before its conversation.
Messages of a conversation Redis expired while other conversations keep the lineage alive
stay until the lineage expires, the id is created again, or another deletion in the lineage
reclaims them (deletion treats a vanished conversation as deleted). `purge_expired` only
tidies indexes and returns 0.

Consistency model of the listing indexes
----------------------------------------
Index keys live in other slots than conversations, so on a cluster they cannot change
atomically with them. They are hints: a create writes them in its script (one server) or
just before it (cluster); update and append rewrite them in their script (one server)
or right after it (a pipeline; a lost write is repaired by listing, below); a deletion
removes them after.
`list_conversations` reads candidates from one index in (updated_at desc, id desc) order
strictly after the cursor and verifies each against the conversation itself: it must
exist, be live at `now`, match every filter, and have `updated_at` equal to the indexed
score; anything else is skipped. Entries of vanished conversations are removed (only if
not re-scored since, and not while the id has a fresh uncommitted claim: a cluster
create in flight), entries behind their conversation are moved forward (ZADD GT), and
entries of conversations Redis expired are dropped in batches by `collect_expired` (on
create and `purge_expired`). Consequences:

* pages never hold duplicates or leave gaps: the cursor is the (updated_at, id) of the last
  returned conversation, and a conversation is only returned at its verified position;
* a call examines a bounded number of candidates (`redis_index.DEFAULT_BUDGET`); with a
  very selective filter it may return a short (even empty) page whose cursor continues
  the scan;
* a conversation whose update/append index write is in flight (or was lost) is missing
  from listings until a listing moves its entry forward or its next write; it is never
  listed wrongly, and its entries still exist (erasure finds it);
* `delete_user_conversations` deletes the conversations found in the user's index and
  every conversation hash whose `user` is the user, found by a SCAN of the conversation
  hashes (`redis_scan`; O(keys), every primary of a cluster): complete even when an
  index entry was lost.

Failures
--------
The client's pool (one server) waits up to `pool_timeout_s` for a free connection, so a
burst beyond `max_connections` queues instead of failing. Connection errors, timeouts, a
loading server, a cluster that is down or re-sharding raise `StoreUnavailable` (503)
after short timeouts and a couple of fast retries (see `redis_conn`). Retried scripts
are safe: a re-run append or create recognizes its own earlier success."""

from app.stores.redis_store import RedisStore

__all__ = ["RedisStore"]
