"""``sessionwarden migrate``: brings what an earlier version wrote to the store's current
layout, keeps every session readable, and is idempotent (a second run changes nothing)."""

from __future__ import annotations

import json
import secrets
import sqlite3
from pathlib import Path

import pytest

from sessionwarden.cli import main
from sessionwarden.records import SessionRecord
from sessionwarden.stores.base import migrate_store
from sessionwarden.stores.memory import MemoryStore
from sessionwarden.stores.sqlite import SQLiteStore
from sessionwarden.stores.sqlite_rows import row_id

T0 = 1_700_000_000.0
HOUR = 3600.0


def rec(key: str) -> SessionRecord:
    return SessionRecord(
        key=key,
        created_at=T0,
        last_seen=T0,
        expires_at=T0 + HOUR,
        rotated_at=T0,
        csrf_secret="csrf",
        user_id="alice",
        data={"n": 1},
    )


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    return status, capsys.readouterr().out


def test_migrate_command_on_sqlite(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    keys = [secrets.token_hex(32) for _ in range(3)]
    store = SQLiteStore(path, read_cache=0)
    try:
        for key in keys:
            store.insert(rec(key), max_per_user=0, tombstone_until=T0 + HOUR)
    finally:
        store.close()
    with sqlite3.connect(path) as raw:  # two rows as an earlier version wrote them
        for n, key in enumerate(keys[:2]):
            raw.execute("UPDATE items SET rowid = ? WHERE key = ?", (n + 1, key))
    url = f"sqlite:///{path}"
    assert run(capsys, "migrate", "--store", url) == (
        0,
        "migrated 2 items to the current layout\n",
    )
    status, out = run(capsys, "migrate", "--store", url, "--json", "--batch", "1")
    assert status == 0 and json.loads(out) == {"migrated": 0}
    with sqlite3.connect(path) as raw:
        rows = dict(raw.execute("SELECT key, rowid FROM items").fetchall())
    assert rows == {key: row_id(key) for key in keys}
    store = SQLiteStore(path, read_cache=0)
    try:
        assert [store.get(key) for key in keys] == [rec(key) for key in keys]
    finally:
        store.close()


def test_a_store_without_earlier_layouts_has_nothing_to_migrate() -> None:
    store = MemoryStore()
    store.insert(rec("k"), max_per_user=0, tombstone_until=T0)
    assert migrate_store(store) == 0
    assert store.get("k") == rec("k")


def test_migrate_needs_a_store(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["migrate", "--store", f"sqlite:///{tmp_path / 'absent.db'}"]) == 3
    assert main(["migrate", "--store", "memory://"]) == 2
    assert not (tmp_path / "absent.db").exists()
