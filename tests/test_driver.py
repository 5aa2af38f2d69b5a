"""The one driver: the same core operation gives the same result synchronously and
asynchronously, and each read of the operation is one read of the store."""

from __future__ import annotations

from typing import Any

from sessionwarden.core import run_async, run_sync
from sessionwarden.core.ops import Get, Steps, Update
from sessionwarden.records import Lookup, RecordUpdate, SessionRecord
from sessionwarden.stores import InlineAsyncStore, MemoryStore


def _record(key: str) -> SessionRecord:
    return SessionRecord(
        key=key, created_at=1, last_seen=1, expires_at=10**10, rotated_at=1, csrf_secret="s"
    )


def steps(key: str) -> Steps[tuple[bool, Lookup]]:
    ok = yield from Update(key, RecordUpdate(set_data={"n": 1}))
    found = yield from Get(key)
    return ok, found


def _run(coro: Any) -> Any:
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("a local store never suspends")


def test_sync_and_async_drivers_agree() -> None:
    store = MemoryStore()
    store.insert(_record("a"), max_per_user=0, tombstone_until=0)
    ok, found = run_sync(steps("a"), store)
    assert ok and isinstance(found, SessionRecord) and found.data == {"n": 1}
    store2 = MemoryStore()
    store2.insert(_record("a"), max_per_user=0, tombstone_until=0)
    assert _run(run_async(steps("a"), InlineAsyncStore(store2))) == (ok, found)


def test_async_driver_reads_each_key_once() -> None:
    """A read is one ``get`` of the store (a cached one answers there, without suspending)."""
    sync = MemoryStore()
    sync.insert(_record("a"), max_per_user=0, tombstone_until=0)
    awaited: list[str] = []

    class Counting(InlineAsyncStore):
        async def get(self, key: str) -> Lookup:
            awaited.append(key)
            return await super().get(key)

    ok, found = _run(run_async(steps("a"), Counting(sync)))
    assert ok and isinstance(found, SessionRecord) and found.data == {"n": 1}
    assert awaited == ["a"]


def test_operator_listing_agrees_on_both_drivers() -> None:
    from dataclasses import replace

    from sessionwarden.clock import ManualClock
    from sessionwarden.core import Engine
    from sessionwarden.policy import Policy

    store = MemoryStore()
    for i in range(5):
        record = replace(_record(f"{i:x}" * 64), user_id=f"u{i}", created_at=10**9, last_seen=10**9)
        store.insert(record, max_per_user=0, tombstone_until=0)
    engine = Engine(Policy(secret_keys=(b"k" * 32,)), clock=ManualClock(10**9 + 1))
    rows, after = run_sync(engine.list_all_sessions(None, 3), store)
    assert [r.user_id for r in rows] == ["u0", "u1", "u2"] and after == "k:" + "2" * 16
    assert _run(run_async(engine.list_all_sessions(None, 3), InlineAsyncStore(store))) == (
        rows,
        after,
    )
    rest, end = _run(run_async(engine.list_all_sessions(after, 3), InlineAsyncStore(store)))
    assert [r.user_id for r in rest] == ["u3", "u4"] and end is None
