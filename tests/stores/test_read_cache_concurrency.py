"""The Redis read cache under concurrent reads and writes of one session, through the stores.

What a user can rely on: a write acknowledged to one request is seen by every later request of
the process; a change by another process is seen once its notice has arrived; failed, cancelled
and unknown-key reads leave nothing behind; and the cache keeps serving while one session is
written to concurrently (instead of missing on nearly every read).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from sessionwarden.records import RecordUpdate, SessionRecord, Tombstone
from sessionwarden.stores.base import StoreUnavailable
from sessionwarden.stores.redis import AsyncRedisStore, RedisStore
from sessionwarden.stores.resp import RespError

from ..conftest import drop_prefix, redis_or_skip, unique_prefix

pytestmark = pytest.mark.redis


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def url() -> str:
    return redis_or_skip()


@pytest.fixture
async def astore(url: str) -> AsyncIterator[AsyncRedisStore]:
    store = AsyncRedisStore(url, prefix=unique_prefix())
    assert store.read_cache is not None and store.read_cache.feed.wait_connected(5.0)
    yield store
    await store.close()
    drop_prefix(store.prefix)


@pytest.fixture
def rstore(url: str) -> Iterator[RedisStore]:
    store = RedisStore(url, prefix=unique_prefix())
    assert store.read_cache is not None and store.read_cache.feed.wait_connected(5.0)
    yield store
    store.close()
    drop_prefix(store.prefix)


def skey(n: int | str) -> str:
    return hashlib.sha256(f"session-{n}".encode()).hexdigest()


def make_record(key: str) -> SessionRecord:
    now = time.time()
    return SessionRecord(
        key=key,
        created_at=now,
        last_seen=now,
        expires_at=now + 3600,
        rotated_at=now,
        csrf_secret="c" * 43,
        user_id="alice",
        auth_at=now,
        data={"n": 0},
    )


def counter(found: object) -> int:
    assert isinstance(found, SessionRecord), found
    value = found.data["n"]
    assert isinstance(value, int)
    return value


def pending(store: AsyncRedisStore | RedisStore) -> int:
    assert store.read_cache is not None
    return store.read_cache.stats().pending


@pytest.mark.anyio
async def test_concurrent_tasks_on_one_session_see_every_acknowledged_write(
    astore: AsyncRedisStore,
) -> None:
    """64 tasks on one session, a tenth of their requests writes (each task its own data key,
    counting up): a read that begins after a write returned sees it (or something newer), and
    the cache answers the reads."""
    record = make_record(skey(1))
    await astore.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
    acknowledged: dict[str, int] = {}  # per data key, the newest value a write returned for
    stale: list[tuple[str, object, int]] = []

    async def worker(n: int) -> None:
        mine = f"w{n}"
        for i in range(60):
            if (n + i) % 10 == 0:
                value = acknowledged.get(mine, 0) + 1
                assert await astore.update(record.key, RecordUpdate(set_data={mine: value}))
                acknowledged[mine] = value
            else:
                floor = dict(acknowledged)
                found = await astore.get(record.key)
                assert isinstance(found, SessionRecord)
                for name, value in floor.items():
                    seen = found.data.get(name, 0)
                    if not isinstance(seen, int) or seen < value:
                        stale.append((name, seen, value))

    cache = astore.read_cache
    assert cache is not None
    before = cache.stats()
    await asyncio.gather(*(worker(n) for n in range(64)))
    after = cache.stats()
    assert not stale
    assert after.pending == 0
    hits, misses = after.hits - before.hits, after.misses - before.misses
    assert hits > misses  # the cache keeps serving while the session is written to


@pytest.mark.anyio
async def test_a_write_returned_is_seen_by_every_later_read_of_the_process(
    astore: AsyncRedisStore,
) -> None:
    """One writer, many readers: after ``update`` returns value n, no read that begins later
    answers less than n."""
    record = make_record(skey(2))
    await astore.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
    acknowledged = 0
    done = False
    stale: list[tuple[int, int]] = []

    async def writer() -> None:
        nonlocal acknowledged, done
        for value in range(1, 151):
            assert await astore.update(record.key, RecordUpdate(set_data={"n": value}))
            acknowledged = value
            await asyncio.sleep(0)
        done = True

    async def reader() -> None:
        while not done:
            floor = acknowledged
            found = counter(await astore.get(record.key))
            if found < floor:
                stale.append((found, floor))
            await asyncio.sleep(0)  # a hit does not yield to the loop

    await asyncio.gather(writer(), *(reader() for _ in range(32)))
    assert not stale
    assert counter(await astore.get(record.key)) == 150
    assert pending(astore) == 0


def test_threads_on_one_session_see_every_acknowledged_write(rstore: RedisStore) -> None:
    """The synchronous store: one connection per thread, replies of different threads in no
    particular order; a read that begins after a write returned still sees it."""
    record = make_record(skey(3))
    rstore.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
    lock = threading.Lock()
    acknowledged = 0
    done = threading.Event()
    stale: list[tuple[int, int]] = []

    def writer() -> None:
        nonlocal acknowledged
        try:
            for value in range(1, 201):
                assert rstore.update(record.key, RecordUpdate(set_data={"n": value}))
                with lock:
                    acknowledged = value
        finally:
            done.set()

    def reader() -> None:
        while not done.is_set():
            with lock:
                floor = acknowledged
            found = counter(rstore.get(record.key))
            if found < floor:
                stale.append((found, floor))

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not stale
    assert counter(rstore.get(record.key)) == 200
    assert pending(rstore) == 0


@pytest.mark.anyio
async def test_another_process_s_write_and_revocation_are_seen_under_concurrent_reads(
    astore: AsyncRedisStore, url: str
) -> None:
    record = make_record(skey(4))
    await astore.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
    other = RedisStore(url, prefix=astore.prefix, read_cache_ttl=0)  # "another process"
    assert astore.read_cache is not None
    stop = False
    errors: list[object] = []

    async def reader() -> None:
        while not stop:
            try:
                await astore.get(record.key)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
            await asyncio.sleep(0)

    readers = [asyncio.ensure_future(reader()) for _ in range(16)]
    try:
        await asyncio.sleep(0.05)
        assert await asyncio.to_thread(other.update, record.key, RecordUpdate(set_data={"n": 7}))
        # Seen once the notice has arrived (the barrier waits for it) ...
        await asyncio.to_thread(astore.read_cache.barrier)
        assert counter(await astore.get(record.key)) == 7
        now = time.time()
        tomb = Tombstone(key=record.key, reason="admin", at=now, until=now + 60, user_id="alice")
        assert await asyncio.to_thread(other.revoke, record.key, tomb)
        # ... and without the barrier, as soon as it arrived (loopback: at once), far sooner
        # than an entry lives (2 s).
        deadline = time.monotonic() + 0.5
        while not isinstance(await astore.get(record.key), Tombstone):
            assert time.monotonic() < deadline, "the revocation was not seen"
            await asyncio.sleep(0.001)
        for _ in range(100):
            assert isinstance(await astore.get(record.key), Tombstone)
    finally:
        stop = True
        await asyncio.gather(*readers)
        other.close()
    assert not errors
    assert pending(astore) == 0


@pytest.mark.anyio
async def test_failed_and_cancelled_reads_and_writes_leave_no_ticket(
    astore: AsyncRedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = make_record(skey(5))
    await astore.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
    fast = astore._fast
    assert fast is not None

    async def fails(*args: object) -> object:
        raise RespError("timeout")

    async def hangs(*args: object) -> object:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    monkeypatch.setattr(fast, "call", fails)
    with pytest.raises(StoreUnavailable):
        await astore.get(record.key)
    with pytest.raises(StoreUnavailable):
        await astore.update(record.key, RecordUpdate(set_data={"n": 1}))
    assert pending(astore) == 0
    monkeypatch.setattr(fast, "call", hangs)
    tasks: list[asyncio.Future[object]] = [
        asyncio.ensure_future(astore.get(record.key)) for _ in range(5)
    ]
    tasks.append(asyncio.ensure_future(astore.update(record.key, RecordUpdate())))
    await asyncio.sleep(0.01)
    assert pending(astore) == 1  # one ticket shared by the six operations under way
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert pending(astore) == 0
    monkeypatch.undo()
    assert await astore.get(record.key) == record  # and the cache still works
    assert await astore.get(record.key) == record


def test_failed_sync_reads_and_writes_leave_no_ticket(
    rstore: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = make_record(skey(6))
    rstore.insert(record, max_per_user=0, tombstone_until=time.time() + 60)
    assert rstore.get(record.key) == record
    fast = rstore._fast
    assert fast is not None

    def fails(*args: object) -> object:
        raise RespError("timeout")

    monkeypatch.setattr(fast, "call", fails)
    monkeypatch.setattr(fast, "hgetall", fails)
    with pytest.raises(StoreUnavailable):
        rstore.update(record.key, RecordUpdate(set_data={"n": 1}))
    with pytest.raises(StoreUnavailable):  # the failed write may have run: not served
        rstore.get(record.key)
    assert pending(rstore) == 0


@pytest.mark.anyio
async def test_ten_thousand_made_up_ids_leave_nothing_behind(astore: AsyncRedisStore) -> None:
    for start in range(0, 10_000, 1000):
        found = await asyncio.gather(
            *(astore.get(skey(f"made-up-{n}")) for n in range(start, start + 1000))
        )
        assert found == [None] * 1000
    assert astore.read_cache is not None
    stats = astore.read_cache.stats()
    assert stats.pending == 0 and stats.entries == 0
