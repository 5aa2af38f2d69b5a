"""Redis-specific behaviour of RedisStore / AsyncRedisStore against the real server.

The interface semantics shared with every store are covered by the contract suite; this module
checks what only Redis has: round trips, TTLs, atomicity under concurrency, failure modes and
memory use.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.crc import key_slot

from sessionwarden.records import Alias, RecordUpdate, SessionRecord, Tombstone
from sessionwarden.stores.base import StoreUnavailable
from sessionwarden.stores.redis import MIN_RETENTION_MS, AsyncRedisStore, RedisStore

from ..conftest import drop_prefix, redis_or_skip, unique_prefix
from ..private_redis import PrivateRedis

pytestmark = pytest.mark.redis


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def url() -> str:
    return redis_or_skip()


@pytest.fixture
def admin(url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
def rstore(url: str) -> Iterator[RedisStore]:
    store = RedisStore(url, prefix=unique_prefix())
    yield store
    store.close()
    drop_prefix(store.prefix)


@pytest.fixture
async def astore(url: str) -> AsyncIterator[AsyncRedisStore]:
    store = AsyncRedisStore(url, prefix=unique_prefix())
    yield store
    await store.close()
    drop_prefix(store.prefix)


# -- a server of the test's own, for tests that pause Redis or kill its clients -----------------

#: The store timeout of the tests that pause Redis: long enough that one timeout and two are
#: told apart on a loaded machine.
TIMEOUT = 2.5
#: A pause outlasts two timeouts (UNPAUSE itself waits for it to end).
PAUSE_MS = int(2 * TIMEOUT * 1000 + 1000)


@pytest.fixture
def own_url(private_redis: PrivateRedis) -> str:
    return f"redis://127.0.0.1:{private_redis.port}/0"


@pytest.fixture
def own_admin(own_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(own_url, socket_timeout=60)
    yield client
    client.close()


@pytest.fixture
def own_rstore(own_url: str) -> Iterator[RedisStore]:
    store = RedisStore(own_url, prefix=unique_prefix())
    yield store
    store.close()


@pytest.fixture
def own_uncached(own_url: str) -> Iterator[RedisStore]:
    store = RedisStore(own_url, prefix=unique_prefix(), read_cache_ttl=0)
    yield store
    store.close()


@pytest.fixture
async def own_astore(own_url: str) -> AsyncIterator[AsyncRedisStore]:
    store = AsyncRedisStore(own_url, prefix=unique_prefix())
    yield store
    await store.close()


def skey(n: int | str) -> str:
    """A store key as the core makes them: a keyed hash, never the session ID itself."""
    return hashlib.sha256(f"session-{n}".encode()).hexdigest()


def make_record(
    key: str, *, user: str | None = "alice", created: float | None = None, ttl: float = 3600
) -> SessionRecord:
    now = time.time() if created is None else created
    return SessionRecord(
        key=key,
        created_at=now,
        last_seen=now,
        expires_at=now + ttl,
        rotated_at=now,
        csrf_secret="c" * 43,
        user_id=user,
        auth_at=now if user else None,
        client_ip="203.0.113.7",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
        fingerprint={"ua": "a1b2c3d4", "lang": "en-GB", "tz": "+01:00", "ip": "203.0.113"},
        data={"cart": [1, 2], "theme": "dark", "n": 3},
    )


def member(key: str) -> bytes:
    """How the user index holds a key made by the core (64 hex digits): 0xFF and its bytes."""
    return b"\xff" + bytes.fromhex(key)


def pexpiretime(admin: redis.Redis, key: str) -> int:
    return int(admin.execute_command("PEXPIRETIME", key))


class SendCounter:
    """Counts commands written to the server by wrapping the connection class' send path."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, conn_class: type[Any]) -> None:
        self.count = 0
        self.commands: list[bytes] = []
        original = conn_class.send_packed_command
        counter = self

        def counted(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
            counter.count += 1
            return original(self, command, *args, **kwargs)

        monkeypatch.setattr(conn_class, "send_packed_command", counted)

    def reset(self) -> None:
        self.count = 0


# -- round trips ----------------------------------------------------------------------------------


@pytest.fixture
def uncached(url: str) -> Iterator[RedisStore]:
    """A store with the local read cache off: every read goes to Redis."""
    store = RedisStore(url, prefix=unique_prefix(), read_cache_ttl=0)
    yield store
    store.close()
    drop_prefix(store.prefix)


@pytest.fixture
async def auncached(url: str) -> AsyncIterator[AsyncRedisStore]:
    store = AsyncRedisStore(url, prefix=unique_prefix(), read_cache_ttl=0)
    yield store
    await store.close()
    drop_prefix(store.prefix)


def test_get_is_one_round_trip(uncached: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    rstore = uncached
    record = make_record(skey(1))
    rstore.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
    assert rstore.get(record.key) == record  # warm: connection made, handshake done
    counter = SendCounter(monkeypatch, rstore._client.connection_pool.connection_class)
    fast = rstore._fast

    def sent() -> int:  # through redis-py, plus through the lean read connection
        return counter.count + (fast.commands_sent if fast is not None else 0)

    for _ in range(5):
        before = sent()
        assert rstore.get(record.key) == record
        assert sent() - before == 1
    before = sent()
    assert rstore.get(skey("missing")) is None
    assert sent() - before == 1


@pytest.mark.anyio
async def test_async_get_is_one_round_trip(
    auncached: AsyncRedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    astore = auncached
    record = make_record(skey(1))
    await astore.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
    assert await astore.get(record.key) == record
    counter = SendCounter(monkeypatch, astore._client.connection_pool.connection_class)
    fast = astore._fast
    for _ in range(5):
        counter.reset()
        before = fast.commands_sent if fast is not None else 0
        assert await astore.get(record.key) == record
        after = fast.commands_sent if fast is not None else 0
        assert counter.count + (after - before) == 1


def test_cached_get_is_no_round_trip_and_sees_writes(
    rstore: RedisStore, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    assert rstore.read_cache is not None and rstore.read_cache.feed.wait_connected(5.0)
    record = make_record(skey(1))
    rstore.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
    assert rstore.get(record.key) == record  # a miss: read and kept
    counter = SendCounter(monkeypatch, rstore._client.connection_pool.connection_class)
    kept = rstore.get(record.key)
    for _ in range(3):
        got = rstore.get(record.key)
        assert got == record and counter.count == 0
        assert got is kept  # shared, not copied per hit: nobody changes a record once read
    # Its own write: seen by the very next read.
    assert rstore.update(record.key, RecordUpdate(set_data={"y": 2}))
    got = rstore.get(record.key)
    assert isinstance(got, SessionRecord) and got.data["y"] == 2
    # Another process's revocation: seen once its notice has arrived.
    other = RedisStore(url, prefix=rstore.prefix, read_cache_ttl=0)
    try:
        now = time.time()
        tomb = Tombstone(key=record.key, reason="admin", at=now, until=now + 60, user_id="alice")
        assert other.revoke(record.key, tomb)
    finally:
        other.close()
    rstore.read_cache.barrier()
    assert isinstance(rstore.get(record.key), Tombstone)


@pytest.mark.anyio
async def test_async_cached_get_is_no_round_trip(astore: AsyncRedisStore) -> None:
    assert astore.read_cache is not None and astore.read_cache.feed.wait_connected(5.0)
    record = make_record(skey(1))
    await astore.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
    assert await astore.get(record.key) == record
    fast = astore._fast
    assert fast is not None
    before = fast.commands_sent
    for _ in range(3):
        assert await astore.get(record.key) == record
    assert fast.commands_sent == before
    await astore.delete(record.key)  # one script on the same connection, then its fence (PING)
    assert fast.commands_sent == before + 2
    assert await astore.get(record.key) is None  # a write that keeps nothing: one read
    assert fast.commands_sent == before + 3


@pytest.mark.anyio
async def test_async_update_keeps_what_it_wrote(astore: AsyncRedisStore) -> None:
    """A write is one script and its fence (a PING: the write returns once Redis sent its
    invalidation notices); the next read of that session costs none, and sees it."""
    assert astore.read_cache is not None and astore.read_cache.feed.wait_connected(5.0)
    record = make_record(skey(1))
    await astore.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
    assert await astore.get(record.key) == record
    fast = astore._fast
    assert fast is not None
    for n in range(3):
        before = fast.commands_sent
        assert await astore.update(record.key, RecordUpdate(set_data={"n": n}))
        assert fast.commands_sent == before + 2
        got = await astore.get(record.key)
        assert isinstance(got, SessionRecord) and got.data["n"] == n
        assert fast.commands_sent == before + 2


def test_read_cache_settings_are_checked(url: str) -> None:
    with pytest.raises(ValueError):
        RedisStore(url, prefix=unique_prefix(), read_cache_ttl=-1)
    with pytest.raises(ValueError):
        RedisStore(url, prefix=unique_prefix(), read_cache_size=0)
    client = redis.Redis.from_url(url)
    try:
        assert RedisStore(client, prefix=unique_prefix()).read_cache is None  # a client: off
    finally:
        client.close()


# -- TTLs -----------------------------------------------------------------------------------------


def test_ttls_follow_deadlines(rstore: RedisStore, admin: redis.Redis) -> None:
    now = time.time()
    record = make_record(skey(1), created=now, ttl=3600)
    rstore.insert(record, max_per_user=0, tombstone_until=now + 60)
    s = rstore.prefix + "s:" + record.key
    u = rstore.prefix + "u:alice"
    assert abs(pexpiretime(admin, s) - math.ceil(record.expires_at * 1000)) <= 1
    assert pexpiretime(admin, u) >= pexpiretime(admin, s)

    later = now + 7200
    assert rstore.update(
        record.key, RecordUpdate(meta={"expires_at": later}, activity={"e": 1}), activity_max=5
    )
    assert abs(pexpiretime(admin, s) - math.ceil(later * 1000)) <= 1
    assert abs(pexpiretime(admin, rstore.prefix + "a:" + record.key) - math.ceil(later * 1000)) <= 1
    assert pexpiretime(admin, u) >= math.ceil(later * 1000)

    # an update that leaves expires_at alone leaves the TTL alone
    assert rstore.update(record.key, RecordUpdate(set_data={"x": 1}))
    assert abs(pexpiretime(admin, s) - math.ceil(later * 1000)) <= 1
    # ... and a trail it starts or appends to expires with the record
    admin.delete(rstore.prefix + "a:" + record.key)
    for n in range(3):
        assert rstore.update(record.key, RecordUpdate(activity={"n": n}), activity_max=2)
        trail = rstore.prefix + "a:" + record.key
        assert abs(pexpiretime(admin, trail) - math.ceil(later * 1000)) <= 1
    assert [e["n"] for e in rstore.activity(record.key)] == [1, 2]

    # rotation: the new key follows the record, the alias follows its own `until`
    new = skey(2)
    alias = Alias(record.key, new, now, now + 5, now + 900, "alice")
    assert (
        rstore.rotate(
            record.key,
            new,
            RecordUpdate(meta={"expires_at": now + 1800}),
            old_becomes=alias,
            max_per_user=0,
            tombstone_until=now + 60,
        )
        == {}
    )
    assert abs(pexpiretime(admin, s) - math.ceil((now + 900) * 1000)) <= 1
    s2 = rstore.prefix + "s:" + new
    assert abs(pexpiretime(admin, s2) - math.ceil((now + 1800) * 1000)) <= 1
    assert abs(pexpiretime(admin, rstore.prefix + "a:" + new) - math.ceil((now + 1800) * 1000)) <= 1

    # revocation: the tombstone follows `until`
    assert rstore.revoke(new, Tombstone(new, "logout", now, now + 600, "alice"))
    assert abs(pexpiretime(admin, s2) - math.ceil((now + 600) * 1000)) <= 1
    assert admin.exists(rstore.prefix + "a:" + new) == 0


def test_past_deadline_kept_briefly_and_purged_by_stored_deadline(
    rstore: RedisStore, admin: redis.Redis
) -> None:
    """A deadline already past by Redis' clock (skew, an injected clock) must not make the item
    vanish mid-request: it stays briefly, and purge removes it by its stored deadline."""
    old = 1_700_000_000.0
    record = make_record(skey(1), created=old, ttl=60)
    rstore.insert(record, max_per_user=0, tombstone_until=old + 120)
    s = rstore.prefix + "s:" + record.key
    pttl = admin.pttl(s)
    assert MIN_RETENTION_MS - 5000 < pttl <= MIN_RETENTION_MS
    assert rstore.get(record.key) == record
    assert rstore.purge(old + 30) == 0
    assert rstore.purge(old + 61) == 1
    assert rstore.get(record.key) is None
    assert (
        admin.exists(rstore.prefix + "u:alice") == 0 or admin.zcard(rstore.prefix + "u:alice") == 0
    )


def test_purge_repairs_missing_ttl_and_prunes_index(rstore: RedisStore, admin: redis.Redis) -> None:
    now = time.time()
    a, b = make_record(skey(1), created=now), make_record(skey(2), created=now + 1)
    rstore.insert(a, max_per_user=0, tombstone_until=now + 60)
    rstore.insert(b, max_per_user=0, tombstone_until=now + 60)
    admin.persist(rstore.prefix + "s:" + a.key)
    admin.delete(rstore.prefix + "s:" + b.key)  # as if its TTL fired
    admin.rpush(rstore.prefix + "a:" + b.key, json.dumps({"orphan": True}))
    assert rstore.purge(now, batch=1) == 0
    assert (
        abs(pexpiretime(admin, rstore.prefix + "s:" + a.key) - math.ceil(a.expires_at * 1000)) <= 1
    )
    assert admin.zrange(rstore.prefix + "u:alice", 0, -1) == [member(a.key)]
    assert admin.exists(rstore.prefix + "a:" + b.key) == 0
    assert [r.key for r in rstore.user_sessions("alice")] == [a.key]


# -- atomicity ------------------------------------------------------------------------------------


def test_cap_holds_under_parallel_inserts(rstore: RedisStore) -> None:
    now = time.time()
    barrier = threading.Barrier(20)
    evicted: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def login(i: int) -> None:
        try:
            barrier.wait()
            out = rstore.insert(
                make_record(skey(i), created=now + i * 0.001),
                max_per_user=3,
                tombstone_until=now + 600,
            )
            with lock:
                evicted.extend(out)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=login, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    live = rstore.user_sessions("alice")
    assert len(live) == 3
    assert len(evicted) == 17 and len(set(evicted)) == 17
    assert {r.key for r in live}.isdisjoint(evicted)
    for key in evicted:
        item = rstore.get(key)
        assert isinstance(item, Tombstone) and item.reason == "evicted"
    assert rstore.stats(now).live_sessions == 3


def test_update_never_revives_a_revoked_session(rstore: RedisStore, admin: redis.Redis) -> None:
    now = time.time()
    record = make_record(skey(1), created=now)
    rstore.insert(record, max_per_user=0, tombstone_until=now + 60)
    assert rstore.revoke(record.key, Tombstone(record.key, "logout", now, now + 600, "alice"))
    assert not rstore.update(
        record.key,
        RecordUpdate(meta={"last_seen": now + 1}, set_data={"x": 1}, activity={"e": 1}),
        activity_max=5,
    )
    assert (
        rstore.rotate(
            record.key,
            skey(2),
            RecordUpdate(),
            old_becomes=Tombstone(record.key, "rotated", now, now + 60),
            max_per_user=0,
            tombstone_until=now + 60,
        )
        is None
    )
    item = rstore.get(record.key)
    assert isinstance(item, Tombstone) and item.reason == "logout"
    assert set(admin.hkeys(rstore.prefix + "s:" + record.key)) == {b"!", b"T", b"U", b"u"}
    assert rstore.get(skey(2)) is None
    assert admin.exists(rstore.prefix + "a:" + record.key) == 0


def test_cluster_hash_tag_keeps_keys_in_one_slot(url: str, admin: redis.Redis) -> None:
    base = unique_prefix()
    store = RedisStore(url, prefix=base, cluster_hash_tag=True)
    try:
        assert store.prefix == "{" + base.rstrip(":") + "}:"
        now = time.time()
        store.insert(make_record(skey(1), created=now), max_per_user=1, tombstone_until=now + 60)
        assert store.insert(
            make_record(skey(2), created=now + 1), max_per_user=1, tombstone_until=now + 60
        ) == {skey(1): skey(1)}
        store.update(skey(2), RecordUpdate(activity={"e": 1}), activity_max=3)
        keys = list(
            admin.scan_iter(match=store.prefix.replace("{", "\\{").replace("}", "\\}") + "*")
        )
        assert len(keys) == 4
        assert len({key_slot(k) for k in keys}) == 1
        tags = {k.decode().split("}", 1)[0] for k in keys}
        assert tags == {"{" + base.rstrip(":")}
    finally:
        store.close()
        drop_prefix(store.prefix)


# -- async ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_matches_sync(astore: AsyncRedisStore, rstore: RedisStore) -> None:
    now = time.time()

    async def run(store: Any, is_async: bool) -> list[Any]:
        async def call(name: str, *args: Any, **kwargs: Any) -> Any:
            result = getattr(store, name)(*args, **kwargs)
            return await result if is_async else result

        out: list[Any] = []
        k1, k2, k3 = skey(1), skey(2), skey(3)
        out.append(
            await call(
                "insert", make_record(k1, created=now), max_per_user=2, tombstone_until=now + 60
            )
        )
        out.append(await call("get", k1))
        out.append(
            await call(
                "update",
                k1,
                RecordUpdate(
                    meta={"last_seen": now + 5},
                    set_data={"theme": "light"},
                    del_data=("n",),
                    activity={"ev": "x"},
                ),
                activity_max=2,
            )
        )
        out.append(await call("get", k1))
        out.append(
            await call(
                "rotate",
                k1,
                k2,
                RecordUpdate(meta={"rotated_at": now + 6}),
                old_becomes=Alias(k1, k2, now + 6, now + 16, now + 600, "alice"),
                max_per_user=2,
                tombstone_until=now + 60,
            )
        )
        out.append(await call("get", k1))
        out.append(await call("get", k2))
        out.append(await call("activity", k2))
        out.append(
            await call(
                "insert", make_record(k3, created=now + 7), max_per_user=1, tombstone_until=now + 60
            )
        )
        out.append(await call("user_sessions", "alice"))
        out.append(await call("revoke", k3, Tombstone(k3, "logout", now + 8, now + 600, "alice")))
        out.append(await call("revoke", k3, Tombstone(k3, "logout", now + 8, now + 600, "alice")))
        out.append(await call("get", k3))
        out.append(await call("stats", now))
        out.append(await call("revoke_user", "alice", reason="x", at=now, until=now + 9))
        out.append(await call("purge", now + 10_000))
        out.append(await call("delete", k3))
        out.append(await call("stats", now))
        return out

    sync_out = await run(rstore, False)
    async_out = await run(astore, True)
    assert async_out == sync_out
    assert sync_out[0] == {} and sync_out[8] == {skey(2): skey(2)}
    assert isinstance(sync_out[5], Alias) and sync_out[6].data["theme"] == "light"


# -- failure modes --------------------------------------------------------------------------------


def test_reconnects_after_client_kill(own_rstore: RedisStore, own_admin: redis.Redis) -> None:
    record = make_record(skey(1))
    own_rstore.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
    assert own_rstore.get(record.key) == record
    own_admin.execute_command("CLIENT KILL TYPE normal SKIPME yes")
    assert own_rstore.get(record.key) == record


def test_lean_sync_read_survives_a_server_side_close(
    own_uncached: RedisStore, own_admin: redis.Redis
) -> None:
    """A thread's read connection that the server dropped (a restart, an idle timeout) is
    replaced and the read sent again, once: no 503 for it."""
    record = make_record(skey(1))
    own_uncached.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
    assert own_uncached.get(record.key) == record
    own_admin.execute_command("CLIENT KILL TYPE normal SKIPME yes")
    assert own_uncached.get(record.key) == record
    assert own_uncached.get(record.key) == record


def test_lean_sync_read_times_out_once_not_twice(own_url: str, own_admin: redis.Redis) -> None:
    store = RedisStore(own_url, prefix=unique_prefix(), timeout=TIMEOUT, read_cache_ttl=0)
    record = make_record(skey(1))
    try:
        store.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
        assert store.get(record.key) == record
        own_admin.execute_command("CLIENT PAUSE", PAUSE_MS, "ALL")
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match=r"^redis unreachable: "):
                store.get(record.key)
            # one timeout, not two: a timeout is not retried (far apart, for a loaded machine)
            assert time.monotonic() - started < 2 * TIMEOUT - 0.5
        finally:
            own_admin.execute_command("CLIENT UNPAUSE")
        assert store.get(record.key) == record  # a new connection: no stale reply taken
    finally:
        store.close()


def test_lean_sync_reads_one_connection_per_thread(uncached: RedisStore) -> None:
    records = [make_record(skey(i)) for i in range(8)]
    for r in records:
        uncached.insert(r, max_per_user=0, tombstone_until=time.time() + 60)
    wrong: list[str] = []

    def worker(r: SessionRecord) -> None:
        for _ in range(50):
            if uncached.get(r.key) != r:
                wrong.append(r.key)

    threads = [threading.Thread(target=worker, args=(r,)) for r in records]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
    # one per reading thread, and this thread's (which ran the insert scripts)
    assert uncached._fast is not None and len(uncached._fast._all) == len(threads) + 1
    uncached.close()
    with pytest.raises(StoreUnavailable):
        uncached.get(records[0].key)  # a thread that never read: no connection after close


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_lean_sync_read_in_a_forked_child_uses_its_own_connection(uncached: RedisStore) -> None:
    record = make_record(skey(1))
    uncached.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
    assert uncached.get(record.key) == record  # the parent's connection exists
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        ok = uncached.get(record.key) == record and uncached.get(record.key) == record
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert uncached.get(record.key) == record  # the parent's still answers in order


@pytest.mark.anyio
async def test_async_reconnects_after_client_kill(
    own_astore: AsyncRedisStore, own_admin: redis.Redis
) -> None:
    record = make_record(skey(1))
    await own_astore.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
    own_admin.execute_command("CLIENT KILL TYPE normal SKIPME yes")
    assert await own_astore.get(record.key) == record


def test_closed_port_fails_fast() -> None:
    store = RedisStore("redis://127.0.0.1:1/0", prefix=unique_prefix(), timeout=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            store.get(skey(1))
        assert time.monotonic() - started < 1.5
        assert str(info.value).startswith("redis unreachable: ")
        assert skey(1) not in str(info.value)
    finally:
        store.close()


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_black_hole_fails_within_timeout(black_hole: int) -> None:
    store = RedisStore(f"redis://127.0.0.1:{black_hole}/0", prefix="x:", timeout=1.0)
    try:
        for op in (lambda: store.get(skey(1)), lambda: store.delete(skey(1))):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match=r"^redis unreachable: "):
                op()
            assert time.monotonic() - started < 3
    finally:
        store.close()


@pytest.mark.anyio
async def test_async_black_hole_fails_within_timeout(black_hole: int) -> None:
    store = AsyncRedisStore(f"redis://127.0.0.1:{black_hole}/0", prefix="x:", timeout=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"^redis unreachable: "):
            await store.get(skey(1))
        assert time.monotonic() - started < 3
    finally:
        await store.close()


@pytest.mark.anyio
async def test_async_command_unanswered_after_an_answered_one_fails_within_timeout() -> None:
    """On one pipelined connection, a command sent after an answered one and never answered
    itself still fails after the timeout (counted from when it was sent), and so does every
    command queued behind it."""
    from sessionwarden.stores.resp import PipelinedReader, RespError

    answered = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        while await reader.read(65536):
            if answered == 0:
                writer.write(b"+PONG\r\n")
                await writer.drain()
            answered += 1
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lean = PipelinedReader("127.0.0.1", port, 0, None, None, timeout=1.0)
    try:
        assert await lean.call(b"PING") == b"PONG"
        await asyncio.sleep(0.6)
        started = asyncio.get_running_loop().time()
        results = await asyncio.gather(
            lean.call(b"PING"), lean.call(b"PING"), return_exceptions=True
        )
        waited = asyncio.get_running_loop().time() - started
        assert all(isinstance(r, RespError) for r in results), results
        assert 0.9 <= waited < 2.0, waited
    finally:
        lean.close()
        server.close()
        await server.wait_closed()


def test_client_pause_fails_within_timeout_then_recovers(
    own_url: str, own_admin: redis.Redis
) -> None:
    store = RedisStore(own_url, prefix=unique_prefix(), timeout=TIMEOUT)
    record = make_record(skey(1))
    try:
        store.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
        own_admin.execute_command("CLIENT PAUSE", PAUSE_MS, "ALL")
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match=r"^redis unreachable: .*Timeout"):
                store.get(record.key)
            assert time.monotonic() - started < 2 * TIMEOUT - 0.5
        finally:
            own_admin.execute_command("CLIENT UNPAUSE")
        assert store.get(record.key) == record
    finally:
        store.close()


@pytest.mark.anyio
async def test_async_client_pause_fails_then_recovers(own_url: str, own_admin: redis.Redis) -> None:
    store = AsyncRedisStore(own_url, prefix=unique_prefix(), timeout=TIMEOUT)
    record = make_record(skey(1))
    try:
        await store.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
        own_admin.execute_command("CLIENT PAUSE", PAUSE_MS, "ALL")
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match=r"^redis unreachable: "):
                await store.get(record.key)
            assert time.monotonic() - started < 2 * TIMEOUT - 0.5
        finally:
            own_admin.execute_command("CLIENT UNPAUSE")
        assert await store.get(record.key) == record
    finally:
        await store.close()


def test_server_errors_become_unavailable_without_keys(
    rstore: RedisStore, admin: redis.Redis
) -> None:
    key = skey(1)
    admin.set(rstore.prefix + "s:" + key, "not a hash")
    with pytest.raises(StoreUnavailable) as info:
        rstore.get(key)
    message = str(info.value)
    assert message == "redis unreachable: error reply WRONGTYPE"  # the lean read's wording
    assert key not in message and rstore.prefix not in message


# -- what is stored -------------------------------------------------------------------------------


TIME_FIELDS = {b"c", b"l", b"e", b"r", b"a", b"T", b"G", b"U"}
JSON_START = b'"{[-0123456789tfn'


def stored_value(field: bytes, value: bytes) -> Any:
    """A stored value read by the documented rules, never by anything like pickle: a time is an
    8-byte double (or JSON number text), any other value JSON or a string kept as is."""
    if field in TIME_FIELDS:
        if len(value) == 8 and value.translate(None, b"0123456789+-.eE"):
            return struct.unpack(">d", value)[0]
        number = json.loads(value)
        assert isinstance(number, int | float)
        return number
    if value[:1] and value[0] not in JSON_START:
        return value.decode("utf-8")
    return json.loads(value)


def test_stored_values_follow_the_layout_without_raw_ids(
    rstore: RedisStore, admin: redis.Redis
) -> None:
    secret = b"s" * 32
    raw_ids = [f"raw-session-id-{i}-" + "Z" * 20 for i in range(3)]
    keys = [hmac.new(secret, r.encode(), hashlib.sha256).hexdigest() for r in raw_ids]
    now = time.time()
    rstore.insert(make_record(keys[0], created=now), max_per_user=5, tombstone_until=now + 60)
    rstore.insert(make_record(keys[1], created=now), max_per_user=5, tombstone_until=now + 60)
    rstore.update(keys[0], RecordUpdate(activity={"ip": "203.0.113.7"}), activity_max=5)
    rstore.rotate(
        keys[0],
        keys[2],
        RecordUpdate(),
        old_becomes=Alias(keys[0], keys[2], now, now + 5, now + 60, "alice"),
        max_per_user=5,
        tombstone_until=now + 60,
    )
    rstore.revoke(keys[1], Tombstone(keys[1], "logout", now, now + 60, "alice"))

    names = list(admin.scan_iter(match=rstore.prefix + "*"))
    assert len(names) == 5  # 3 hashes, the user index, one activity list
    values: list[bytes] = []
    members: list[bytes] = []
    for name in names:
        kind = admin.type(name)
        if kind == b"hash":
            for field, value in admin.hgetall(name).items():
                assert not value.startswith(b"\x80")  # pickle protocol header
                stored_value(field, value)
                values.append(value)
        elif kind == b"list":
            for entry in admin.lrange(name, 0, -1):
                json.loads(entry)
                values.append(entry)
        else:
            assert kind == b"zset"
            members += admin.zrange(name, 0, -1)
    assert values
    assert set(members) == {member(keys[2])}  # the index holds keyed hashes only
    blob = b"\n".join(names + values + members)
    for raw in raw_ids:
        assert raw.encode() not in blob


def short_prefix(admin: redis.Redis) -> str:
    """An unused prefix as short as the default ``sw:``, so key-name overhead is realistic."""
    for _ in range(50):
        prefix = f"t{secrets.token_hex(1)}:"
        if not next(iter(admin.scan_iter(match=prefix + "*", count=1000)), None):
            return prefix
    pytest.skip("no unused short prefix")


def test_memory_per_typical_session(url: str, admin: redis.Redis) -> None:
    """A record with a user, three small data keys and a 4-string fingerprint, plus its share
    of the user index; stays in the compact listpack encoding."""
    store = RedisStore(url, prefix=short_prefix(admin))
    try:
        now = time.time()
        n = 10
        for i in range(n):
            record = make_record(skey(i), created=now + i)
            store.insert(record, max_per_user=0, tombstone_until=now + 60)
        lone = make_record(skey("lone"), user="bob", created=now)
        store.insert(lone, max_per_user=0, tombstone_until=now + 60)
        s = store.prefix + "s:" + skey(0)
        assert admin.object("encoding", s) == b"listpack"
        assert admin.object("encoding", store.prefix + "u:alice") == b"listpack"
        record_bytes = int(admin.memory_usage(s, samples=0))
        share = int(admin.memory_usage(store.prefix + "u:alice", samples=0)) / n
        lone_index = int(admin.memory_usage(store.prefix + "u:bob", samples=0))
        per_session = record_bytes + share
        print(
            f"\nredis bytes per typical session: {per_session:.0f} "
            f"(record {record_bytes} + index share {share:.0f} with {n} sessions per user; "
            f"{record_bytes + lone_index} for a user's only session)"
        )
        assert record_bytes <= 456
        assert record_bytes + lone_index <= 600  # the goal, with the index counted in full
    finally:
        store.close()
        drop_prefix(store.prefix)


# -- values that test the encoding's rules -------------------------------------------------------


def test_awkward_values_round_trip(rstore: RedisStore, admin: redis.Redis) -> None:
    """Strings that look like JSON stay JSON, a time whose 8 bytes all look like number text is
    kept as text, negative zero keeps its sign; a user whose ID is JSON-looking is indexed."""
    tiny = struct.unpack(">d", b"11111111")[0]
    now = time.time()
    texts = ["", "true", "42", "dark", "\u00e9t\u00e9", " x", '"q"', "null", "nope", "[1]", "-"]
    texts += ["Infinity", "{", "a\\b", "line\nbreak", "x" * 200]
    record = make_record(skey(1), user="42", created=now)
    record.auth_at = tiny
    record.rotated_at = -0.0
    record.client_ip = "::1"
    record.user_agent = '"quoted" agent'
    record.csrf_secret = "-starts-with-a-dash"
    record.flags = {"mfa": True}
    record.fingerprint = {"ip": "dark", "ua": 7, "lang": None, "tz": "+01:00", "net": [1]}
    record.data = {f"k{i}": t for i, t in enumerate(texts)}
    record.data.update({"n": -3, "f": 0.1, "t": True, "z": None, "o": {"a": "b"}})
    rstore.insert(record, max_per_user=1, tombstone_until=now + 60)
    got = rstore.get(record.key)
    assert got == record
    assert isinstance(got, SessionRecord) and math.copysign(1.0, got.rotated_at) == -1.0
    s = rstore.prefix + "s:" + record.key
    assert admin.hget(s, "a") == json.dumps(tiny).encode()
    assert admin.hget(s, "d:k3") == b"dark" and admin.hget(s, "d:k2") == b'"42"'
    assert [r.key for r in rstore.user_sessions("42")] == [record.key]
    other = make_record(skey(2), user="42", created=now + 1)
    assert list(rstore.insert(other, max_per_user=1, tombstone_until=now + 60)) == [record.key]
    evicted = Tombstone(record.key, "evicted", other.last_seen, now + 60, "42", record.key)
    assert rstore.get(record.key) == evicted
    assert rstore.stats(now).users == 1
    for bad in (math.inf, math.nan):
        with pytest.raises(ValueError):
            rstore.update(other.key, RecordUpdate(meta={"last_seen": bad}))


def test_the_record_a_rotation_keeps_is_what_redis_holds(rstore: RedisStore, url: str) -> None:
    """The rotation's answer names only the fields the new key kept from the old one; the
    record kept in the read cache is those with the values the rotation set, and equals a read
    of the new key from Redis to the type: awkward values, a tuple and nested containers set,
    a trait of the old fingerprint that the new one lacks (it stays, under ``f:<name>``), a
    data key set and deleted at once, more set fields than one HSET takes."""
    assert rstore.read_cache is not None and rstore.read_cache.feed.wait_connected(5.0)
    now = time.time()
    old = make_record(skey(1), created=now)
    rstore.insert(old, max_per_user=0, tombstone_until=now + 60)
    nested: dict[str, Any] = {"o": {"a": (1, [2])}}
    update = RecordUpdate(
        meta={
            "last_seen": now + 1,
            "rotated_at": now + 1,
            "csrf_secret": "-starts-with-a-dash",
            "client_ip": "",
            "user_agent": '"quoted" agent',
            "fingerprint": {"ip": "42", "lang": None},
            "flags": {"mfa": True, "lineage": "L"},
            "dbsc": {"jwk": [1, 2]},
        },
        set_data={f"k{i}": i for i in range(150)}
        | {"tuple": (1, 2), "nested": nested, "both": 1, "n": 0.1, "t": "true", "s": "dark"},
        del_data=("cart", "both"),
    )
    tomb = Tombstone(old.key, "rotated:login", now, now + 60, "alice")
    new = skey(2)
    assert rstore.rotate(old.key, new, update, old_becomes=tomb, max_per_user=0,
                         tombstone_until=now + 60) == {}  # fmt: skip
    nested["o"]["a"] = None  # the caller's containers are not what the cache kept
    hits = rstore.read_cache.stats().hits
    kept = rstore.get(new)
    assert rstore.read_cache.stats().hits == hits + 1
    fresh = RedisStore(url, prefix=rstore.prefix, read_cache_ttl=0)
    try:
        stored = fresh.get(new)
    finally:
        fresh.close()
    assert isinstance(kept, SessionRecord) and isinstance(stored, SessionRecord)
    assert kept == stored
    assert kept.data["tuple"] == [1, 2] and kept.data["nested"] == {"o": {"a": [1, [2]]}}
    assert "both" not in kept.data and "cart" not in kept.data and kept.data["theme"] == "dark"
    assert kept.fingerprint == {"ip": "42", "lang": None, "tz": "+01:00"}
    assert (kept.client_ip, kept.created_at, kept.user_id) == ("", old.created_at, "alice")
    assert rstore.get(old.key) == tomb


# -- data written by older layouts ----------------------------------------------------------------

LEGACY_CODES = {
    "created_at": "c",
    "last_seen": "l",
    "expires_at": "e",
    "rotated_at": "r",
    "csrf_secret": "x",
    "user_id": "u",
    "auth_at": "a",
    "client_ip": "i",
    "user_agent": "g",
    "fingerprint": "f",
    "flags": "F",
}


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def legacy_insert(
    admin: redis.Redis, prefix: str, record: SessionRecord, *, whole_fingerprint: bool = False
) -> None:
    """A record as the layout before this one wrote it: every value JSON, a fingerprint trait
    per ``f:<name>`` field (or, older still, the fingerprint as one ``f`` value), and the key in
    the user's index as is, scored by created_at."""
    fields: dict[str, str] = {}
    for name, value in record.meta().items():
        if name == "fingerprint" and value and not whole_fingerprint:
            assert isinstance(value, dict)
            fields.update({"f:" + k: dumps(v) for k, v in value.items()})
        elif value not in (None, "", {}):
            fields[LEGACY_CODES[name]] = dumps(value)
    fields.update({"d:" + k: dumps(v) for k, v in record.data.items()})
    s = prefix + "s:" + record.key
    admin.hset(s, mapping=fields)
    admin.pexpireat(s, math.ceil(record.expires_at * 1000))
    if record.user_id is not None:
        admin.zadd(prefix + "u:" + record.user_id, {record.key: record.created_at})
        admin.pexpireat(prefix + "u:" + record.user_id, math.ceil(record.expires_at * 1000))


def legacy_marker(admin: redis.Redis, prefix: str, item: Alias | Tombstone) -> None:
    if isinstance(item, Alias):
        fields = {"@": dumps(item.target), "G": dumps(item.grace_until)}
    else:
        fields = {"!": dumps(item.reason)}
    fields.update({"T": dumps(item.at), "U": dumps(item.until)})
    if item.user_id is not None:
        fields["u"] = dumps(item.user_id)
    admin.hset(prefix + "s:" + item.key, mapping=fields)
    admin.pexpireat(prefix + "s:" + item.key, math.ceil(item.until * 1000))


def test_reads_data_of_older_layouts_and_migrates_it(
    rstore: RedisStore, admin: redis.Redis
) -> None:
    """What earlier versions wrote is read as it is; ``migrate`` (``sessionwarden migrate``)
    brings it to this layout, after which writes leave nothing of the old one behind."""
    now = time.time()
    p = rstore.prefix
    old = [make_record(skey(i), created=now + i) for i in range(3)]
    old[1].data["d"] = {"nested": ["v", 1.5]}
    for i, record in enumerate(old):
        legacy_insert(admin, p, record, whole_fingerprint=i == 2)
    alias = Alias(skey(10), old[0].key, now, now + 5, now + 600, "alice")
    tomb = Tombstone(skey(11), "logout", now, now + 600, "alice")
    legacy_marker(admin, p, alias)
    legacy_marker(admin, p, tomb)

    assert [rstore.get(r.key) for r in old] == old
    assert rstore.get(alias.key) == alias and rstore.get(tomb.key) == tomb
    assert rstore.user_sessions("alice") == old
    stats = rstore.stats(now)
    assert (stats.live_sessions, stats.users, stats.tombstones, stats.aliases) == (3, 1, 1, 1)

    # migrated: the index holds packed members, the traits their own fields; reads unchanged
    assert rstore.migrate(batch=2) >= 1
    assert rstore.migrate() == 0
    assert set(admin.zrange(p + "u:alice", 0, -1)) == {member(r.key) for r in old}
    assert [rstore.get(r.key) for r in old] == old
    for record in old[:2]:
        names = set(admin.hkeys(p + "s:" + record.key))
        assert not names & {b"f:ip", b"f:net", b"f:ua", b"f:uav", b"f:lang"}

    # a new session joins the old index: the oldest by created_at goes, although its old score
    # is higher than the new member's
    new = make_record(skey(3), created=now + 3)
    assert list(rstore.insert(new, max_per_user=3, tombstone_until=now + 60)) == [old[0].key]
    assert set(admin.zrange(p + "u:alice", 0, -1)) == {member(r.key) for r in [*old[1:], new]}
    assert rstore.stats(now).users == 1  # "alice" stored by both layouts counts once

    # updates: written in the new layout, the old whole-value fingerprint cleared
    for record in old[1:]:
        update = RecordUpdate(
            meta={
                "last_seen": now + 9,
                "expires_at": now + 7200,
                "fingerprint": {"ua": "other", "ip": "198.51.100.1", "tz": "+00:00"},
            },
            set_data={"theme": "light"},
            del_data=("n",),
        )
        assert rstore.update(record.key, update)
        record.apply(update)
        assert rstore.get(record.key) == record
        names = set(admin.hkeys(p + "s:" + record.key))
        assert {n for n in names if n == b"f" or n.startswith(b"f:")} == {b"f:tz"}
        assert len(admin.hget(p + "s:" + record.key, "l") or b"") == 8
    assert set(admin.zrange(p + "u:alice", 0, -1)) == {member(r.key) for r in [*old[1:], new]}

    # rotation of a migrated record, revocation and deletion leave no index entry behind
    legacy_insert(admin, p, old[0])  # back again, as the old layout wrote it
    assert rstore.migrate() == 2  # its hash and the index
    rotated = rstore.rotate(
        old[0].key,
        skey(4),
        RecordUpdate(meta={"rotated_at": now + 10}),
        old_becomes=Tombstone(old[0].key, "rotated", now + 10, now + 60, "alice"),
        max_per_user=0,
        tombstone_until=now + 60,
    )
    assert rotated == {}
    assert rstore.get(old[0].key) == Tombstone(old[0].key, "rotated", now + 10, now + 60, "alice")
    legacy_insert(admin, p, make_record(skey(5), created=now - 1))
    legacy_insert(admin, p, make_record(skey(6), created=now - 2))
    assert rstore.migrate() == 3
    rstore.delete(skey(6))
    assert admin.zscore(p + "u:alice", skey(6)) is None
    assert rstore.revoke(skey(5), Tombstone(skey(5), "logout", now, now + 60, "alice"))
    assert admin.zscore(p + "u:alice", skey(5)) is None
    assert list(rstore.revoke_user("alice", reason="x", at=now, until=now + 60)) == sorted(
        [old[1].key, old[2].key, new.key, skey(4)]
    )
    assert admin.zcard(p + "u:alice") == 0
    assert rstore.purge(now + 10_000) >= 1


def test_async_store_reads_under_uvloop() -> None:
    """uvicorn runs on uvloop when it is installed; the hot-read connection must work there."""
    uvloop = pytest.importorskip("uvloop")
    url = redis_or_skip()
    prefix = unique_prefix()

    async def go() -> None:
        store = AsyncRedisStore(url, prefix=prefix)
        record = make_record(skey("uv"))
        await store.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
        assert await store.get(record.key) == record
        assert await store.get(skey("missing")) is None
        await store.close()

    try:
        uvloop.run(go())
    finally:
        drop_prefix(prefix)


@pytest.mark.anyio
async def test_async_all_sessions_walks_every_signed_in_record(astore: AsyncRedisStore) -> None:
    now = time.time()
    signed_in = {skey(i) for i in range(9)}
    for key in signed_in:
        await astore.insert(make_record(key), max_per_user=0, tombstone_until=now + 60)
    await astore.insert(make_record(skey("anon"), user=None), max_per_user=0, tombstone_until=now)
    seen: list[str] = []
    page, after = await astore.all_sessions(None, 2)
    seen += [r.key for r in page]
    while after is not None:
        page, after = await astore.all_sessions(after, 2)
        assert page or after is None, "only the last page may be empty"
        seen += [r.key for r in page]
    assert set(seen) == signed_in
    with pytest.raises(ValueError):
        await astore.all_sessions("not-a-cursor", 2)
