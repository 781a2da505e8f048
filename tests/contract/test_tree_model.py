"""Random histories of one lineage (appends, edits, rollbacks, forks, checkpoints, deletes)
checked against a plain in-test model of the message tree and of the deletion rule."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.domain import Conversation, Message, new_id, utcnow
from app.stores.base import StateStore
from tests.contract.builders import append, checkpoint, conversation, fork_of, message


@dataclass
class Model:
    lineage_id: str
    messages: dict[str, Message] = field(default_factory=dict)  # present, in creation order
    ever: list[str] = field(default_factory=list)
    convs: dict[str, Conversation] = field(default_factory=dict)
    marks: dict[str, list[str]] = field(default_factory=dict)  # checkpoint message ids

    def path(self, head: str | None) -> list[str]:
        out = []
        while head is not None:
            out.append(head)
            head = self.messages[head].parent_id
        return out

    def delete(self, cid: str) -> None:
        """The rule of `StateStore.delete_conversation`, written as plainly as possible."""
        del self.convs[cid]
        self.marks.pop(cid, None)
        if not self.convs:
            self.messages.clear()
            return
        keep: set[str] = set()
        for other in self.convs.values():
            points = [other.head_message_id, *self.marks.get(other.id, [])]
            if other.forked_from is not None:
                points.append(other.forked_from.message_id)
            for p in points:
                keep.update(self.path(p))
        for mid, m in list(self.messages.items()):
            if m.conversation_id not in self.convs and mid not in keep:
                del self.messages[mid]


@dataclass(frozen=True)
class Op:
    kind: str
    conv: int  # which live conversation (modulo their number)
    target: int  # which present message (modulo their number)
    n: int  # how many messages to append


ops = st.lists(
    st.builds(
        Op,
        kind=st.sampled_from(
            ["append", "append", "edit", "rollback", "fork", "fork", "checkpoint", "delete"]
        ),
        conv=st.integers(0, 7),
        target=st.integers(0, 99),
        n=st.integers(1, 3),
    ),
    min_size=4,
    max_size=25,
)


async def apply(store: StateStore, model: Model, op: Op) -> None:
    if not model.convs:
        if op.kind == "fork":  # start the lineage again
            c = await store.create_conversation(conversation(lineage_id=model.lineage_id))
            model.convs[c.id] = c
        return
    conv = list(model.convs.values())[op.conv % len(model.convs)]
    present = list(model.messages)
    target = present[op.target % len(present)] if present else None
    if op.kind == "append" or (op.kind == "edit" and target is None):
        parent = model.messages[conv.head_message_id] if conv.head_message_id else None
        await _append(store, model, conv, parent, op.n)
    elif op.kind == "edit" and target is not None:
        await _append(store, model, conv, model.messages[target], op.n)
    elif op.kind == "rollback":
        moved = conv.model_copy(update={"head_message_id": target})
        model.convs[conv.id] = await store.update_conversation(moved, expected_version=conv.version)
    elif op.kind == "fork":
        f = await store.create_conversation(fork_of(conv, target))
        model.convs[f.id] = f
    elif op.kind == "checkpoint" and target is not None:
        await store.create_checkpoint(checkpoint(conv, target))
        model.marks.setdefault(conv.id, []).append(target)
    elif op.kind == "delete":
        assert await store.delete_conversation(conv.id)
        model.delete(conv.id)


async def _append(
    store: StateStore, model: Model, conv: Conversation, parent: Message | None, n: int
) -> None:
    msgs: list[Message] = []
    for _ in range(n):
        msgs.append(message(conv, msgs[-1] if msgs else parent))
    model.convs[conv.id] = await append(store, conv, msgs)
    for m in msgs:
        model.messages[m.id] = m
        model.ever.append(m.id)


async def check(store: StateStore, model: Model) -> None:
    got = {m.id for m in await store.get_messages(model.lineage_id, model.ever)}
    assert got == set(model.messages)
    for c in model.convs.values():
        stored = await store.get_conversation(c.id, now=utcnow())
        assert stored == c
        if c.head_message_id is not None:
            path = await store.get_path(model.lineage_id, c.head_message_id, limit=1000)
            assert [m.id for m in path] == model.path(c.head_message_id)
    roots = await store.list_children(model.lineage_id, None)
    assert [m.id for m in roots] == [i for i, m in model.messages.items() if m.parent_id is None]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=ops)
# Deleting the source, then the fork that kept part of it alive, while a second fork
# still needs only the older part: the first writer's leftovers must go.
@example(
    ops=[
        Op("append", 0, 0, 2),
        Op("fork", 0, 1, 1),
        Op("fork", 0, 0, 1),
        Op("delete", 0, 0, 1),
        Op("delete", 0, 0, 1),
    ]
)
async def test_random_histories_match_the_model(store: StateStore, ops: list[Op]) -> None:
    lineage = f"lin-{new_id()}"  # examples share the store; lineages keep them apart
    model = Model(lineage)
    root = await store.create_conversation(conversation(lineage_id=lineage))
    model.convs[root.id] = root
    for op in ops:
        await apply(store, model, op)
        await check(store, model)
    for cid in list(model.convs):
        assert await store.delete_conversation(cid)
        model.delete(cid)
    assert model.messages == {}
    assert await store.get_messages(lineage, model.ever) == []
