"""The memory store's lock-free reads: a read sees one write or the next, never half of one."""

from __future__ import annotations

import threading

from sessionwarden.records import RecordUpdate, SessionRecord
from sessionwarden.stores.memory import MemoryStore

T0 = 1_700_000_000.0


def test_reads_during_writes_see_whole_updates() -> None:
    store = MemoryStore()
    store.insert(
        SessionRecord("k", T0, T0, T0 + 60, T0, "s", user_id="u", data={"a": 0, "b": 0}),
        max_per_user=0,
        tombstone_until=T0 + 60,
    )
    stop = threading.Event()
    torn: list[SessionRecord] = []

    def read() -> None:
        while not stop.is_set():
            got = store.get("k")
            assert isinstance(got, SessionRecord)
            if got.data["a"] != got.data["b"] or got.last_seen != T0 + got.data["a"]:
                torn.append(got)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for n in range(1, 1500):
            update = RecordUpdate(meta={"last_seen": T0 + n}, set_data={"a": n, "b": n})
            assert store.update("k", update)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert torn == []


def test_a_read_copy_never_changes_with_later_writes() -> None:
    store = MemoryStore()
    store.insert(
        SessionRecord("k", T0, T0, T0 + 60, T0, "s", flags={"f": [1]}, data={"x": [1]}),
        max_per_user=0,
        tombstone_until=T0 + 60,
    )
    before = store.get("k")
    assert store.update("k", RecordUpdate(meta={"flags": {"f": [2]}}, set_data={"x": [2]}))
    assert isinstance(before, SessionRecord)
    assert before.data == {"x": [1]} and before.flags == {"f": [1]}
    after = store.get("k")
    assert isinstance(after, SessionRecord)
    assert after.data == {"x": [2]} and after.flags == {"f": [2]}
