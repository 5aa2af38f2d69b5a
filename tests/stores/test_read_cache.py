"""The Redis read cache, against the real server: what it serves, and when it must stop serving.

Writes here come from an independent redis-py connection, i.e. exactly what another process
sharing the store would do.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sessionwarden.records import Alias, SessionRecord, Tombstone
from sessionwarden.stores import tracking
from sessionwarden.stores.resp import BlockingReader, fast_path_target
from sessionwarden.stores.tracking import DRAIN_INTERVAL, MISS, InvalidationFeed, ReadCache

from ..conftest import drop_prefix, redis_or_skip, unique_prefix
from .test_read_cache_concurrency import make_record

pytestmark = pytest.mark.redis


class Ticker:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(key: str = "k1") -> SessionRecord:
    return SessionRecord(
        key=key,
        created_at=1.0,
        last_seen=2.0,
        expires_at=3.0,
        rotated_at=1.0,
        csrf_secret="secret",
        user_id="alice",
        fingerprint={"ua": "Firefox"},
        flags={"reauth": False},
        data={"cart": [1, 2]},
    )


class Harness:
    def __init__(self, prefix: str, ticker: Ticker, *, ttl: float = 30.0, size: int = 100) -> None:
        import redis

        url = redis_or_skip()
        target = fast_path_target(url)
        assert target is not None
        host, port, _db, user, password = target
        self.prefix = prefix
        self.other = redis.Redis.from_url(url)  # "another process"
        self.cache = ReadCache(
            lambda on_keys: InvalidationFeed(
                host,
                port,
                user,
                password,
                key_prefix=prefix + "s:",
                timeout=0.5,
                on_keys=on_keys,
                monotonic=ticker,
            ),
            ttl=ttl,
            size=size,
            monotonic=ticker,
        )
        assert self.cache.feed.wait_connected(5.0), "the feed did not connect"
        # This process's lean connection: notices flow through its registration (NOLOOP).
        self.lean = BlockingReader(*target, timeout=0.5)
        self.lean.tracker = self.cache
        self.register()

    def register(self) -> None:
        """Send a command on the lean connection (which registers it when due)."""
        assert self.lean.call(b"PING") == b"PONG"

    def name(self, key: str) -> str:
        return f"{self.prefix}s:{key}"

    def cached(self, key: str, value: Any) -> None:
        """What a store does on a miss: take a ticket, read on the lean connection (which has
        Redis track the key; the reply is not decoded here), keep ``value`` as the result."""
        name = self.name(key)
        self.register()
        assert self.cache.lookup(name) is MISS
        ticket = self.cache.begin(name)
        assert ticket is not None
        self.lean.call(b"HGETALL", name.encode())
        self.cache.complete(name, ticket, value)

    def close(self) -> None:
        self.lean.close()
        self.cache.close()
        self.other.close()


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def h(ticker: Ticker) -> Iterator[Harness]:
    prefix = unique_prefix()
    harness = Harness(prefix, ticker)
    yield harness
    harness.close()
    drop_prefix(prefix)


def test_keeps_its_own_copy_and_serves_it_without_copying(h: Harness) -> None:
    read = record()
    h.cached("k1", read)
    read.data["cart"].append(3)  # type: ignore[union-attr]  # the reader's object is not kept
    first = h.cache.lookup(h.name("k1"))
    assert isinstance(first, SessionRecord) and first == record()
    assert h.cache.lookup(h.name("k1")) is first  # hits share it: nobody changes a record
    assert h.cache.hits == 2


def test_aliases_and_tombstones_are_kept_unknown_keys_are_not(h: Harness) -> None:
    alias = Alias(key="a", target="b", at=1.0, grace_until=2.0, until=3.0)
    tomb = Tombstone(key="t", reason="revoked", at=1.0, until=3.0, user_id="alice")
    h.cached("a", alias)
    h.cached("t", tomb)
    h.cached("nobody", None)
    assert h.cache.lookup(h.name("a")) == alias
    assert h.cache.lookup(h.name("t")) == tomb
    assert h.cache.lookup(h.name("nobody")) is MISS


def test_a_change_by_another_client_evicts_the_entry(h: Harness) -> None:
    h.cached("k1", record())
    h.other.hset(h.name("k1"), "l", "5")
    h.cache.barrier()
    assert h.cache.lookup(h.name("k1")) is MISS


def test_a_change_arrives_without_a_barrier_too(h: Harness, ticker: Ticker) -> None:
    h.other.hset(h.name("k1"), "c", "1")
    h.cache.barrier()
    h.cached("k1", record())
    h.other.delete(h.name("k1"))
    deadline = time.monotonic() + 2.0
    while h.cache.lookup(h.name("k1")) is not MISS:
        assert time.monotonic() < deadline, "the invalidation never arrived"
        time.sleep(0.001)
        ticker.now += DRAIN_INTERVAL


def _notice_waiting(h: Harness) -> None:
    """Wait until the feed's socket holds a message (the notice reached this process)."""
    sock = h.cache.feed._sock
    assert sock is not None
    ready, _, _ = select.select([sock], [], [], 5.0)
    assert ready, "no notice arrived"


