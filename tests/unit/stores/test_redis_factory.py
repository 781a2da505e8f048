"""Redis state URLs: `create_store` builds an unopened `RedisStore`; URL parsing."""

from __future__ import annotations

import pytest

from app.stores.factory import SUPPORTED_SCHEMES, create_store
from app.stores.redis import RedisStore
from app.stores.redis_conn import parse_redis_url
from app.stores.redis_keys import RedisKeys, from_us, to_us, us_to_ms_ceil


@pytest.mark.parametrize(
    ("url", "cluster"),
    [
        ("redis://127.0.0.1:6379/0", False),
        ("rediss://cache.example:6380", False),
        ("redis+cluster://10.0.0.1:7000,10.0.0.2:7001", True),
        ("rediss+cluster://user:secret@node-1:7000", True),
    ],
)
def test_redis_urls_build_an_unopened_redis_store(url: str, cluster: bool) -> None:
    store = create_store(url)
    assert isinstance(store, RedisStore)
    assert store.cluster is cluster
    assert store.capabilities.native_ttl is True and store.capabilities.shared is True
    with pytest.raises(RuntimeError):
        _ = store.client  # nothing connects before open()


def test_the_supported_list_names_redis() -> None:
    assert any(s.startswith("redis://") for s in SUPPORTED_SCHEMES)
    assert any(s.startswith("redis+cluster://") for s in SUPPORTED_SCHEMES)


def test_single_server_url() -> None:
    t = parse_redis_url("redis://:pw@db.internal:6390/13?prefix=app1:&health_check_interval=5")
    assert not t.cluster and t.prefix == "app1:"
    assert t.nodes == (("db.internal", 6390),)
    assert t.url == "redis://:pw@db.internal:6390/13?health_check_interval=5"


def test_default_prefix_and_port() -> None:
    t = parse_redis_url("redis://localhost")
    assert t.prefix == "parley:" and t.nodes == (("localhost", 6379),)


def test_cluster_url_lists_seed_nodes() -> None:
    t = parse_redis_url("redis+cluster://u:p@a:7000,b:7001,[::1]:7002?prefix=x:")
    assert t.cluster and t.prefix == "x:"
    assert t.nodes == (("a", 7000), ("b", 7001), ("::1", 7002))
    assert t.url == "redis://u:p@a:7000"
    assert parse_redis_url("rediss+cluster://a:7000").url.startswith("rediss://")


@pytest.mark.parametrize(
    "url",
    [
        "redis://a:1,b:2",  # several hosts need the cluster scheme
        "redis+cluster://a:7000/3",  # a cluster has only db 0
        "redis://a:notaport",
        "http://a:1",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_redis_url(url)


def test_lineage_keys_share_one_hash_tag() -> None:
    lk = RedisKeys("p:").lineage("user:alice:conv:1")
    keys = [*lk.fixed, lk.conv("fork-1"), lk.cps("fork-1")]
    assert all(k.startswith("p:{user:alice:conv:1}:") for k in keys)
    assert RedisKeys("p:").ref("c1") == "p:ref:{c1}"


def test_microseconds_round_trip_and_ms_round_up() -> None:
    when = from_us(1_900_000_000_123_456)
    assert to_us(when) == 1_900_000_000_123_456 and when.tzinfo is not None
    assert us_to_ms_ceil(1_000) == 1 and us_to_ms_ceil(1_001) == 2 and us_to_ms_ceil(0) == 0


def test_the_pool_size_reaches_the_store_and_connections_skip_the_version_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`PARLEY_REDIS_MAX_CONNECTIONS` sizes the pool; a new connection does not parse
    redis-py's package metadata again (~0.8 ms each, paid by every connection a burst
    opens)."""
    import redis.utils

    from app.stores.redis_conn import ClientOptions, build_client

    def no_lookup() -> str:
        raise AssertionError("redis-py looked its version up for a new connection")

    monkeypatch.setattr(redis.utils, "get_lib_version", no_lookup)
    options = ClientOptions.bounded(5.0, max_connections=7)
    client = build_client(parse_redis_url("redis://127.0.0.1:6379/0"), options)
    pool = client.connection_pool  # type: ignore[union-attr]
    assert pool.max_connections == 7
    assert pool.make_connection().driver_info.lib_version  # built without a lookup


def test_create_store_sizes_the_redis_pool() -> None:
    store = create_store("redis://127.0.0.1:6379/0", redis_max_connections=9)
    assert isinstance(store, RedisStore)
    assert store._options.max_connections == 9
