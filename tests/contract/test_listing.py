"""list_conversations: filters, metadata text semantics, keyset pagination, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.domain import Conversation, utcnow
from app.errors import InvalidCursor
from app.stores.base import ConversationFilter, StateStore, encode_cursor
from tests.contract.builders import conversation

T0 = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)


async def ids(store: StateStore, flt: ConversationFilter, *, limit: int = 100) -> list[str]:
    page = await store.list_conversations(flt, now=utcnow(), limit=limit)
    assert page.next_cursor is None
    return [c.id for c in page.data]


async def seed(store: StateStore, *convs: Conversation) -> list[Conversation]:
    return [await store.create_conversation(c) for c in convs]


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def test_orders_by_updated_at_desc_then_id_desc(store: StateStore) -> None:
    await seed(
        store,
        conversation("b", updated_at=at(1)),
        conversation("a", updated_at=at(2)),
        conversation("c", updated_at=at(1)),
        conversation("d", updated_at=at(0)),
    )
    assert await ids(store, ConversationFilter()) == ["a", "c", "b", "d"]


async def test_filters_by_user_pack_and_combinations(store: StateStore) -> None:
    await seed(
        store,
        conversation("u1-p1", user_id="u1", pack_id="p1", updated_at=at(1)),
        conversation("u1-p2", user_id="u1", pack_id="p2", updated_at=at(2)),
        conversation("u2-p1", user_id="u2", pack_id="p1", updated_at=at(3)),
    )
    assert await ids(store, ConversationFilter(user_id="u1")) == ["u1-p2", "u1-p1"]
    assert await ids(store, ConversationFilter(pack_id="p1")) == ["u2-p1", "u1-p1"]
    assert await ids(store, ConversationFilter(user_id="u1", pack_id="p1")) == ["u1-p1"]
    assert await ids(store, ConversationFilter(user_id="u3")) == []


async def test_prefix_matches_literally(store: StateStore) -> None:
    names = ["a_b:1", "axb:1", "a%b:1", "a%c", "a_", "A_b", "a", "b_a_b", "a_b"]
    await seed(store, *(conversation(n, updated_at=at(i)) for i, n in enumerate(names)))
    assert sorted(await ids(store, ConversationFilter(prefix="a_b"))) == ["a_b", "a_b:1"]
    assert sorted(await ids(store, ConversationFilter(prefix="a%"))) == ["a%b:1", "a%c"]
    assert sorted(await ids(store, ConversationFilter(prefix="a_"))) == ["a_", "a_b", "a_b:1"]
    assert sorted(await ids(store, ConversationFilter(prefix="a"))) == sorted(
        n for n in names if n.startswith("a")
    )
    assert await ids(store, ConversationFilter(prefix="zz")) == []


async def test_prefix_with_user_filter(store: StateStore) -> None:
    await seed(
        store,
        conversation("user:alice:conv:1", user_id="alice", updated_at=at(1)),
        conversation("user:alice:conv:2", user_id="alice", updated_at=at(2)),
        conversation("user:alice:note:1", user_id="alice", updated_at=at(3)),
        conversation("user:alice:conv:3", user_id="mallory", updated_at=at(4)),
    )
    flt = ConversationFilter(user_id="alice", prefix="user:alice:conv:")
    assert await ids(store, flt) == ["user:alice:conv:2", "user:alice:conv:1"]


METADATA = {
    "m-str": {"k": "3", "flag": "true", "tier": "gold"},
    "m-int": {"k": 3, "flag": True, "tier": "silver"},
    "m-float": {"k": 1.5, "flag": False},
    "m-null": {"k": None},
    "m-none": {},
}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("k", "3", {"m-str", "m-int"}),  # a string "3" and the number 3 render the same
        ("k", "1.5", {"m-float"}),
        ("k", "null", {"m-null"}),
        ("k", "3.0", set()),
        ("flag", "true", {"m-str", "m-int"}),
        ("flag", "false", {"m-float"}),
        ("flag", "True", set()),
        ("tier", "gold", {"m-str"}),
        ("tier", "GOLD", set()),
        ("missing", "null", set()),  # absent keys never match
        ("missing", "", set()),
    ],
)
async def test_metadata_compares_text_renderings(
    store: StateStore, key: str, value: str, expected: set[str]
) -> None:
    await seed(store, *(conversation(cid, metadata=md) for cid, md in METADATA.items()))
    assert set(await ids(store, ConversationFilter(metadata={key: value}))) == expected


SHAPED = {
    "s-object": {"o": {"b": [1, 2], "a": 1}},
    "s-array": {"o": [1, "x"]},
    "s-text": {"o": '{"b":[1,2],"a":1}'},  # a string: compared as text like any other
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"b":[1,2],"a":1}', {"s-text"}),  # Python's compact text of the object
        ('{"b": [1, 2], "a": 1}', set()),  # json.dumps' default text
        ('{"a": 1, "b": [1, 2]}', set()),  # PostgreSQL's `->>` of the jsonb (was a match)
        ('[1,"x"]', set()),
        ('[1, "x"]', set()),  # PostgreSQL's `->>` of the array (was a match)
    ],
)
async def test_metadata_object_and_array_values_never_match(
    store: StateStore, value: str, expected: set[str]
) -> None:
    """Objects and arrays render differently per backend (key order, spacing), so none
    matches on any (PostgreSQL matched its own `->>` text, the others their compact JSON)."""
    await seed(store, *(conversation(cid, metadata=md) for cid, md in SHAPED.items()))
    assert set(await ids(store, ConversationFilter(metadata={"o": value}))) == expected


FLOATS = {
    "f-tiny": {"x": 1e-07},
    "f-big": {"x": 1e16},
    "f-negative-zero": {"x": -0.0},
    "f-tenth": {"x": 0.1},
    "f-whole": {"x": 100.0},
    "f-long": {"x": 0.30000000000000004},
    "f-text": {"x": "1e-07"},
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0000001", {"f-tiny"}),  # PostgreSQL's numeric text (SQLite's was 1.0e-07)
        ("1e-07", {"f-text"}),  # Python's repr: only the string
        ("1.0e-07", set()),
        ("10000000000000000", {"f-big"}),
        ("1e+16", set()),
        ("0.0", {"f-negative-zero"}),
        ("-0.0", set()),
        ("0.1", {"f-tenth"}),
        ("100.0", {"f-whole"}),
        ("100", set()),
        ("0.30000000000000004", {"f-long"}),
        ("0.3", set()),
        ("99999999999999999999999", set()),  # past any stored integer: no match, no error
        ("1" * 5000, set()),
    ],
)
async def test_metadata_floats_compare_as_postgresql_renders_them(
    store: StateStore, value: str, expected: set[str]
) -> None:
    await seed(store, *(conversation(cid, metadata=md) for cid, md in FLOATS.items()))
    assert set(await ids(store, ConversationFilter(metadata={"x": value}))) == expected


async def test_metadata_keys_combine_with_and(store: StateStore) -> None:
    await seed(store, *(conversation(cid, metadata=md) for cid, md in METADATA.items()))
    flt = ConversationFilter(metadata={"k": "3", "tier": "silver"})
    assert await ids(store, flt) == ["m-int"]
    flt = ConversationFilter(user_id="alice", pack_id="pack", metadata={"flag": "true"})
    assert set(await ids(store, flt)) == {"m-str", "m-int"}
    assert await ids(store, ConversationFilter(user_id="bob", metadata={"flag": "true"})) == []


async def test_metadata_keys_with_special_characters(store: StateStore) -> None:
    md = {'we"ird.key': "x", "a.b": 1, "$[0]": "y", "ключ": "значение"}
    await seed(store, conversation("special", metadata=md), conversation("plain"))
    for key, value in [('we"ird.key', "x"), ("a.b", "1"), ("$[0]", "y"), ("ключ", "значение")]:
        assert await ids(store, ConversationFilter(metadata={key: value})) == ["special"]


async def test_expired_conversations_are_not_listed(store: StateStore) -> None:
    now = utcnow()
    await seed(
        store,
        conversation("live", expires_at=now + timedelta(hours=1), updated_at=at(1)),
        conversation("forever", updated_at=at(2)),
        conversation("gone", expires_at=now - timedelta(seconds=1), updated_at=at(3)),
    )
    page = await store.list_conversations(ConversationFilter(), now=now, limit=10)
    assert [c.id for c in page.data] == ["forever", "live"]
    later = await store.list_conversations(
        ConversationFilter(), now=now + timedelta(hours=2), limit=10
    )
    assert [c.id for c in later.data] == ["forever"]


async def test_pagination_walks_everything_once_in_order(store: StateStore) -> None:
    # 23 conversations, several sharing an updated_at, so the id tie-break matters.
    convs = [conversation(f"conv-{i:02d}", updated_at=at(i // 3)) for i in range(23)]
    await seed(store, *convs)
    expected = [c.id for c in sorted(convs, key=lambda c: (c.updated_at, c.id), reverse=True)]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.list_conversations(
            ConversationFilter(), now=utcnow(), limit=5, cursor=cursor
        )
        pages += 1
        assert len(page.data) <= 5
        seen.extend(c.id for c in page.data)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == expected
    assert pages == 5


async def test_exact_page_has_no_next_cursor(store: StateStore) -> None:
    await seed(store, *(conversation(f"x{i}", updated_at=at(i)) for i in range(4)))
    page = await store.list_conversations(ConversationFilter(), now=utcnow(), limit=4)
    assert len(page.data) == 4 and page.next_cursor is None
    page = await store.list_conversations(ConversationFilter(), now=utcnow(), limit=3)
    assert len(page.data) == 3 and page.next_cursor is not None


async def test_pagination_with_filters_and_updates_between_pages(store: StateStore) -> None:
    convs = [
        conversation(f"p{i:02d}", updated_at=at(i), pack_id="p" if i % 2 else "q")
        for i in range(12)
    ]
    await seed(store, *convs)
    flt = ConversationFilter(pack_id="p")
    first = await store.list_conversations(flt, now=utcnow(), limit=3)
    assert [c.id for c in first.data] == ["p11", "p09", "p07"]
    # A conversation bumped to the top after the first page does not reappear later.
    bumped = first.data[0].model_copy(update={"updated_at": at(100)})
    await store.update_conversation(bumped, expected_version=bumped.version)
    rest = await store.list_conversations(flt, now=utcnow(), limit=10, cursor=first.next_cursor)
    assert [c.id for c in rest.data] == ["p05", "p03", "p01"]
    assert rest.next_cursor is None


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor!!",
        "e30",  # {}
        encode_cursor("only-one-part"),
        encode_cursor("not-a-date", "x"),
        encode_cursor("2031-05-01T12:00:00", "x"),  # naive: never issued
        encode_cursor("0001-01-01T00:00:00+14:00", "x"),  # before datetime.min in UTC
        encode_cursor("9999-12-31T23:59:59-14:00", "x"),  # after datetime.max in UTC
        encode_cursor("a", "b", "c"),
    ],
)
async def test_invalid_cursor(store: StateStore, cursor: str) -> None:
    await seed(store, conversation())
    with pytest.raises(InvalidCursor):
        await store.list_conversations(ConversationFilter(), now=utcnow(), limit=5, cursor=cursor)
