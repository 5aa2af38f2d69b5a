"""The activity trail as the SQL stores keep it: one JSON array per record, bounded, carried by
rotations, and readable whatever earlier versions wrote."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from sessionwarden.records import JSON, RecordUpdate, SessionRecord, Tombstone
from sessionwarden.stores.sqlite import SQLiteStore

T0 = 1_700_000_000.0

#: Values an attacker can put into a trail (a path, a user agent): line breaks, separators,
#: brackets, quotes, non-ASCII and the separators of the stored layout itself.
AWKWARD = ["a\nb", "},\n{", ",\n", "[\n", "\n]", '"]', "\u2028ü日本", "\\n"]


def _record(key: str) -> SessionRecord:
    return SessionRecord(
        key=key,
        created_at=T0,
        last_seen=T0,
        expires_at=T0 + 3600,
        rotated_at=T0,
        csrf_secret="csrf",
        user_id="alice",
    )


def _stored_trail(path: Path, key: str) -> str:
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT activity FROM items WHERE key = ?", (key,)).fetchone()
    return str(row[0])


def test_trail_is_bounded_and_exact_through_updates_and_rotations(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    try:
        store.insert(_record("k0"), max_per_user=0, tombstone_until=T0)
        key, entries = "k0", list[dict[str, JSON]]()
        for i in range(12):
            awkward = AWKWARD[i % len(AWKWARD)]
            entry: dict[str, JSON] = {"i": i, "path": awkward, "ua": {"x": [1, "\n"]}}
            entries.append(entry)
            if i % 3 == 0:
                new = f"k{i + 1}"
                assert (
                    store.rotate(
                        key,
                        new,
                        RecordUpdate(activity=entry),
                        old_becomes=Tombstone(key, "rotated:login", T0, T0 + 60, "alice"),
                        max_per_user=0,
                        tombstone_until=T0 + 60,
                        activity_max=5,
                    )
                    == {}
                )
                key = new
            else:
                assert store.update(key, RecordUpdate(activity=entry), activity_max=5)
            assert store.activity(key) == entries[-5:]
            # What the file holds is a JSON array like any other.
            assert json.loads(_stored_trail(path, key)) == entries[-5:]
    finally:
        store.close()


def test_trail_written_on_one_line_by_an_earlier_version_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    store.insert(_record("k"), max_per_user=0, tombstone_until=T0)
    store.close()
    earlier = [{"i": 0, "path": "a\nb"}, {"i": 1, "path": "},{"}]
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE items SET activity = ? WHERE key = 'k'",
            (json.dumps(earlier, separators=(",", ":")),),
        )
    store = SQLiteStore(path)
    try:
        assert store.activity("k") == earlier
        assert store.update("k", RecordUpdate(activity={"i": 2}), activity_max=2)
        assert store.activity("k") == [earlier[1], {"i": 2}]
        assert store.update("k", RecordUpdate(activity={"i": 3}), activity_max=2)
        assert store.activity("k") == [{"i": 2}, {"i": 3}]
    finally:
        store.close()