def test_a_change_is_applied_one_drain_interval_after_its_notice_arrived(
    h: Harness, ticker: Ticker
) -> None:
    h.cached("k1", record())  # filling the entry drained the feed (at ticker.now)
    h.other.hset(h.name("k1"), "l", "5")
    _notice_waiting(h)
    # Within the interval a hit does not read the socket (a system call per hit otherwise)...
    ticker.now += DRAIN_INTERVAL / 2
    assert h.cache.lookup(h.name("k1")) == record()
    # ...and the first hit once it has passed applies the notice.
    ticker.now += DRAIN_INTERVAL  # (a whole one: sums of floats fall just short)
    assert h.cache.lookup(h.name("k1")) is MISS


def test_a_read_that_overlapped_a_change_is_not_kept_even_within_the_drain_interval(
    h: Harness,
) -> None:
    h.cached("k2", record("k2"))  # the feed was just drained: the interval is running
    name = h.name("k1")
    ticket = h.cache.begin(name)
    h.lean.call(b"HGETALL", name.encode())  # the read (Redis tracks the key from here on)
    h.other.hset(name, "l", "5")  # announced while "the reply is on the wire"
    _notice_waiting(h)
    h.cache.complete(name, ticket, record())  # always drains before keeping anything
    assert h.cache.lookup(name) is MISS


def test_a_change_while_the_read_is_on_the_wire_is_not_kept(h: Harness) -> None:
    name = h.name("k1")
    h.register()
    ticket = h.cache.begin(name)
    h.lean.call(b"HGETALL", name.encode())
    h.other.hset(name, "l", "5")  # announced after the read started: the reply may be older
    h.cache.barrier()
    h.cache.complete(name, ticket, record())
    assert h.cache.lookup(name) is MISS


def test_keys_outside_the_prefix_do_not_evict(h: Harness) -> None:
    h.cached("k1", record())
    h.other.set(h.prefix + "a:k1", "x")  # the activity trail: not a session hash
    h.cache.barrier()
    assert h.cache.lookup(h.name("k1")) == record()
    h.other.delete(h.prefix + "a:k1")


def test_own_writes_evict_at_once(h: Harness) -> None:
    h.cached("k1", record())
    h.cached("k2", record("k2"))
    h.cache.evict([h.name("k1")])
    assert h.cache.lookup(h.name("k1")) is MISS
    assert h.cache.lookup(h.name("k2")) == record("k2")


def test_a_write_on_the_registered_connection_keeps_what_it_wrote(h: Harness) -> None:
    name = h.name("k1")
    h.cached("k1", record())
    ticket = h.cache.begin(name)
    # As the update script does: write, then read what was written (the key stays tracked).
    assert h.lean.call(b"HSET", name.encode(), b"l", b"5") == 1  # NOLOOP: not announced back
    h.lean.call(b"HGETALL", name.encode())
    written = record()
    written.last_seen = 5.0
    h.cache.written(name, ticket, written)
    h.cache.barrier()
    assert h.cache.lookup(name) == written
    h.other.hset(name, "l", "6")  # another client's write is announced all the same
    h.cache.barrier()
    assert h.cache.lookup(name) is MISS


def test_a_write_raced_by_another_client_keeps_nothing(h: Harness) -> None:
    name = h.name("k1")
    h.cached("k1", record())
    ticket = h.cache.begin(name)
    h.lean.call(b"HSET", name.encode(), b"l", b"5")
    h.lean.call(b"HGETALL", name.encode())
    h.other.hset(name, "l", "6")  # lands between this process's write and its reply's use
    h.cache.barrier()
    h.cache.written(name, ticket, record())
    assert h.cache.lookup(name) is MISS
    h.cache.written(name, None, record())  # no ticket (nothing trusted at begin): forgets
    assert h.cache.lookup(name) is MISS


