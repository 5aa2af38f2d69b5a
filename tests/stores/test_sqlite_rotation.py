"""A SQLite rotation writes the stored record with the request's changes and keeps in its read
cache exactly what it wrote."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from sessionwarden.records import JSON, RecordUpdate, SessionRecord, Tombstone
from sessionwarden.stores.sqlite import SQLiteStore

T0 = 1_700_000_000.0


def _alice(key: str, data: dict[str, JSON] | None = None) -> SessionRecord:
    """alice's session as a sign-in stores it, created at ``T0``."""
    return SessionRecord(
        key=key,
        created_at=T0,
        last_seen=T0,
        expires_at=T0 + 3600,
        rotated_at=T0,
        csrf_secret="csrf",
        user_id="alice",
        data=data or {},
    )


def test_rotation_keeps_unknown_meta_and_caches_what_it_wrote(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    record = _alice("old", {"cart": [1, 2], "theme": "dark"})
    store.insert(record, max_per_user=0, tombstone_until=T0)
    store.close()
    with sqlite3.connect(path) as db:  # a field a later version added
        meta = json.loads(db.execute("SELECT meta FROM items WHERE key = 'old'").fetchone()[0])
        meta["later"] = {"x": 1}
        db.execute("UPDATE items SET meta = ? WHERE key = 'old'", (json.dumps(meta),))
    store, other = SQLiteStore(path), SQLiteStore(path)
    try:
        assert isinstance(store.get("old"), SessionRecord)  # read (and cached) first
        fingerprint: dict[str, JSON] = {"ua": "Chrome"}
        added: list[JSON] = [1]
        update = RecordUpdate(
            meta={"user_id": "bob", "rotated_at": T0 + 5, "fingerprint": fingerprint},
            set_data={"theme": "light", "new": {"a": added}},
            del_data=("cart",),
        )
        evicted = store.rotate(
            "old",
            "new",
            update,
            old_becomes=Tombstone("old", "rotated:login", T0 + 5, T0 + 60, "alice"),
            max_per_user=0,
            tombstone_until=T0 + 60,
        )
        assert evicted == {}
        fingerprint["ua"] = "changed by the caller afterwards"
        added.append(2)
        cached, fresh = store.get("new"), other.get("new")
        assert isinstance(cached, SessionRecord) and isinstance(fresh, SessionRecord)
        assert cached == fresh
        assert fresh.user_id == "bob" and fresh.rotated_at == T0 + 5
        assert fresh.fingerprint == {"ua": "Chrome"}
        assert fresh.data == {"theme": "light", "new": {"a": [1]}}
        assert isinstance(store.get("old"), Tombstone)
        assert [r.key for r in other.user_sessions("bob")] == ["new"]
        assert other.user_sessions("alice") == []
    finally:
        store.close()
        other.close()
    with sqlite3.connect(path) as db:
        meta = json.loads(db.execute("SELECT meta FROM items WHERE key = 'new'").fetchone()[0])
    assert meta["later"] == {"x": 1}


def test_every_rewrite_of_the_meta_keeps_a_later_versions_fields(tmp_path: Path) -> None:
    """The cached update, the update's transaction (a touch with its trail entry) and the
    rotation write the meta from the record they hold, not from the stored text: a field a
    later version added to the stored meta is still there after each of them, with the cache
    on and off."""
    for read_cache in (4096, 0):
        path = tmp_path / f"later-{read_cache}.db"
        store = SQLiteStore(path, read_cache=read_cache)
        record = _alice("k")
        store.insert(record, max_per_user=0, tombstone_until=T0)
        with sqlite3.connect(path) as db:
            meta = json.loads(db.execute("SELECT meta FROM items WHERE key = 'k'").fetchone()[0])
            meta["later"] = [1, {"y": None}]
            db.execute("UPDATE items SET meta = ? WHERE key = 'k'", (json.dumps(meta),))

        def stored(key: str) -> dict[str, JSON]:
            with sqlite3.connect(path) as db:
                text = db.execute("SELECT meta FROM items WHERE key = ?", (key,)).fetchone()[0]
            found: dict[str, JSON] = json.loads(text)
            return found

        try:
            assert isinstance(store.get("k"), SessionRecord)
            assert store.update("k", RecordUpdate(meta={"last_seen": T0 + 1}))
            assert stored("k")["later"] == [1, {"y": None}]
            touch = RecordUpdate(
                meta={"last_seen": T0 + 2, "expires_at": T0 + 7200}, activity={"at": T0 + 2}
            )
            assert store.update("k", touch, activity_max=5)
            assert stored("k")["later"] == [1, {"y": None}]
            assert stored("k")["last_seen"] == T0 + 2
            store.rotate(
                "k",
                "k2",
                RecordUpdate(meta={"rotated_at": T0 + 3}),
                old_becomes=Tombstone("k", "rotated", T0 + 3, T0 + 60, "alice"),
                max_per_user=0,
                tombstone_until=T0 + 60,
            )
            after = stored("k2")
            assert after["later"] == [1, {"y": None}] and after["rotated_at"] == T0 + 3
            assert after["expires_at"] == T0 + 7200 and after["user_id"] == "alice"
            other = SQLiteStore(path)
            fresh = other.get("k2")
            other.close()
            assert isinstance(fresh, SessionRecord) and fresh.last_seen == T0 + 2
        finally:
            store.close()


def test_rotation_that_sets_no_data_key_keeps_the_stored_data(tmp_path: Path) -> None:
    """A rotation whose update sets or deletes no data key (a periodic rotation) writes the
    data text it found as it is, even one another writer encoded differently; the new record
    holds that data, in this store's cache, in another store, and for a later update."""
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    record = _alice("old", {"cart": [1, 2]})
    store.insert(record, max_per_user=0, tombstone_until=T0)
    text = '{"theme": "dark",  "cart": [1, 2]}'  # not this version's compact encoding
    with sqlite3.connect(path) as db:
        db.execute("UPDATE items SET data = ? WHERE key = 'old'", (text,))
    other = SQLiteStore(path)
    try:
        assert isinstance(store.get("old"), SessionRecord)
        store.rotate(
            "old",
            "new",
            RecordUpdate(meta={"rotated_at": T0 + 5}),
            old_becomes=Tombstone("old", "rotated", T0 + 5, T0 + 60, "alice"),
            max_per_user=0,
            tombstone_until=T0 + 60,
        )
        with sqlite3.connect(path) as db:
            stored = db.execute("SELECT data FROM items WHERE key = 'new'").fetchone()[0]
        assert stored == text
        cached, fresh = store.get("new"), other.get("new")
        assert isinstance(cached, SessionRecord) and isinstance(fresh, SessionRecord)
        assert cached.data == fresh.data == {"theme": "dark", "cart": [1, 2]}
        assert cached.rotated_at == fresh.rotated_at == T0 + 5
        assert store.update("new", RecordUpdate(set_data={"theme": "light"}))
        again = other.get("new")
        assert isinstance(again, SessionRecord)
        assert again.data == {"theme": "light", "cart": [1, 2]}
    finally:
        store.close()
        other.close()
