"""The SQLite store's read cache: never stale with respect to any committed write, from this
store, another store object on the same file, another thread, another process, or a raw
connection; and a cached read runs no SELECT.

The cache is kept current with ``PRAGMA data_version`` (other connections' commits) and the
store's write generation (its own); these tests hold it to that from every direction.
"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from sessionwarden.records import Alias, RecordUpdate, SessionRecord, Tombstone
from sessionwarden.stores import sqlite as sqlite_module
from sessionwarden.stores.sqlite import SQLiteStore

from .sqlite_support import Statements

T0 = 1_700_000_000.0
HOUR = 3600.0
SPAWN = multiprocessing.get_context("spawn")


def rec(key: str, user: str | None = "alice", **data: object) -> SessionRecord:
    return SessionRecord(
        key=key,
        created_at=T0,
        last_seen=T0,
        expires_at=T0 + HOUR,
        rotated_at=T0,
        csrf_secret="csrf",
        user_id=user,
        fingerprint={"ua": "Firefox", "uav": 128},
        data=dict(data),
    )


def check_statements(store: SQLiteStore) -> list[str]:
    """What a cached read of ``store`` runs on the calling thread's connection: the pragma."""
    return ["PRAGMA data_version"]


def count_checks(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """An entry each time a get of ``store`` checks whether its cache is still current."""
    checks: list[int] = []
    current = store._current_cache

    def counted(handle: object) -> object:
        cache = current(handle)  # type: ignore[arg-type]
        if cache is not None:
            checks.append(1)
        return cache

    monkeypatch.setattr(store, "_current_cache", counted)
    return checks


def warm(store: SQLiteStore, key: str) -> Statements:
    """Read ``key`` (from the file or the cache), then check the next read is cached."""
    statements = Statements(store)
    store.get(key)
    statements.clear()
    store.get(key)
    assert statements.selects() == [], "the second read of an unchanged file must be cached"
    assert statements.seen == check_statements(store)
    statements.clear()
    return statements


def test_cached_read_runs_no_select(pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    writer, reader = pair
    writer.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
    statements = warm(reader, "k")
    for _ in range(5):
        found = reader.get("k")
        assert isinstance(found, SessionRecord) and found.data == {"n": 1}
    assert statements.selects() == []
    assert statements.seen == ["PRAGMA data_version"] * 5


def test_update_through_another_store_is_seen(pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    writer, reader = pair
    writer.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
    statements = warm(reader, "k")
    assert writer.update("k", RecordUpdate(set_data={"n": 2}, meta={"last_seen": T0 + 5}))
    found = reader.get("k")
    assert isinstance(found, SessionRecord)
    assert found.data == {"n": 2} and found.last_seen == T0 + 5
    assert len(statements.selects()) == 1  # the write invalidated the cache: read again


def test_revoke_through_another_store_is_seen(pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    writer, reader = pair
    writer.insert(rec("k"), max_per_user=0, tombstone_until=T0)
    warm(reader, "k")
    stone = Tombstone("k", "logout", T0 + 1, T0 + 2, "alice")
    assert writer.revoke("k", stone)
    assert reader.get("k") == stone


def test_rotate_through_another_store_is_seen(pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    writer, reader = pair
    writer.insert(rec("old", n=1), max_per_user=0, tombstone_until=T0)
    warm(reader, "old")
    alias = Alias("old", "new", T0 + 1, T0 + 2, T0 + 3, "alice")
    assert (
        writer.rotate(
            "old",
            "new",
            RecordUpdate(set_data={"n": 2}),
            old_becomes=alias,
            max_per_user=0,
            tombstone_until=T0,
        )
        == {}
    )
    assert reader.get("old") == alias
    moved = reader.get("new")
    assert isinstance(moved, SessionRecord) and moved.data == {"n": 2}


def test_delete_through_another_store_is_seen(pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    writer, reader = pair
    writer.insert(rec("k"), max_per_user=0, tombstone_until=T0)
    warm(reader, "k")
    writer.delete("k")
    assert reader.get("k") is None


def test_revoke_user_and_eviction_through_another_store_are_seen(
    pair: tuple[SQLiteStore, SQLiteStore],
) -> None:
    writer, reader = pair
    writer.insert(rec("a"), max_per_user=0, tombstone_until=T0)
    writer.insert(rec("b"), max_per_user=0, tombstone_until=T0)
    warm(reader, "a")
    warm(reader, "b")
    assert writer.revoke_user("alice", reason="admin", at=T0, until=T0 + 1, keep="b") == {"a": "a"}
    assert isinstance(reader.get("a"), Tombstone)
    warm(reader, "b")
    later = rec("c")
    later.created_at = T0 + 1
    assert writer.insert(later, max_per_user=1, tombstone_until=T0 + 9) == {"b": "b"}
    assert isinstance(reader.get("b"), Tombstone)


def test_own_writes_are_seen(db_path: Path) -> None:
    """data_version ignores a connection's own commits: the store's write generation covers
    them (same thread, same connection)."""
    store = SQLiteStore(db_path)
    try:
        store.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
        warm(store, "k")
        assert store.update("k", RecordUpdate(set_data={"n": 2}))
        found = store.get("k")
        assert isinstance(found, SessionRecord) and found.data == {"n": 2}
        warm(store, "k")
        store.revoke("k", Tombstone("k", "logout", T0, T0 + 1, "alice"))
        assert isinstance(store.get("k"), Tombstone)
        store.delete("k")
        assert store.get("k") is None
        store.insert(rec("k", n=3), max_per_user=0, tombstone_until=T0)
        found = store.get("k")
        assert isinstance(found, SessionRecord) and found.data == {"n": 3}
    finally:
        store.close()


def test_purge_is_seen(pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    writer, reader = pair
    writer.insert(rec("k"), max_per_user=0, tombstone_until=T0)
    warm(reader, "k")
    assert writer.purge(T0 + 2 * HOUR) == 1
    assert reader.get("k") is None


def test_write_from_another_thread_of_the_same_store_is_seen(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    try:
        store.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
        warm(store, "k")
        worker = threading.Thread(target=lambda: store.update("k", RecordUpdate(set_data={"n": 2})))
        worker.start()
        worker.join()
        found = store.get("k")
        assert isinstance(found, SessionRecord) and found.data == {"n": 2}
    finally:
        store.close()


def test_write_from_a_raw_connection_is_seen(pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    """An operator's sqlite3 shell, another program: any commit to the file counts."""
    writer, reader = pair
    writer.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
    warm(reader, "k")
    raw = sqlite3.connect(writer._path, isolation_level=None)
    try:
        raw.execute("UPDATE items SET data = ? WHERE key = ?", ('{"n":9}', "k"))
    finally:
        raw.close()
    found = reader.get("k")
    assert isinstance(found, SessionRecord) and found.data == {"n": 9}


def _revoke_in_child(path: str, key: str) -> bool:
    store = SQLiteStore(path)
    try:
        return store.revoke(key, Tombstone(key, "logout", T0, T0 + 1, "alice"))
    finally:
        store.close()


def _update_in_child(path: str, key: str) -> bool:
    store = SQLiteStore(path)
    try:
        return store.update(key, RecordUpdate(set_data={"by": "child"}))
    finally:
        store.close()


def test_writes_by_another_process_are_seen(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    try:
        store.insert(rec("u"), max_per_user=0, tombstone_until=T0)
        store.insert(rec("r"), max_per_user=0, tombstone_until=T0)
        warm(store, "u")
        warm(store, "r")
        with ProcessPoolExecutor(1, mp_context=SPAWN) as pool:
            assert pool.submit(_update_in_child, str(db_path), "u").result(timeout=60)
            found = store.get("u")
            assert isinstance(found, SessionRecord) and found.data == {"by": "child"}
            assert pool.submit(_revoke_in_child, str(db_path), "r").result(timeout=60)
            assert isinstance(store.get("r"), Tombstone)
    finally:
        store.close()


def test_hits_share_the_kept_record_and_a_write_replaces_it(
    pair: tuple[SQLiteStore, SQLiteStore],
) -> None:
    """A hit costs no copy: callers never change a record (see SessionStore.get)."""
    writer, reader = pair
    writer.insert(rec("k", n=[1, 2], m={"x": 1}), max_per_user=0, tombstone_until=T0)
    warm(reader, "k")
    first = reader.get("k")
    assert isinstance(first, SessionRecord)
    assert reader.get("k") is first
    assert writer.update("k", RecordUpdate(set_data={"n": [1, 2, 3]}))
    again = reader.get("k")
    assert isinstance(again, SessionRecord) and again is not first
    assert again.data == {"n": [1, 2, 3], "m": {"x": 1}}
    assert first.data == {"n": [1, 2], "m": {"x": 1}}  # what an earlier reader holds stays


def test_no_read_transaction_stays_open(pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    """A read leaves no snapshot behind: a full checkpoint from elsewhere is not held up."""
    writer, reader = pair
    writer.insert(rec("k"), max_per_user=0, tombstone_until=T0)
    reader.get("k")
    reader.get("k")
    raw = sqlite3.connect(writer._path, isolation_level=None, timeout=0)
    try:
        busy, _, _ = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        raw.close()
    assert busy == 0


def test_cache_off_reads_the_file_every_time(db_path: Path) -> None:
    store = SQLiteStore(db_path, read_cache=0)
    try:
        store.insert(rec("k"), max_per_user=0, tombstone_until=T0)
        statements = Statements(store)
        for _ in range(3):
            assert isinstance(store.get("k"), SessionRecord)
        assert len(statements.selects()) == 3
        assert "PRAGMA data_version" not in statements.seen
    finally:
        store.close()
    with pytest.raises(ValueError):
        SQLiteStore(db_path, read_cache=-1)


def test_cache_is_bounded_and_skips_unknown_keys(db_path: Path) -> None:
    store = SQLiteStore(db_path, read_cache=2)
    try:
        for key in "abc":
            store.insert(rec(key), max_per_user=0, tombstone_until=T0)
        for key in "abc":
            store.get(key)
        for i in range(10):
            assert store.get(f"unknown-{i}") is None
        cache = store._handle().cache
        assert list(cache) == ["b", "c"]
    finally:
        store.close()


def test_interleaved_random_operations_match_an_uncached_reader(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random writes through two stores, reads through both cached stores, each compared with
    a store that never caches."""
    monkeypatch.setattr(sqlite_module, "_CACHE_REST", 0)  # the cache in use throughout
    a, b = SQLiteStore(db_path), SQLiteStore(db_path)
    truth = SQLiteStore(db_path, read_cache=0)
    rnd = random.Random(11)
    keys = [f"k{i}" for i in range(6)]
    try:
        for step in range(600):
            store = rnd.choice((a, b))
            key = rnd.choice(keys)
            op = rnd.randrange(6)
            if op == 0:
                store.insert(rec(key, n=step), max_per_user=0, tombstone_until=T0)
            elif op == 1:
                store.update(key, RecordUpdate(set_data={"n": step}))
            elif op == 2:
                store.revoke(key, Tombstone(key, "logout", T0, T0 + step, "alice"))
            elif op == 3:
                store.delete(key)
            elif op == 4:
                new = rnd.choice(keys)
                if new != key:
                    store.rotate(
                        key,
                        new,
                        RecordUpdate(set_data={"r": step}),
                        old_becomes=Alias(key, new, T0, T0 + 1, T0 + 2, "alice"),
                        max_per_user=0,
                        tombstone_until=T0,
                    )
            for reader in (a, b):
                for k in rnd.sample(keys, 3) + rnd.sample(keys, 3):
                    assert reader.get(k) == truth.get(k), (step, k)
        assert a._handle().hits > 500 and b._handle().hits > 500
    finally:
        a.close()
        b.close()
        truth.close()


def test_concurrent_writer_thread_never_seen_going_back(db_path: Path) -> None:
    """A reader polling while another store object counts up never sees the count go down,
    and sees the last value once the writer is done."""
    writer, reader = SQLiteStore(db_path), SQLiteStore(db_path)
    writer.insert(rec("k", n=0), max_per_user=0, tombstone_until=T0)
    done = threading.Event()
    last = 300

    def count_up() -> None:
        try:
            for n in range(1, last + 1):
                writer.update("k", RecordUpdate(set_data={"n": n}))
        finally:
            done.set()

    thread = threading.Thread(target=count_up)
    thread.start()
    try:
        seen = 0
        while not done.is_set():
            found = reader.get("k")
            assert isinstance(found, SessionRecord)
            n = found.data["n"]
            assert isinstance(n, int) and n >= seen
            seen = n
        thread.join()
        found = reader.get("k")
        assert isinstance(found, SessionRecord) and found.data["n"] == last
    finally:
        thread.join()
        writer.close()
        reader.close()


def test_cache_off_keeps_no_decoded_records(db_path: Path) -> None:
    store = SQLiteStore(db_path, read_cache=0)
    try:
        store.insert(rec("k", n=[1]), max_per_user=0, tombstone_until=T0)
        first = store.get("k")
        assert isinstance(first, SessionRecord)
        first.data["n"].append(2)  # type: ignore[union-attr]
        again = store.get("k")
        assert isinstance(again, SessionRecord) and again.data == {"n": [1]}
        assert len(store._parsed) == 0 and store._handle().cache == {}
    finally:
        store.close()


def test_memory_mapped_reads_are_an_option(db_path: Path) -> None:
    writer = SQLiteStore(db_path)
    store = SQLiteStore(db_path, mmap_size=1 << 26)
    try:
        assert store._db().execute("PRAGMA mmap_size").fetchone()[0] == 1 << 26
        assert writer._db().execute("PRAGMA mmap_size").fetchone()[0] == 0
        writer.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
        warm(store, "k")
        writer.update("k", RecordUpdate(set_data={"n": 2}))
        found = store.get("k")
        assert isinstance(found, SessionRecord) and found.data == {"n": 2}
    finally:
        writer.close()
        store.close()
    with pytest.raises(ValueError):
        SQLiteStore(db_path, mmap_size=-1)


def test_a_cache_that_does_not_pay_rests_then_starts_afresh(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "_CACHE_WINDOW", 8)
    monkeypatch.setattr(sqlite_module, "_CACHE_REST", 5)
    writer, store = SQLiteStore(db_path), SQLiteStore(db_path)
    try:
        for i in range(20):
            writer.insert(rec(f"k{i}", n=i), max_per_user=0, tombstone_until=T0)
        checks = count_checks(store, monkeypatch)
        for i in range(8):  # eight different keys: eight misses, no hit
            store.get(f"k{i}")
        assert len(checks) >= 8
        checks.clear()
        statements = Statements(store)
        writer.update("k0", RecordUpdate(set_data={"n": "changed"}))
        for i in range(5):  # resting: straight to the file
            found = store.get("k0")
            assert isinstance(found, SessionRecord) and found.data == {"n": "changed"}
        assert checks == [] and "PRAGMA data_version" not in statements.seen
        assert len(statements.selects()) == 5
        writer.update("k0", RecordUpdate(set_data={"n": "again"}))
        statements.clear()
        found = store.get("k0")  # the cache is back, empty, and reads the latest
        assert isinstance(found, SessionRecord) and found.data == {"n": "again"}
        assert checks and len(statements.selects()) == 1
        warm(store, "k0")
    finally:
        writer.close()
        store.close()


def test_a_cache_that_pays_keeps_going(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_module, "_CACHE_WINDOW", 8)
    store = SQLiteStore(db_path)
    other = SQLiteStore(db_path)  # another process's writes
    try:
        for i in range(4):
            store.insert(rec(f"k{i}"), max_per_user=0, tombstone_until=T0)
        judged = 0
        for r in range(50):
            if r % 10 == 0:  # a write elsewhere now and then: four misses each time
                other.update("k0", RecordUpdate(set_data={"r": r}))
            for i in range(4):
                store.get(f"k{i}")
            handle = store._handle()
            judged += handle.misses == 0 and handle.hits == 0
            assert handle.rest == 0
        assert judged >= 2  # the hit count was looked at, and found worth it
    finally:
        other.close()
        store.close()


# -- a write keeps what it wrote -----------------------------------------------------------------


def test_an_update_is_one_statement_and_the_next_read_runs_no_select(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    other = SQLiteStore(db_path)  # another process
    try:
        store.insert(rec("k1", cart=1), max_per_user=0, tombstone_until=T0)
        statements = warm(store, "k1")
        for n in range(2, 5):
            statements.clear()
            assert store.update("k1", RecordUpdate(set_data={"cart": n}))
            writes = [s for s in statements.seen if s.startswith("UPDATE")]
            assert len(writes) == 1 and statements.selects() == []
            assert "BEGIN IMMEDIATE" not in statements.seen  # the statement commits itself
            assert statements.seen == writes  # no pragma of its own: the read's data_version
            statements.clear()
            got = store.get("k1")
            assert isinstance(got, SessionRecord) and got.data["cart"] == n
            assert statements.selects() == []  # kept by the write
        # Another connection's write is seen by the next read all the same.
        assert other.update("k1", RecordUpdate(set_data={"cart": 99}))
        got = store.get("k1")
        assert isinstance(got, SessionRecord) and got.data["cart"] == 99
    finally:
        other.close()
        store.close()


def test_a_write_after_an_unseen_commit_keeps_only_itself(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    other = SQLiteStore(db_path)
    try:
        for key in ("k1", "k2"):
            store.insert(rec(key), max_per_user=0, tombstone_until=T0)
            store.get(key)
        now = T0 + 1
        # Another connection revokes k1; this connection has not read since.
        assert other.revoke("k1", Tombstone("k1", "admin", now, now + HOUR, "alice"))
        assert store.update("k2", RecordUpdate(set_data={"x": 1}))  # must not vouch for k1
        assert isinstance(store.get("k1"), Tombstone)
        # The same with this store's own revocation followed by another write.
        store.get("k2")
        assert store.revoke("k2", Tombstone("k2", "admin", now, now + HOUR, "alice"))
        store.insert(rec("k3"), max_per_user=0, tombstone_until=T0)
        assert store.update("k3", RecordUpdate(set_data={"x": 2}))
        assert isinstance(store.get("k2"), Tombstone)
    finally:
        other.close()
        store.close()


def test_a_rotation_keeps_the_new_record_and_forgets_the_old_key(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    try:
        store.insert(rec("old"), max_per_user=0, tombstone_until=T0)
        store.get("old")
        now = T0 + 1
        tomb = Tombstone("old", "rotated:login", now, now + HOUR, "alice")
        assert store.rotate(
            "old", "new", RecordUpdate(set_data={"x": 1}), old_becomes=tomb,
            max_per_user=0, tombstone_until=now + HOUR,
        ) == {}  # fmt: skip
        statements = Statements(store)
        got = store.get("new")
        assert isinstance(got, SessionRecord) and got.data["x"] == 1
        assert statements.selects() == []
        assert isinstance(store.get("old"), Tombstone)
    finally:
        store.close()