def test_nothing_is_served_without_a_registered_connection(h: Harness) -> None:
    name = h.name("k1")
    h.cached("k1", record())
    h.lean.close()  # the only registration: notices stop, so everything kept goes
    assert h.cache.lookup(name) is MISS
    assert h.cache.begin(name) is None
    h.other.hset(name, "l", "6")
    h.cache.barrier()
    assert h.cache.lookup(name) is MISS


def test_entries_live_at_most_ttl(ticker: Ticker) -> None:
    prefix = unique_prefix()
    h = Harness(prefix, ticker, ttl=2.0)
    try:
        h.cached("k1", record())
        ticker.now += 0.5  # the heartbeat PING goes out after HEARTBEAT; answered in time
        assert h.cache.lookup(h.name("k1")) == record()
        ticker.now += 1.6
        assert h.cache.lookup(h.name("k1")) is MISS
    finally:
        h.close()


def test_size_is_bounded_oldest_first(ticker: Ticker) -> None:
    h = Harness(unique_prefix(), ticker, size=2)
    try:
        for key in ("k1", "k2", "k3"):
            h.cached(key, record(key))
        assert h.cache.lookup(h.name("k1")) is MISS
        assert h.cache.lookup(h.name("k3")) == record("k3")
    finally:
        h.close()


def test_a_killed_feed_drops_everything_and_reconnects(h: Harness, ticker: Ticker) -> None:
    h.cached("k1", record())
    client_id = h.cache.feed.client_id
    h.other.client_kill_filter(_id=str(client_id))
    # The write that the dead feed would have announced:
    h.other.hset(h.name("k1"), "l", "5")
    _notice_waiting(h)  # the end of the connection, which the next drain finds
    ticker.now += 2 * tracking.DRAIN_INTERVAL
    assert h.cache.lookup(h.name("k1")) is MISS
    assert not h.cache.feed.connected
    assert h.cache.begin(h.name("k1")) is None  # nothing is kept while the feed is down
    tracking_delay = tracking.RECONNECT_DELAY
    assert h.cache.feed.wait_connected(tracking_delay + 5.0)
    assert h.cache.feed.connects == 2
    h.cached("k1", record())
    assert h.cache.lookup(h.name("k1")) == record()


def test_a_silent_feed_stops_serving_after_heartbeat_and_timeout(
    h: Harness, ticker: Ticker, monkeypatch: pytest.MonkeyPatch
) -> None:
    h.cached("k1", record())
    # The network goes quiet: replace the feed's socket by one nobody answers.
    mine, theirs = socket.socketpair()
    mine.setblocking(False)
    real = h.cache.feed._sock
    monkeypatch.setattr(h.cache.feed, "_sock", mine)
    try:
        ticker.now += tracking.HEARTBEAT  # quiet long enough: this hit sends a PING
        assert h.cache.lookup(h.name("k1")) == record()
        assert theirs.recv(100) == b"*1\r\n$4\r\nPING\r\n"
        ticker.now += 0.4  # within the timeout (0.5 s): still trusted
        assert h.cache.lookup(h.name("k1")) == record()
        ticker.now += 0.2  # no answer past the timeout: broken
        assert h.cache.lookup(h.name("k1")) is MISS
        assert not h.cache.feed.connected
    finally:
        theirs.close()
        assert real is not None
        real.close()


def test_a_flush_drops_everything(h: Harness) -> None:
    import redis

    url = redis_or_skip()
    other_db = redis.Redis.from_url(url[: url.rindex("/")] + "/15")
    if other_db.dbsize():
        pytest.skip("database 15 is not empty; this test flushes it")
    h.cached("k1", record())
    other_db.flushdb()  # any database: Redis announces flushes to every tracking client
    other_db.close()
    h.cache.barrier()
    assert h.cache.lookup(h.name("k1")) is MISS


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_empty_with_its_own_feed(h: Harness) -> None:
    h.cached("k1", record())
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = b"?"
        try:
            empty = h.cache.lookup(h.name("k1")) is MISS
            connected = h.cache.feed.wait_connected(5.0)
            own = h.cache.feed.connects >= 2
            code = b"1" if (empty and connected and own) else b"0"
        finally:
            os.write(write, code)
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    os.close(read)
    assert answer == b"1"
    assert h.cache.lookup(h.name("k1")) == record()  # the parent's cache is untouched


