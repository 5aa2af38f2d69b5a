"""An update of a record the connection's read cache holds is one conditional statement: it
writes only while the row still holds what the cache holds. Whatever another writer did in
between (another key, a revocation, a rotation, a lock still held), nothing is lost and nothing
dead comes back.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from sessionwarden.records import Alias, RecordUpdate, SessionRecord, Tombstone
from sessionwarden.stores.sqlite import SQLiteStore

from .sqlite_support import Statements

T0 = 1_700_000_000.0
HOUR = 3600.0


def rec(key: str, user: str | None = "alice", **data: object) -> SessionRecord:
    return SessionRecord(
        key=key,
        created_at=T0,
        last_seen=T0,
        expires_at=T0 + HOUR,
        rotated_at=T0,
        csrf_secret="csrf",
        user_id=user,
        data=dict(data),
    )


def cached(store: SQLiteStore, key: str) -> SessionRecord:
    got = store.get(key)
    assert isinstance(got, SessionRecord)
    return got


def fresh(path: Path, key: str) -> SessionRecord:
    """``key`` as a store that has never cached anything reads it."""
    reader = SQLiteStore(path, read_cache=0)
    try:
        return cached(reader, key)
    finally:
        reader.close()


def test_another_writer_between_the_read_and_the_write_keeps_its_change(
    pair: tuple[SQLiteStore, SQLiteStore], db_path: Path
) -> None:
    mine, other = pair
    mine.insert(rec("k", cart=1, theme="light"), max_per_user=0, tombstone_until=T0)
    cached(mine, "k")
    assert other.update("k", RecordUpdate(set_data={"theme": "dark"}, del_data=("cart",)))
    assert mine.update("k", RecordUpdate(set_data={"flash": "saved"}))
    assert fresh(db_path, "k").data == {"theme": "dark", "flash": "saved"}
    assert cached(mine, "k").data == {"theme": "dark", "flash": "saved"}


def test_both_writers_change_the_same_stale_cache_in_turn(
    pair: tuple[SQLiteStore, SQLiteStore], db_path: Path
) -> None:
    """Each holds the record as it was before the other wrote: neither write is lost."""
    a, b = pair
    a.insert(rec("k"), max_per_user=0, tombstone_until=T0)
    cached(a, "k")
    cached(b, "k")
    for n in range(5):
        assert a.update("k", RecordUpdate(set_data={f"a{n}": n}))
        assert b.update("k", RecordUpdate(set_data={f"b{n}": n}))
    want = {f"{who}{n}": n for n in range(5) for who in "ab"}
    assert fresh(db_path, "k").data == want
    assert cached(a, "k").data == want and cached(b, "k").data == want


def test_a_revocation_between_the_read_and_the_write_stays_revoked(
    pair: tuple[SQLiteStore, SQLiteStore], db_path: Path
) -> None:
    mine, other = pair
    mine.insert(rec("k", cart=1), max_per_user=0, tombstone_until=T0)
    cached(mine, "k")
    assert other.revoke("k", Tombstone("k", "admin", T0 + 1, T0 + HOUR, "alice"))
    assert not mine.update("k", RecordUpdate(set_data={"cart": 2}))
    assert not mine.update("k", RecordUpdate(meta={"last_seen": T0 + 2}))
    assert isinstance(mine.get("k"), Tombstone)
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("SELECT kind, data FROM items WHERE key = 'k'").fetchone() == (2, None)
    finally:
        raw.close()
    assert other.user_sessions("alice") == []


def test_a_rotation_between_the_read_and_the_write_is_followed_not_undone(
    pair: tuple[SQLiteStore, SQLiteStore],
) -> None:
    mine, other = pair
    mine.insert(rec("old", cart=1), max_per_user=0, tombstone_until=T0)
    cached(mine, "old")
    alias = Alias("old", "new", T0 + 1, T0 + 61, T0 + HOUR, "alice")
    assert other.rotate(
        "old", "new", RecordUpdate(), old_becomes=alias, max_per_user=0,
        tombstone_until=T0 + HOUR,
    ) == {}  # fmt: skip
    assert not mine.update("old", RecordUpdate(set_data={"cart": 2}))
    assert mine.get("old") == alias
    assert [r.key for r in mine.user_sessions("alice")] == ["new"]


def test_the_write_from_the_cache_moves_the_indexed_columns(
    pair: tuple[SQLiteStore, SQLiteStore],
) -> None:
    """Expiry (what purge goes by) and owner (the per-user index) written from the cache."""
    mine, other = pair
    mine.insert(rec("k"), max_per_user=0, tombstone_until=T0)
    cached(mine, "k")
    later = T0 + 10 * HOUR
    assert mine.update("k", RecordUpdate(meta={"expires_at": later, "user_id": "bob"}))
    assert other.purge(T0 + 2 * HOUR) == 0  # past the old expiry, before the new one
    assert [r.key for r in other.user_sessions("bob")] == ["k"]
    assert other.user_sessions("alice") == []
    assert other.stats(T0).users == 1
    assert other.purge(later) == 1


def test_a_write_lock_held_elsewhere_is_waited_for(db_path: Path) -> None:
    store = SQLiteStore(db_path, timeout=5.0)
    try:
        store.insert(rec("k"), max_per_user=0, tombstone_until=T0)
        cached(store, "k")
        blocker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")
        threading.Timer(0.2, lambda: blocker.execute("COMMIT")).start()
        started = time.monotonic()
        assert store.update("k", RecordUpdate(set_data={"cart": 1}))
        assert time.monotonic() - started >= 0.15
        blocker.close()
        assert fresh(db_path, "k").data == {"cart": 1}
    finally:
        store.close()


def test_no_cached_record_means_the_transaction(db_path: Path) -> None:
    """Without the record in the cache (read_cache=0, or never read) the update reads the row
    under the write lock; with an activity entry to append it does too."""
    store = SQLiteStore(db_path, read_cache=0)
    try:
        store.insert(rec("k"), max_per_user=0, tombstone_until=T0)
        statements = Statements(store)
        assert store.update("k", RecordUpdate(set_data={"x": 1}))
        assert "BEGIN IMMEDIATE" in statements.seen
    finally:
        store.close()
    store = SQLiteStore(db_path)
    try:
        cached(store, "k")
        statements = Statements(store)
        entry = {"at": T0, "ip": "192.0.2.1", "ua": "Firefox 128", "path": "/", "method": "GET"}
        assert store.update("k", RecordUpdate(set_data={"x": 2}, activity=entry), activity_max=5)
        assert "BEGIN IMMEDIATE" in statements.seen
        assert store.activity("k") == [entry]
        assert cached(store, "k").data == {"x": 2}
    finally:
        store.close()
