"""The message tree over HTTP (DESIGN §3, §6 "Checkpoints, branches, context"): checkpoints,
rollback, choosing the head, listing branches (forks: `app/manager/forks.py`).

Every operation here is a pointer move and never copies or deletes a message. Their cost
does not grow with the history: a checkpoint or rollback at the head is O(1); one at an
earlier message walks only from the head back to it (`_on_path`), never the whole path.
Listing branches is the one operation that reads the whole current path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from app.coordination.base import Coordinator
from app.domain import (
    Checkpoint,
    Conversation,
    Message,
    Page,
    Role,
    new_id,
)
from app.domain.incarnation import Incarnation, same_incarnation, wrote
from app.domain.pagination import decode_item_cursor, encode_item_cursor
from app.domain.preconditions import IfMatch
from app.domain.principal import Principal
from app.domain.requests import CreateCheckpoint, Rollback, SetHead
from app.errors import (
    CheckpointNotFound,
    ConversationNotFound,
    InvalidRequest,
    MessageNotFound,
    PreconditionFailed,
    VersionConflict,
)
from app.manager.conversations import ConversationService
from app.manager.known_ancestors import KnownAncestors
from app.manager.pending_calls import status_at
from app.stores.base import StateStore

log = logging.getLogger("parley.tree")

HEAD_RETRIES = 20
PREVIEW_CHARS = 200


@dataclass
class Branch:
    """One leaf this conversation can select as its head (or the head itself)."""

    head_message_id: str
    is_head: bool
    fork_point_id: str | None  # the message of the current path it branches off (None: root)
    depth: int
    message_count: int
    role: Role
    preview: str
    created_at: datetime


class TreeService:
    def __init__(
        self,
        *,
        store: StateStore,
        conversations: ConversationService,
        coordinator: Coordinator,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._conversations = conversations
        self._coord = coordinator
        self._now = clock
        self.known_ancestors = KnownAncestors()

    # --- locating messages -------------------------------------------------------------

    async def message(self, conv: Conversation, message_id: str) -> Message:
        found = await self._store.get_messages(conv.lineage_id, [message_id])
        if not found:
            raise MessageNotFound(f"Message {message_id!r} not found in this conversation.")
        return found[0]

    async def _on_path_of(
        self, conv: Conversation, tip_id: str | None, tip_depth: int, message: Message
    ) -> bool:
        """Whether `message` is an ancestor of (or is) the message `tip_id` at `tip_depth`:
        `tip_depth - message.depth` parent links followed by id (`ancestor_id`), never the
        whole path and no message's data (review R8: reading every message between them
        made a page deep in a fork's inherited history cost 100-280 ms at 10,000)."""
        if tip_id is None or message.depth > tip_depth:
            return False
        if self.known_ancestors.knows(conv.lineage_id, tip_id, message.id):
            return True
        steps = tip_depth - message.depth
        found = await self._store.ancestor_id(conv.lineage_id, tip_id, steps=steps)
        if found != message.id:
            return False
        self.known_ancestors.remember(conv.lineage_id, tip_id, message.id)
        return True

    async def _on_path(self, conv: Conversation, message: Message) -> bool:
        return await self._on_path_of(conv, conv.head_message_id, conv.message_count - 1, message)

    async def path_message(self, conv: Conversation, message_id: str) -> Message:
        """A message of the conversation's current path (404 otherwise)."""
        message = await self.message(conv, message_id)
        if not await self._on_path(conv, message):
            raise MessageNotFound(
                f"Message {message_id!r} is not on this conversation's current path."
            )
        return message

    async def visible_message(self, conv: Conversation, message_id: str) -> Message:
        """A message this conversation may move to or branch from: one it wrote (this
        incarnation of its id: `incarnation.wrote`), or one on its current path or its fork
        origin's path. Messages other forks of the lineage
        wrote stay invisible (a fork may belong to another user)."""
        message, _ = await self.visible_with_tip(conv, message_id)
        return message

    async def visible_with_tip(
        self, conv: Conversation, message_id: str
    ) -> tuple[Message, str | None]:
        """`visible_message`, and the message (the head or the fork origin) whose path it
        was found on: None when the conversation wrote it (no path was checked)."""
        message = await self.message(conv, message_id)
        if wrote(conv, message):
            return message, None
        if await self._on_path(conv, message):
            return message, conv.head_message_id
        origin = conv.forked_from
        if origin is not None and origin.message_id is not None:
            found = await self._store.get_messages(conv.lineage_id, [origin.message_id])
            if found and await self._on_path_of(conv, found[0].id, found[0].depth, message):
                return message, found[0].id
        raise MessageNotFound(f"Message {message_id!r} not found in this conversation.")

    # --- checkpoints -------------------------------------------------------------------

    async def create_checkpoint(
        self,
        principal: Principal,
        conversation_id: str,
        req: CreateCheckpoint,
        if_match: IfMatch | None = None,
    ) -> Checkpoint:
        """At the head (or `message_id`) of the conversation read, which `if_match` is
        checked against."""
        conv = await self._conversations.get(principal, conversation_id, if_match=if_match)
        if req.message_id is None or req.message_id == conv.head_message_id:
            message_id, count = conv.head_message_id, conv.message_count
        else:
            message = await self.visible_message(conv, req.message_id)
            message_id, count = message.id, message.depth + 1
        checkpoint = Checkpoint(
            id=new_id(),
            conversation_id=conv.id,
            name=req.name,
            description=req.description,
            kind=req.kind,
            message_id=message_id,
            message_count=count,
            created_at=self._now(),
            metadata=req.metadata,
        )
        # the incarnation read and authorized, not a namesake created since (review R-A2)
        return await self._store.create_checkpoint(checkpoint, incarnation=Incarnation.of(conv))

    async def list_checkpoints(
        self,
        principal: Principal,
        conversation_id: str,
        *,
        kind: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page[Checkpoint]:
        """Newest first. The cursor is the (created_at, id) of the last one returned (bound to
        this conversation), so a
        checkpoint deleted between pages does not break paging."""
        conv = await self._conversations.get(principal, conversation_id)
        items = await self._store.list_checkpoints(conv.id, kind=kind)
        items.sort(key=lambda c: (c.created_at, c.id), reverse=True)
        if cursor is not None:
            after = decode_item_cursor(cursor, conv.id)
            items = [c for c in items if (c.created_at, c.id) < after]
        page = items[:limit]
        next_cursor = None
        if len(items) > limit:
            last = page[-1]
            next_cursor = encode_item_cursor(conv.id, last.created_at, last.id)
        return Page(data=page, next_cursor=next_cursor)

    async def get_checkpoint(
        self, principal: Principal, conversation_id: str, checkpoint_id: str
    ) -> Checkpoint:
        conv = await self._conversations.get(principal, conversation_id)
        return await self.checkpoint(conv, checkpoint_id)

    async def checkpoint(self, conv: Conversation, checkpoint_id: str) -> Checkpoint:
        checkpoint = await self._store.get_checkpoint(conv.id, checkpoint_id)
        if checkpoint is None:
            raise CheckpointNotFound(f"Checkpoint {checkpoint_id!r} not found.")
        return checkpoint

    async def delete_checkpoint(
        self,
        principal: Principal,
        conversation_id: str,
        checkpoint_id: str,
        if_match: IfMatch | None = None,
    ) -> None:
        conv = await self._conversations.get(principal, conversation_id, if_match=if_match)
        if not await self._store.delete_checkpoint(conv.id, checkpoint_id):
            raise CheckpointNotFound(f"Checkpoint {checkpoint_id!r} not found.")

    # --- moving the head ---------------------------------------------------------------

    async def rollback(
        self,
        principal: Principal,
        conversation_id: str,
        req: Rollback,
        if_match: IfMatch | None = None,
    ) -> tuple[Conversation, str | None]:
        """Move the head back to a checkpoint or to a message of the current path; return
        the conversation and the head it left (restorable with `set_head`)."""
        if (req.checkpoint_id is None) == (req.message_id is None):
            raise InvalidRequest(
                "Give exactly one of checkpoint_id and message_id.",
                errors=[{"loc": ["body"], "msg": "exactly one of checkpoint_id, message_id"}],
            )
        conv = await self._conversations.get(principal, conversation_id, if_match=if_match)
        target: Message | None
        if req.checkpoint_id is not None:
            checkpoint = await self.checkpoint(conv, req.checkpoint_id)
            target = None
            if checkpoint.message_id is not None:
                target = await self.message(conv, checkpoint.message_id)
        else:
            assert req.message_id is not None
            target = await self.path_message(conv, req.message_id)
        return await self._move_head(principal, conv, target, if_match)

    async def set_head(
        self,
        principal: Principal,
        conversation_id: str,
        req: SetHead,
        if_match: IfMatch | None = None,
    ) -> tuple[Conversation, str | None]:
        conv = await self._conversations.get(principal, conversation_id, if_match=if_match)
        target = await self.visible_message(conv, req.message_id)
        return await self._move_head(principal, conv, target, if_match)

    async def _move_head(
        self,
        principal: Principal,
        conv: Conversation,
        target: Message | None,
        if_match: IfMatch | None,
    ) -> tuple[Conversation, str | None]:
        """Under the turn lock (409 `conversation_busy` while a turn runs: its commit
        would otherwise land on the abandoned branch), with optimistic concurrency against
        concurrent PATCHes. With `If-Match` the version checked (before the target was
        read) must still be current at the write: a change in between is 412, as for a
        PATCH; `*` re-reads and retries."""
        lease = await self._coord.locks.acquire(conv.id, f"head-{new_id()}", wait_s=0)
        try:
            status = await status_at(self._store, conv.lineage_id, target)
            for _ in range(HEAD_RETRIES):
                abandoned = conv.head_message_id
                moved = conv.model_copy(
                    update={
                        "head_message_id": target.id if target else None,
                        "message_count": target.depth + 1 if target else 0,
                        "status": status,
                        "updated_at": self._now(),
                    }
                )
                try:
                    stored = await self._store.update_conversation(
                        moved, expected_version=conv.version
                    )
                except VersionConflict:
                    if if_match is not None and if_match.tags is not None:
                        raise PreconditionFailed(
                            f"Conversation changed; If-Match {if_match} is stale."
                        ) from None
                    fresh = await self._conversations.get(principal, conv.id)
                    if not same_incarnation(fresh, conv):  # `target` is of the one read
                        raise ConversationNotFound(f"Conversation {conv.id!r} not found.") from None
                    conv = fresh
                    continue
                log.info(
                    "head moved conversation=%s %s -> %s", conv.id, abandoned, moved.head_message_id
                )
                return stored, abandoned
        finally:
            await lease.release()
        raise VersionConflict("The conversation kept changing; try again.")

    # --- branches ----------------------------------------------------------------------

    async def branches(self, principal: Principal, conversation_id: str) -> list[Branch]:
        """Every leaf reachable from the conversation's current path, or from a root of the
        tree, through messages it wrote, plus the head (marked) when it is not a leaf,
        oldest first."""
        conv = await self._conversations.get(principal, conversation_id)
        # Every root, with a head too: an edit of the first message is another root, whose
        # branch no path message leads to (outside tester T19: those were never listed).
        roots = await self._store.list_children(conv.lineage_id, None)
        path: list[Message] = []
        if conv.head_message_id is not None:
            path = await self._store.get_path(
                conv.lineage_id, conv.head_message_id, limit=conv.message_count
            )
            path.reverse()
        on_path = {m.id for m in path}
        # fork point of every node being explored: the path message it hangs under
        origin: dict[str, str | None] = {}
        frontier: list[Message] = []
        leaves: list[Message] = []
        parents = [m.id for m in path]
        kids = await self._store.children_of(conv.lineage_id, parents) if parents else {}
        for m in path:
            for child in kids.get(m.id, []):
                if child.id not in on_path and wrote(conv, child):
                    origin[child.id] = m.id
                    frontier.append(child)
        for root in roots:
            if root.id not in on_path and wrote(conv, root):
                origin[root.id] = None
                frontier.append(root)
        while frontier:
            level = await self._store.children_of(conv.lineage_id, [m.id for m in frontier])
            nxt: list[Message] = []
            for m in frontier:
                own = [c for c in level.get(m.id, []) if wrote(conv, c)]
                if not own:
                    leaves.append(m)
                for child in own:
                    origin[child.id] = origin[m.id]
                    nxt.append(child)
            frontier = nxt
        out = [
            Branch(
                head_message_id=m.id,
                is_head=False,
                fork_point_id=origin[m.id],
                depth=m.depth,
                message_count=m.depth + 1,
                role=m.role,
                preview=m.content[:PREVIEW_CHARS],
                created_at=m.created_at,
            )
            for m in leaves
        ]
        if path:
            head = path[-1]
            out.append(
                Branch(
                    head_message_id=head.id,
                    is_head=True,
                    fork_point_id=None,
                    depth=head.depth,
                    message_count=head.depth + 1,
                    role=head.role,
                    preview=head.content[:PREVIEW_CHARS],
                    created_at=head.created_at,
                )
            )
        out.sort(key=lambda b: (b.created_at, b.head_message_id))
        return out