def test_overlapping_reads_on_one_connection_keep_the_last_reply_applied(h: Harness) -> None:
    name = h.name("k1")
    h.register()
    first, second = h.cache.begin(name, "lane"), h.cache.begin(name, "lane")
    assert first is not None and first is second  # many requests reading one session at once
    assert h.cache.stats().pending == 1
    h.lean.call(b"HGETALL", name.encode())
    h.cache.complete(name, first, record())
    assert h.cache.lookup(name) == record()
    h.cache.complete(name, second, record("other"))  # executed later: the newer state
    assert h.cache.lookup(name) == record("other")
    assert h.cache.stats().pending == 0


def test_a_read_then_a_write_on_one_connection_keep_the_write_s_record(h: Harness) -> None:
    """Read begins, write begins, read reply, write reply: the write's record is kept, and the
    next read costs no round trip."""
    name = h.name("k1")
    h.register()
    read = h.cache.begin(name, "lane")
    write = h.cache.begin(name, "lane")
    h.lean.call(b"HGETALL", name.encode())  # the read runs first: the value before the write
    assert h.lean.call(b"HSET", name.encode(), b"l", b"5") == 1  # not announced (NOLOOP)
    h.lean.call(b"HGETALL", name.encode())
    written = record()
    written.last_seen = 5.0
    h.cache.complete(name, read, record())
    assert h.cache.lookup(name) == record()  # the write is not acknowledged yet
    h.cache.written(name, write, written)
    assert h.cache.lookup(name) == written
    assert h.cache.stats().pending == 0


def test_a_read_overlapping_a_write_then_reads_after_it_keep_hitting(h: Harness) -> None:
    """Reads that began while the write was on the wire (sent after it on the same connection)
    may keep their replies: the cache stays filled under a stream of writes."""
    name = h.name("k1")
    h.register()
    write = h.cache.begin(name, "lane")
    assert h.lean.call(b"HSET", name.encode(), b"l", b"5") == 1
    h.lean.call(b"HGETALL", name.encode())
    read = h.cache.begin(name, "lane")  # issued after the write was sent: runs after it
    written = record()
    written.last_seen = 5.0
    h.cache.written(name, write, written)
    h.lean.call(b"HGETALL", name.encode())
    h.cache.complete(name, read, written)
    assert h.cache.lookup(name) == written
    assert h.cache.stats().pending == 0


def test_a_notice_between_begin_and_reply_keeps_nothing_of_any_overlapping_operation(
    h: Harness,
) -> None:
    name = h.name("k1")
    h.register()
    read = h.cache.begin(name, "lane")
    write = h.cache.begin(name, "lane")
    h.lean.call(b"HGETALL", name.encode())
    h.other.hset(name, "x", "1")  # another client changes it: announced to the feed
    h.cache.barrier()
    later = h.cache.begin(name, "lane")  # issued after the notice: a new ticket
    assert later is not read
    h.cache.complete(name, read, record())
    h.cache.written(name, write, record())
    assert h.cache.lookup(name) is MISS
    h.lean.call(b"HGETALL", name.encode())
    h.cache.complete(name, later, record("after"))  # retired by the failed-to-keep write
    assert h.cache.lookup(name) is MISS
    assert h.cache.stats().pending == 0


def test_a_read_issued_after_a_notice_is_kept(h: Harness) -> None:
    name = h.name("k1")
    h.register()
    before = h.cache.begin(name, "lane")
    h.lean.call(b"HGETALL", name.encode())
    h.other.hset(name, "x", "1")
    h.cache.barrier()
    after = h.cache.begin(name, "lane")
    h.lean.call(b"HGETALL", name.encode())
    h.cache.complete(name, before, record("old"))
    assert h.cache.lookup(name) is MISS
    h.cache.complete(name, after, record("new"))
    assert h.cache.lookup(name) == record("new")
    assert h.cache.stats().pending == 0


def test_failed_and_cancelled_operations_leave_no_ticket(h: Harness) -> None:
    name = h.name("k1")
    h.register()
    h.cached("k1", record())
    read = h.cache.begin(name, "lane")
    h.cache.complete(name, read, None)  # a read that failed: nothing kept, nothing dropped
    assert h.cache.lookup(name) == record()
    read = h.cache.begin(name, "lane")
    write = h.cache.begin(name, "lane")
    h.cache.written(name, write, None)  # a write that failed may still run: forget the key
    assert h.cache.lookup(name) is MISS
    h.cache.complete(name, read, record())  # may predate the write: not kept
    assert h.cache.lookup(name) is MISS
    assert h.cache.stats().pending == 0


