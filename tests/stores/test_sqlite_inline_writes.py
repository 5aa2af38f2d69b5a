"""The asynchronous SQLite store ``open_async_store`` builds commits a write on the event loop
when the write lock is free and in a worker thread when another writer holds it; the WAL is
copied into the database file by the store's checkpoint thread, never by a request's commit.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sessionwarden.records import RecordUpdate, SessionRecord, Tombstone
from sessionwarden.stores import InlineAsyncStore, open_async_store
from sessionwarden.stores.base import WouldWait
from sessionwarden.stores.sqlite import SQLiteStore
from sessionwarden.stores.sqlite_file import BACKSTOP_PAGES

T0 = 1_700_000_000.0
HOUR = 3600.0


def rec(key: str, **data: object) -> SessionRecord:
    return SessionRecord(
        key=key,
        created_at=T0,
        last_seen=T0,
        expires_at=T0 + HOUR,
        rotated_at=T0,
        csrf_secret="csrf",
        user_id="alice",
        data=dict(data),
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the store hands writes to asyncio's threads


class ThreadCalls:
    """Every function the code under test hands to ``asyncio.to_thread``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[str] = []
        real = asyncio.to_thread

        async def counted(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            self.names.append(getattr(fn, "__name__", "?"))
            return await real(fn, *args, **kwargs)

        monkeypatch.setattr(asyncio, "to_thread", counted)


@pytest.mark.anyio
async def test_writes_commit_on_the_loop_while_the_lock_is_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_async_store(f"sqlite:///{tmp_path}/s.db")
    calls = ThreadCalls(monkeypatch)
    try:
        await store.insert(rec("k"), max_per_user=3, tombstone_until=T0)
        await store.get("k")
        for n in range(3):
            assert await store.update("k", RecordUpdate(set_data={"n": n}))
        await store.insert(rec("j"), max_per_user=3, tombstone_until=T0)
        assert await store.revoke("j", Tombstone("j", "admin", T0, T0 + HOUR, "alice"))
        got = await store.get("k")
        assert isinstance(got, SessionRecord) and got.data == {"n": 2}
        assert calls.names == []
        assert await store.purge(T0 + 2 * HOUR) == 2  # the purge pauses: always the thread
        assert calls.names == ["purge"]
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_write_that_would_wait_goes_to_a_thread_and_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.db"
    store = open_async_store(f"sqlite:///{path}")
    calls = ThreadCalls(monkeypatch)
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        await store.insert(rec("k"), max_per_user=0, tombstone_until=T0)
        await store.get("k")  # cached: the update first tries its one statement
        blocker.execute("BEGIN IMMEDIATE")
        threading.Timer(0.2, lambda: blocker.execute("COMMIT")).start()
        ticks = 0

        async def ticking() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(ticking())
        assert await store.update("k", RecordUpdate(set_data={"n": 1}))
        ticker.cancel()
        assert calls.names == ["update"]
        assert ticks >= 5  # the loop ran on while the write waited for the lock
        got = await store.get("k")
        assert isinstance(got, SessionRecord) and got.data == {"n": 1}
    finally:
        blocker.close()
        await store.close()


def test_without_waiting_a_taken_lock_raises_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path, timeout=5.0)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        store.insert(rec("k", n=0), max_per_user=0, tombstone_until=T0)
        store.get("k")
        blocker.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with store.without_waiting(), pytest.raises(WouldWait):
            store.update("k", RecordUpdate(set_data={"n": 1}))
        with store.without_waiting(), pytest.raises(WouldWait):
            store.insert(rec("j"), max_per_user=0, tombstone_until=T0)
        assert time.monotonic() - started < 1.0
        blocker.execute("COMMIT")
        got = store.get("k")
        assert isinstance(got, SessionRecord) and got.data == {"n": 0}
        assert store.get("j") is None
        with store.without_waiting():
            assert store.update("k", RecordUpdate(set_data={"n": 2}))
    finally:
        blocker.close()
        store.close()


def test_the_checkpoint_thread_copies_commits_into_the_database_file(tmp_path: Path) -> None:
    """Commits reach the database file itself (what is left when the WAL is gone) without any
    request's commit checkpointing: the store's connections checkpoint only as a backstop."""
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    try:
        assert store._db().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
        store.insert(rec("k"), max_per_user=0, tombstone_until=T0)
        store.get("k")
        for n in range(50):
            assert store.update("k", RecordUpdate(set_data={"n": n}))
        deadline = time.monotonic() + 30
        while True:
            copy = tmp_path / "copy.db"  # the database file alone, without its WAL
            shutil.copyfile(path, copy)
            alone = SQLiteStore(copy, read_cache=0)
            try:
                got = alone.get("k")
            finally:
                alone.close()
            if isinstance(got, SessionRecord) and got.data == {"n": 49}:
                break
            assert time.monotonic() < deadline, "the WAL was not checkpointed"
            time.sleep(0.2)
    finally:
        store.close()


@pytest.mark.anyio
async def test_a_store_without_waiting_is_used_inline_only_when_offloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``InlineAsyncStore(sync)`` (no offload) writes inline, lock or not, as before."""
    sync = SQLiteStore(tmp_path / "s.db")
    store = InlineAsyncStore(sync)
    calls = ThreadCalls(monkeypatch)
    try:
        await store.insert(rec("k"), max_per_user=0, tombstone_until=T0)
        assert await store.update("k", RecordUpdate(set_data={"n": 1}))
        assert await store.purge(T0 + 2 * HOUR) == 1
        assert calls.names == []
    finally:
        await store.close()
