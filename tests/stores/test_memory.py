"""The memory store's lock-free reads: a read sees one write or the next, never half of one."""

from __future__ import annotations

import threading

from sessionwarden.records import RecordUpdate, SessionRecord, Tombstone
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
            assert store.update("k", update, activity_max=5)
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


def test_an_update_and_a_rotation_keep_no_object_of_the_caller() -> None:
    store = MemoryStore()
    store.insert(
        SessionRecord("k", T0, T0, T0 + 60, T0, "s", user_id="u", data={"keep": [0]}),
        max_per_user=0,
        tombstone_until=T0 + 60,
    )
    update = RecordUpdate(
        meta={"flags": {"f": [1]}, "fingerprint": {"net": "10.0.0.0/24"}},
        set_data={"x": [1], "y": {"z": [1]}},
        activity={"at": T0, "path": "/"},
    )
    assert store.update("k", update, activity_max=5)
    rotation = RecordUpdate(meta={"dbsc": {"b": [1]}}, set_data={"w": [1]})
    moved = store.rotate(
        "k",
        "k2",
        rotation,
        old_becomes=Tombstone("k", "rotated", T0, T0 + 60),
        max_per_user=0,
        tombstone_until=T0 + 60,
    )
    assert moved == {}
    for changed in (update.meta["flags"], update.set_data["y"], rotation.meta["dbsc"]):
        assert isinstance(changed, dict)
        changed.clear()
    for changed_list in (update.set_data["x"], rotation.set_data["w"]):
        assert isinstance(changed_list, list)
        changed_list.append(2)
    assert isinstance(update.activity, dict)
    update.activity["path"] = "/changed"
    stored = store.get("k2")
    assert isinstance(stored, SessionRecord)
    assert stored.flags == {"f": [1]} and stored.dbsc == {"b": [1]}
    assert stored.fingerprint == {"net": "10.0.0.0/24"}
    assert stored.data == {"keep": [0], "x": [1], "y": {"z": [1]}, "w": [1]}
    assert store.activity("k2") == [{"at": T0, "path": "/"}]