def test_made_up_keys_leave_nothing_behind(h: Harness) -> None:
    h.register()
    for n in range(10_000):
        name = h.name(f"made-up-{n}")
        ticket = h.cache.begin(name, "lane")
        h.cache.complete(name, ticket, None)  # nothing there
    assert h.cache.stats().pending == 0 and h.cache.stats().entries == 0


def test_a_read_on_another_connection_keeps_nothing_older_than_this_process_s_write(
    h: Harness,
) -> None:
    """Replies of two connections arrive in no particular order: the write's acknowledged
    record must not be replaced by a reply that may have been read before it."""
    name = h.name("k1")
    h.register()
    read = h.cache.begin(name, "thread 1")
    h.lean.call(b"HGETALL", name.encode())  # the read runs first: the value before the write
    write = h.cache.begin(name, "thread 2")
    assert h.lean.call(b"HSET", name.encode(), b"l", b"5") == 1  # not announced (NOLOOP)
    h.lean.call(b"HGETALL", name.encode())
    written = record()
    written.last_seen = 5.0
    h.cache.written(name, write, written)
    h.cache.complete(name, read, record())  # the older reply arrives last: not kept
    assert h.cache.lookup(name) == written
    assert h.cache.stats().pending == 0


# -- two processes' stores: a write returns only once its notices have left Redis -----------------


def _drained(store: Any) -> None:
    """Apply what the store's notice connection has received by now (whatever the drain
    interval): the next read finds only notices that had not arrived."""
    cache = store.read_cache
    with cache._lock:
        cache.feed.ready(drain=True)


WRITES = 400


def test_a_write_returns_only_once_redis_sent_its_notices_sync() -> None:
    """Two stores on one prefix, as two worker processes. Redis answers a writing script before
    it sends the invalidation notices of the keys the script changed, so, unless the store
    waits (its PING after the write), the other process can be asked before its notice left
    Redis and answer from its cache what preceded the write: the next request of the same
    client, on another worker, missed the value just written (seen under gunicorn and uvicorn
    workers, tests/test_servers_*.py). Here the other store reads right after each write
    returned."""
    from sessionwarden.records import RecordUpdate
    from sessionwarden.stores.redis import RedisStore

    url, prefix = redis_or_skip(), unique_prefix()
    writer, reader = RedisStore(url, prefix=prefix), RedisStore(url, prefix=prefix)
    try:
        for store in (writer, reader):
            assert store.read_cache is not None and store.read_cache.feed.wait_connected(5.0)
        key = "f" * 64
        writer.insert(make_record(key), max_per_user=0, tombstone_until=time.time() + 60)
        stale = 0
        for n in range(WRITES):
            reader.get(key)
            reader.get(key)  # kept by the reader's cache
            assert writer.update(key, RecordUpdate(set_data={"n": n}))
            _drained(reader)
            found = reader.get(key)
            assert isinstance(found, SessionRecord)
            stale += found.data.get("n") != n
        assert stale == 0, f"{stale} of {WRITES} reads missed the write that had returned"
        assert reader.read_cache.hits > 0  # the cache was in use
    finally:
        writer.close()
        reader.close()
        drop_prefix(prefix)


def test_a_write_returns_only_once_redis_sent_its_notices_async() -> None:
    """The same through the asyncio store (the ASGI middleware's)."""
    import asyncio

    from sessionwarden.records import RecordUpdate
    from sessionwarden.stores.redis import AsyncRedisStore

    url, prefix = redis_or_skip(), unique_prefix()

    async def scenario() -> tuple[int, int]:
        writer, reader = AsyncRedisStore(url, prefix=prefix), AsyncRedisStore(url, prefix=prefix)
        try:
            for store in (writer, reader):
                cache = store.read_cache
                assert cache is not None
                await asyncio.to_thread(cache.feed.wait_connected, 5.0)
            key = "e" * 64
            await writer.insert(make_record(key), max_per_user=0, tombstone_until=time.time() + 60)
            stale = 0
            for n in range(WRITES):
                await reader.get(key)
                await reader.get(key)
                assert await writer.update(key, RecordUpdate(set_data={"n": n}))
                _drained(reader)
                found = await reader.get(key)
                assert isinstance(found, SessionRecord)
                stale += found.data.get("n") != n
            assert reader.read_cache is not None
            return stale, reader.read_cache.hits
        finally:
            await writer.close()
            await reader.close()

    try:
        stale, hits = asyncio.run(scenario())
    finally:
        drop_prefix(prefix)
    assert stale == 0, f"{stale} of {WRITES} reads missed the write that had returned"
    assert hits > 0
