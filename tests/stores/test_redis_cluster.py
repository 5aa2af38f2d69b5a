"""What only the Redis Cluster and Sentinel stores have: the key layout across slots, every
interleaving of a rotation with a revocation or a write, a process dying between the steps that
span slots, the async stores, sharding, and their store URLs.

The contract suite (``test_contract.py``) already holds both stores to every store's semantics.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from sessionwarden.records import Alias, RecordUpdate, SessionRecord, Tombstone
from sessionwarden.stores import StoreUnavailable, parse_store_url
from sessionwarden.stores.redis_cluster import AsyncRedisClusterStore, RedisClusterStore
from sessionwarden.stores.redis_cluster_ops import Op, Script
from sessionwarden.stores.redis_sentinel import AsyncSentinelRedisStore
from tests.cluster_support import Cluster, SentinelSet
from tests.cluster_support import redis_cluster as start_cluster

from ..conftest import cluster_tools_or_skip, unique_prefix

pytestmark = pytest.mark.cluster

T0 = 1_700_000_000.0
HOUR = 3600.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def cstore(redis_cluster: Cluster) -> Iterator[RedisClusterStore]:
    store = RedisClusterStore(redis_cluster.seeds, prefix=unique_prefix())
    yield store
    store.close()
    redis_cluster.drop_prefix(store.prefix)


@pytest.fixture
async def acstore(redis_cluster: Cluster) -> AsyncIterator[AsyncRedisClusterStore]:
    store = AsyncRedisClusterStore(redis_cluster.seeds, prefix=unique_prefix())
    yield store
    await store.close()
    redis_cluster.drop_prefix(store.prefix)


def skey(n: int | str) -> str:
    """A store key as the core makes them: a keyed hash."""
    return hashlib.sha256(f"session-{n}".encode()).hexdigest()


def rec(key: str, user: str | None = "alice", created: float = T0, **data: Any) -> SessionRecord:
    return SessionRecord(
        key=key,
        created_at=created,
        last_seen=created,
        expires_at=created + HOUR,
        rotated_at=created,
        csrf_secret="c",
        user_id=user,
        data=dict(data),
    )


def slot(name: str) -> int:
    return key_slot(name.encode())


# -- layout ---------------------------------------------------------------------------------


def test_a_session_and_its_trail_share_a_slot_and_sessions_spread(
    cstore: RedisClusterStore, redis_cluster: Cluster
) -> None:
    ops = cstore._ops
    keys = [skey(i) for i in range(300)]
    for k in keys:
        assert slot(ops.skey(k)) == slot(ops.akey(k))
    assert slot(ops.ukey("alice")) == slot(ops.vkey("alice"))
    owners = {redis_cluster.master_of_slot(slot(ops.skey(k))).port for k in keys}
    assert len(owners) == 3
    # keys and user IDs that cannot stand in a hash tag as is are tagged by their hash
    for odd in ("", "a}b", "{x}", "#y"):
        assert slot(ops.skey(odd)) == slot(ops.akey(odd))
        assert slot(ops.ukey(odd)) == slot(ops.vkey(odd))
    assert ops.skey("a}b") != ops.skey("#" + hashlib.sha256(b"x").hexdigest())


def test_a_prefix_with_braces_is_refused(redis_cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="braces"):
        RedisClusterStore(redis_cluster.seeds, prefix="{app}:")


def test_reads_answer_from_the_master_owning_the_slot(
    cstore: RedisClusterStore, redis_cluster: Cluster
) -> None:
    k = skey("owner")
    cstore.insert(rec(k), max_per_user=0, tombstone_until=T0 + HOUR)
    owner = redis_cluster.master_of_slot(slot(cstore._ops.skey(k)))
    assert owner.call("EXISTS", cstore._ops.skey(k)) == 1
    assert cstore.get(k) == rec(k)


def test_reads_take_the_lean_connection_and_follow_a_redirection(
    cstore: RedisClusterStore, redis_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = skey("lean")
    cstore.insert(rec(k), max_per_user=0, tombstone_until=T0 + HOUR)
    assert cstore.get(k) == rec(k)
    owner = redis_cluster.master_of_slot(slot(cstore._ops.skey(k)))
    lean = cstore._lean._readers[f"127.0.0.1:{owner.port}"]
    sent = lean.commands_sent
    assert cstore.get(k) == rec(k)
    assert lean.commands_sent == sent + 1
    # a stale slot map (as after a failover) names another master: it answers MOVED, and the
    # read goes through redis-py, which follows it
    other = next(m for m in redis_cluster.masters() if m is not owner)
    stale = cstore._client.get_node(host="127.0.0.1", port=other.port)
    monkeypatch.setattr(cstore._client, "get_node_from_key", lambda *a, **kw: stale)
    assert cstore.get(k) == rec(k)
    assert cstore._lean._readers[f"127.0.0.1:{other.port}"].commands_sent >= 1


@pytest.mark.anyio
async def test_the_start_up_check_asks_every_master(acstore: AsyncRedisClusterStore) -> None:
    await acstore.check()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nowhere = AsyncRedisClusterStore([("127.0.0.1", port)], prefix=unique_prefix())
    try:
        with pytest.raises(StoreUnavailable):
            await nowhere.check()
    finally:
        await nowhere.close()


@pytest.mark.anyio
async def test_async_reads_follow_a_redirection(
    acstore: AsyncRedisClusterStore, redis_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = skey("alean")
    await acstore.insert(rec(k), max_per_user=0, tombstone_until=T0 + HOUR)
    assert await acstore.get(k) == rec(k)
    owner = redis_cluster.master_of_slot(slot(acstore._ops.skey(k)))
    other = next(m for m in redis_cluster.masters() if m is not owner)
    stale = acstore._client.get_node(host="127.0.0.1", port=other.port)
    monkeypatch.setattr(acstore._client, "get_node_from_key", lambda *a, **kw: stale)
    assert await acstore.get(k) == rec(k)


# -- interleavings: a rotation's steps span two slots ------------------------------------------


def run_interleaved(
    store: RedisClusterStore, op: Op[Any], at: int, between: Callable[[], Any]
) -> Any:
    """Run ``op`` on ``store``, running ``between`` just before its call number ``at``."""
    n = 0
    try:
        call = next(op)
        while True:
            if n == at:
                between()
            reply = store._call(call)
            n += 1
            call = op.send(reply)
    except StopIteration as stop:
        if n <= at:
            between()
        return stop.value


def _calls(store: RedisClusterStore, op: Op[Any]) -> int:
    n = 0
    try:
        call = next(op)
        while True:
            call = op.send(store._call(call))
            n += 1
    except StopIteration:
        return n + 1


def _rotation(store: RedisClusterStore, old: str, new: str, **data: Any) -> Op[Any]:
    return store._ops.rotate(
        old,
        new,
        RecordUpdate(meta={"rotated_at": T0 + 5}, set_data=data),
        Alias(old, new, T0 + 5, T0 + 35, T0 + HOUR, "alice"),
        0,
        T0 + HOUR,
        0,
    )


def _steps(store: RedisClusterStore) -> int:
    old, new = skey("probe-old"), skey("probe-new")
    store.insert(rec(old), max_per_user=0, tombstone_until=T0 + HOUR)
    return _calls(store, _rotation(store, old, new))


def test_revoke_user_at_any_step_of_a_rotation_leaves_nothing_live(
    cstore: RedisClusterStore,
) -> None:
    steps = _steps(cstore)
    assert steps >= 4
    for at in range(steps + 1):
        old, new = skey(f"old-{at}"), skey(f"new-{at}")
        cstore.revoke_user("alice", reason="all", at=T0, until=T0 + HOUR)
        cstore.insert(rec(old), max_per_user=0, tombstone_until=T0 + HOUR)
        result = run_interleaved(
            cstore,
            _rotation(cstore, old, new),
            at,
            lambda: cstore.revoke_user("alice", reason="logout-all", at=T0 + 1, until=T0 + HOUR),
        )
        assert not isinstance(cstore.get(old), SessionRecord), at
        assert not isinstance(cstore.get(new), SessionRecord), (at, result)
        if isinstance(cstore.get(old), Alias):
            assert isinstance(cstore.get(new), Tombstone), at
        assert cstore.user_sessions("alice") == [], at


def test_revoke_of_the_old_key_at_any_step_is_before_or_after_the_rotation(
    cstore: RedisClusterStore,
) -> None:
    steps = _steps(cstore)
    for at in range(steps + 1):
        old, new = skey(f"r-old-{at}"), skey(f"r-new-{at}")
        cstore.insert(rec(old), max_per_user=0, tombstone_until=T0 + HOUR)
        stone = Tombstone(old, "logout", T0 + 1, T0 + HOUR, "alice")
        result = run_interleaved(
            cstore, _rotation(cstore, old, new), at, lambda s=stone: cstore.revoke(s.key, s)
        )
        assert isinstance(cstore.get(old), Tombstone), at
        if result is None:  # the revocation came first: the rotation wrote nothing that lives
            assert cstore.get(new) is None, at
            assert new not in [r.key for r in cstore.user_sessions("alice")]
        else:  # it came after: as if the old, rotated-out ID was revoked
            assert isinstance(cstore.get(new), SessionRecord), at


def test_a_write_at_any_step_of_a_rotation_is_never_lost(cstore: RedisClusterStore) -> None:
    steps = _steps(cstore)
    for at in range(steps + 1):
        old, new = skey(f"w-old-{at}"), skey(f"w-new-{at}")
        cstore.insert(rec(old, cart=1), max_per_user=0, tombstone_until=T0 + HOUR)
        wrote: list[bool] = []
        result = run_interleaved(
            cstore,
            _rotation(cstore, old, new, theme="dark"),
            at,
            lambda o=old: wrote.append(cstore.update(o, RecordUpdate(set_data={"late": 1}))),
        )
        assert result == {}, at
        moved = cstore.get(new)
        assert isinstance(moved, SessionRecord)
        expected = {"cart": 1, "theme": "dark"} | ({"late": 1} if wrote[0] else {})
        assert moved.data == expected, at


# -- a process dying between the steps that span slots -----------------------------------------


def run_until(store: RedisClusterStore, op: Op[Any], stop_after: Callable[[Any], bool]) -> None:
    """Run ``op`` until a call matching ``stop_after`` has run, then abandon it (a crash)."""
    call = next(op)
    while True:
        reply = store._call(call)
        if stop_after(call):
            op.close()
            return
        call = op.send(reply)


def test_evictions_left_pending_by_a_crash_are_finished_by_the_next_reader(
    cstore: RedisClusterStore,
) -> None:
    first, second = skey("cap-1"), skey("cap-2")
    cstore.insert(rec(first, created=T0), max_per_user=0, tombstone_until=T0 + HOUR)
    op = cstore._ops.insert(rec(second, created=T0 + 1), 1, T0 + HOUR)
    run_until(cstore, op, lambda call: isinstance(call, Script) and call.name == "cap")
    # the documented moment: the cap was decided, the eviction not yet written
    assert isinstance(cstore.get(first), SessionRecord)
    assert [r.key for r in cstore.user_sessions("alice")] == [second]
    stone = cstore.get(first)
    assert isinstance(stone, Tombstone) and stone.reason == "evicted"


def test_a_rotation_cut_short_after_its_commit_is_repaired_by_index_readers(
    cstore: RedisClusterStore,
) -> None:
    old, new = skey("cut-old"), skey("cut-new")
    cstore.insert(rec(old), max_per_user=0, tombstone_until=T0 + HOUR)
    run_until(
        cstore,
        _rotation(cstore, old, new),
        lambda call: isinstance(call, Script) and call.name == "commit",
    )
    assert isinstance(cstore.get(old), Alias)
    # the index still names the old key; its readers follow the alias
    assert [r.key for r in cstore.user_sessions("alice")] == [new]
    assert list(cstore.revoke_user("alice", reason="all", at=T0, until=T0 + HOUR)) == [new]
    assert isinstance(cstore.get(new), Tombstone)


def test_a_rotation_cut_short_before_its_commit_leaves_the_old_session_as_it_was(
    cstore: RedisClusterStore,
) -> None:
    old, new = skey("pre-old"), skey("pre-new")
    cstore.insert(rec(old, a=1), max_per_user=0, tombstone_until=T0 + HOUR)
    run_until(
        cstore,
        _rotation(cstore, old, new),
        lambda call: isinstance(call, Script) and call.name == "put",
    )
    assert cstore.get(old) == rec(old, a=1)
    # the new record is unreachable (no alias, not indexed) and ends at its own deadline
    assert [r.key for r in cstore.user_sessions("alice")] == [old]


# -- async ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_cluster_store_round_trip(acstore: AsyncRedisClusterStore) -> None:
    keys = [skey(f"a{i}") for i in range(4)]
    for i, k in enumerate(keys):
        assert await acstore.insert(
            rec(k, created=T0 + i), max_per_user=3, tombstone_until=T0 + HOUR
        ) == ({keys[0]: keys[0]} if i == 3 else {})
    assert isinstance(await acstore.get(keys[0]), Tombstone)
    new = skey("a-new")
    alias = Alias(keys[1], new, T0 + 5, T0 + 35, T0 + HOUR, "alice")
    assert (
        await acstore.rotate(
            keys[1],
            new,
            RecordUpdate(set_data={"x": 1}, activity={"ev": "rotate"}),
            old_becomes=alias,
            max_per_user=3,
            tombstone_until=T0 + HOUR,
            activity_max=5,
        )
        == {}
    )
    assert await acstore.get(keys[1]) == alias
    assert await acstore.activity(new) == [{"ev": "rotate"}]
    assert await acstore.update(new, RecordUpdate(set_data={"y": 2}))
    assert [r.key for r in await acstore.user_sessions("alice")] == [new, keys[2], keys[3]]
    assert await acstore.revoke_user(
        "alice", reason="all", at=T0, until=T0 + HOUR, keep=new
    ) == {keys[2]: keys[2], keys[3]: keys[3]}
    stats = await acstore.stats(T0)
    assert (stats.live_sessions, stats.users, stats.aliases) == (1, 1, 1)
    assert await acstore.purge(T0 + 2 * HOUR) >= 1


@pytest.mark.anyio
async def test_async_sentinel_store_round_trip(redis_sentinel: SentinelSet) -> None:
    store = AsyncSentinelRedisStore(
        redis_sentinel.sentinel_addresses, redis_sentinel.name, prefix=unique_prefix()
    )
    try:
        k = skey("sentinel")
        await store.insert(rec(k), max_per_user=0, tombstone_until=T0 + HOUR)
        assert await store.get(k) == rec(k)
        master = redis_sentinel.master()
        assert master.call("EXISTS", store.prefix + "s:" + k) == 1
    finally:
        await store.close()
        redis_sentinel.drop_prefix(store.prefix)


def test_scripts_a_master_does_not_know_are_loaded_again(
    cstore: RedisClusterStore, redis_cluster: Cluster
) -> None:
    """A promoted replica, or a restarted master, starts with an empty script cache."""
    k = skey("noscript")
    cstore.insert(rec(k), max_per_user=0, tombstone_until=T0 + HOUR)
    for master in redis_cluster.masters():
        master.call("SCRIPT", "FLUSH")
    assert cstore.revoke(k, Tombstone(k, "logout", T0, T0 + HOUR, "alice"))
    assert isinstance(cstore.get(k), Tombstone)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_an_unreachable_cluster_is_named_by_its_seed_nodes() -> None:
    """As the single-server and Sentinel stores do, the message names where it looked (every
    seed node, no password) and why, in one line."""
    a, b = _free_ports(2)
    with pytest.raises(StoreUnavailable) as caught:
        RedisClusterStore([("127.0.0.1", a), ("127.0.0.1", b)], timeout=0.5, password="s3cr3t")
    message = str(caught.value)
    assert message.startswith(f"redis cluster 127.0.0.1:{a},127.0.0.1:{b}: no node reachable (")
    assert "Connection refused" in message and "s3cr3t" not in message and "\n" not in message


@pytest.mark.anyio
async def test_the_async_check_names_the_seed_nodes() -> None:
    (port,) = _free_ports(1)
    store = AsyncRedisClusterStore([("127.0.0.1", port)], timeout=0.5, password="s3cr3t")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.check()
    finally:
        await store.close()
    message = str(caught.value)
    assert message.startswith(f"redis cluster 127.0.0.1:{port}: no node reachable (")
    assert f"127.0.0.1:{port}" in message.partition("(")[2] and "s3cr3t" not in message


def test_the_check_names_a_master_that_is_down(tmp_path: Path) -> None:
    """A cluster that answered at start but lost a master: the check names that master."""
    cluster_tools_or_skip()
    with start_cluster(tmp_path / "down", node_timeout_ms=15_000) as cluster:
        store = RedisClusterStore(cluster.seeds[-1:], timeout=0.5)
        try:
            store.check()
            victim = next(m for m in cluster.masters() if m.port != cluster.seeds[-1][1])
            cluster.kill(victim)
            with pytest.raises(StoreUnavailable) as caught:
                store.check()
        finally:
            store.close()
    message = str(caught.value)
    assert message.startswith(f"redis cluster 127.0.0.1:{cluster.seeds[-1][1]}: ")
    assert f"127.0.0.1:{victim.port}" in message.partition(": ")[2]


# -- sharding -------------------------------------------------------------------------------

SESSIONS = 30_000  # bench/cluster.py runs 100,000


@pytest.mark.anyio
async def test_sessions_spread_evenly_over_the_masters(tmp_path: Path) -> None:
    """Sessions spread over 3 masters: the busiest holds at most 1.3x the mean (DBSIZE, on a
    cluster of its own so that nothing else's keys come or go meanwhile)."""
    cluster_tools_or_skip()
    now = time.time()
    with start_cluster(tmp_path / "spread") as cluster:
        store = AsyncRedisClusterStore(cluster.seeds, timeout=10)
        try:
            started = time.monotonic()
            for start in range(0, SESSIONS, 200):
                await asyncio.gather(
                    *(
                        store.insert(
                            rec(skey(f"spread-{i}"), None, created=now),
                            max_per_user=0,
                            tombstone_until=now,
                        )
                        for i in range(start, start + 200)
                    )
                )
            elapsed = time.monotonic() - started
            counts = {m.port: cluster.dbsize(m) for m in cluster.masters()}
        finally:
            await store.close()
    assert sum(counts.values()) == SESSIONS
    mean = SESSIONS / len(counts)
    busiest = max(counts.values())
    print(
        f"\n{SESSIONS} sessions over {len(counts)} masters: {sorted(counts.values())}, "
        f"busiest {busiest / mean:.3f}x the mean ({SESSIONS / elapsed:.0f} inserts/s)"
    )
    assert busiest <= 1.3 * mean


# -- store URLs -----------------------------------------------------------------------------


def test_cluster_url() -> None:
    spec = parse_store_url("redis+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2:7001/?prefix=app:")
    assert spec.kind == "redis-cluster"
    assert spec.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (spec.username, spec.password, spec.prefix, spec.tls) == ("u", "p@ss", "app:", False)
    assert "p@ss" not in repr(spec)
    assert parse_store_url("rediss+cluster://[::1]:7000").tls
    assert parse_store_url("rediss+cluster://[::1]:7000").hosts == (("::1", 7000),)


def test_sentinel_url() -> None:
    spec = parse_store_url("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/2?prefix=x:")
    assert spec.kind == "redis-sentinel"
    assert (spec.service, spec.db, spec.prefix) == ("mymaster", 2, "x:")
    assert parse_store_url("redis+sentinel://h:26379/m").db == 0


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://host",
        "redis+cluster://host:0",
        "redis+cluster://host:7000,:7001",
        "redis+cluster://host:7000/0",
        "redis+cluster://host:7000/?prefix={app}:",
        "redis+sentinel://host:26379",
        "redis+sentinel://host:26379/m/x",
        "redis+sentinel://host:26379/m/1/2",
        "redis+cluster://" + ",".join(f"h:{7000 + i}" for i in range(65)),
    ],
)
def test_bad_distributed_urls_say_why(url: str) -> None:
    with pytest.raises(ValueError, match="store URL"):
        parse_store_url(url)


@pytest.mark.anyio
async def test_async_all_sessions_walks_every_master(acstore: AsyncRedisClusterStore) -> None:
    keys = {f"{i:02x}" * 32 for i in range(12)}  # spread over the masters' slots
    for key in keys:
        await acstore.insert(rec(key), max_per_user=0, tombstone_until=T0 + HOUR)
    await acstore.insert(rec("ab" * 32, None), max_per_user=0, tombstone_until=T0 + HOUR)
    seen: list[str] = []
    page, after = await acstore.all_sessions(None, 3)
    seen += [r.key for r in page]
    while after is not None:
        assert "@" in after
        page, after = await acstore.all_sessions(after, 3)
        seen += [r.key for r in page]
    assert set(seen) == keys
