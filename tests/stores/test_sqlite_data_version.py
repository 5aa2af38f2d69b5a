"""The SQLite read cache against commits from everywhere (another store object, a raw
connection, another process, WAL checkpoints, restarts and truncation) and in every mode a file
or a connection can be in (read-only, memory-mapped, rollback journal, exclusive locking): the
cache is kept current by ``PRAGMA data_version`` and the store's write generation, and a read
that began after a commit finished always sees it."""

from __future__ import annotations

import multiprocessing
import sqlite3
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from sessionwarden.records import JSON, RecordUpdate, SessionRecord
from sessionwarden.stores import StoreUnavailable, sqlite_file
from sessionwarden.stores.sqlite import SQLiteStore

from .sqlite_support import Statements

T0 = 1_700_000_000.0
HOUR = 3600.0
SPAWN = multiprocessing.get_context("spawn")


def rec(key: str, **data: JSON) -> SessionRecord:
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


def n_of(store: SQLiteStore, key: str = "k") -> object:
    found = store.get(key)
    assert isinstance(found, SessionRecord)
    return found.data.get("n")


def cached(store: SQLiteStore, key: str = "k") -> None:
    """Read ``key`` until it is served from the cache: the pragma and no SELECT."""
    store.get(key)
    statements = Statements(store)
    hits = store._handle().hits
    store.get(key)
    assert store._handle().hits == hits + 1
    assert statements.seen == ["PRAGMA data_version"]


def raw(path: Path | str) -> sqlite3.Connection:
    return sqlite3.connect(str(path), isolation_level=None, timeout=5)


def raw_set(db: sqlite3.Connection, n: object, key: str = "k") -> None:
    db.execute("UPDATE items SET data = json_object('n', ?) WHERE key = ?", (n, key))


def test_commits_from_everywhere_are_seen_by_the_next_read(
    pair: tuple[SQLiteStore, SQLiteStore], db_path: Path
) -> None:
    writer, reader = pair
    third = SQLiteStore(db_path, read_cache=0)
    shell = raw(db_path)
    try:
        writer.insert(rec("k", n=0), max_per_user=0, tombstone_until=T0)
        n = 0
        for _ in range(20):
            for write in (
                lambda v: writer.update("k", RecordUpdate(set_data={"n": v})),
                lambda v: third.update("k", RecordUpdate(set_data={"n": v})),
                lambda v: raw_set(shell, v),
                lambda v: reader.update("k", RecordUpdate(set_data={"n": v})),
            ):
                cached(reader)
                n += 1
                write(n)
                assert n_of(reader) == n
    finally:
        shell.close()
        third.close()


@pytest.mark.parametrize("mode", ["PASSIVE", "FULL", "RESTART", "TRUNCATE"])
def test_checkpoints_and_wal_restarts_between_reads(
    pair: tuple[SQLiteStore, SQLiteStore], db_path: Path, mode: str
) -> None:
    """A checkpoint changes no content; a WAL restarted or truncated and written again (the
    same number of frames each time) is still seen as a new commit."""
    writer, reader = pair
    writer.insert(rec("k", n=0), max_per_user=0, tombstone_until=T0)
    shell = raw(db_path)
    try:
        for n in range(1, 41):
            cached(reader)
            shell.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
            assert n_of(reader) == n - 1  # content unchanged
            cached(reader)
            if n % 2:
                writer.update("k", RecordUpdate(set_data={"n": n}))
            else:
                raw_set(shell, n)
            assert n_of(reader) == n
    finally:
        shell.close()


def _lockstep_writer(path: str, rounds: int, conn: Connection) -> None:
    """Commit n (through a store, a raw connection, with checkpoints in between), tell the
    parent, wait for it to have read."""
    store = SQLiteStore(path, read_cache=0)
    shell = raw(path)
    try:
        for n in range(1, rounds + 1):
            if n % 3 == 0:
                raw_set(shell, n)
            else:
                store.update("k", RecordUpdate(set_data={"n": n}))
            if n % 7 == 0:
                shell.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            conn.send(n)
            conn.recv()
        conn.send(0)
    finally:
        shell.close()
        store.close()


def test_a_commit_in_another_process_that_finished_is_always_seen(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    try:
        store.insert(rec("k", n=0), max_per_user=0, tombstone_until=T0)
        cached(store)
        parent, child = SPAWN.Pipe()
        proc = SPAWN.Process(target=_lockstep_writer, args=(str(db_path), 150, child))
        proc.start()
        try:
            while True:
                assert parent.poll(60)
                n = parent.recv()
                if n == 0:
                    break
                assert n_of(store) == n  # the commit finished before this read began
                assert n_of(store) == n  # and again, from the cache
                parent.send(None)
        finally:
            proc.join(60)
        assert proc.exitcode == 0
        assert store._handle().hits > 100
    finally:
        store.close()


def _count_up(path: str, last: int) -> None:
    store = SQLiteStore(path, read_cache=0)
    try:
        for n in range(1, last + 1):
            store.update("k", RecordUpdate(set_data={"n": n}))
    finally:
        store.close()


def test_a_writer_process_is_never_seen_going_back(db_path: Path) -> None:
    """Reads racing commits in another process."""
    store = SQLiteStore(db_path)
    last = 1500
    try:
        store.insert(rec("k", n=0), max_per_user=0, tombstone_until=T0)
        proc = SPAWN.Process(target=_count_up, args=(str(db_path), last))
        proc.start()
        seen = 0
        while proc.is_alive():
            n = n_of(store)
            assert isinstance(n, int) and n >= seen
            seen = n
        proc.join(60)
        assert proc.exitcode == 0
        assert n_of(store) == last
    finally:
        store.close()


def _exclusive_write(path: str) -> bool:
    db = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        db.execute("UPDATE items SET data = json_object('n', 99) WHERE key = 'k'")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


def test_an_exclusive_locking_writer_is_refused_or_seen(db_path: Path) -> None:
    """A connection in locking_mode=EXCLUSIVE needs the exclusive lock on the file, which an
    open store's connection (holding its shared lock for as long as it is open, in WAL mode)
    never lets it have; whatever it manages to commit is seen."""
    store = SQLiteStore(db_path)
    try:
        store.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
        cached(store)
        with SPAWN.Pool(1) as pool:
            wrote = pool.apply(_exclusive_write, (str(db_path),))
        assert n_of(store) == (99 if wrote else 1)
        assert not wrote
        wrote = _exclusive_write(str(db_path))  # the same from this process
        assert n_of(store) == (99 if wrote else 1)
    finally:
        store.close()


# -- every mode of file and connection ------------------------------------------------------


def _sees_a_raw_write(store: SQLiteStore, path: Path) -> None:
    assert n_of(store) == 1
    statements = Statements(store)
    assert n_of(store) == 1
    assert statements.seen == ["PRAGMA data_version"]
    shell = raw(path)
    try:
        raw_set(shell, 2)
    finally:
        shell.close()
    assert n_of(store) == 2


def test_read_only_and_mmap_stores_are_kept_current(db_path: Path) -> None:
    writer = SQLiteStore(db_path)
    try:
        writer.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
        for store in (
            SQLiteStore(db_path, read_only=True),
            SQLiteStore(db_path, mmap_size=1 << 24),
        ):
            try:
                _sees_a_raw_write(store, db_path)
                shell = raw(db_path)
                raw_set(shell, 1)
                shell.close()
            finally:
                store.close()
    finally:
        writer.close()


def test_a_file_not_in_wal_mode_is_kept_current(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(db_path)
    store.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
    cached(store)
    store.close()
    shell = raw(db_path)
    shell.execute("PRAGMA journal_mode = DELETE")
    shell.close()
    monkeypatch.setattr(sqlite_file, "use_wal", lambda db, timeout: None)
    store = SQLiteStore(db_path)  # writable, on a file left in rollback-journal mode
    try:
        assert store._db().execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        _sees_a_raw_write(store, db_path)
        store.update("k", RecordUpdate(set_data={"n": 3}))
        assert n_of(store) == 3
    finally:
        store.close()


def test_a_connection_in_exclusive_locking_mode_is_kept_current(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    try:
        store.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
        store._db().execute("PRAGMA locking_mode = EXCLUSIVE")
        assert n_of(store) == 1
        statements = Statements(store)
        assert n_of(store) == 1
        assert statements.seen == ["PRAGMA data_version"]
        store.update("k", RecordUpdate(set_data={"n": 2}))
        assert n_of(store) == 2
    finally:
        store.close()


def test_a_read_of_a_busy_file_waits_for_it_then_answers(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connections have no busy handler; a read that finds the file locked (here: a
    rollback-journal file another connection holds exclusively) retries until ``timeout``."""
    import threading
    import time

    store = SQLiteStore(db_path)
    store.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
    store.close()
    shell = raw(db_path)
    shell.execute("PRAGMA journal_mode = DELETE")
    shell.close()
    monkeypatch.setattr(sqlite_file, "use_wal", lambda db, timeout: None)
    store = SQLiteStore(db_path, read_cache=0, timeout=5.0)
    holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        threading.Timer(0.2, lambda: holder.execute("COMMIT")).start()
        started = time.monotonic()
        assert n_of(store) == 1
        assert time.monotonic() - started >= 0.15
        short = SQLiteStore(db_path, read_cache=0, timeout=0.1)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreUnavailable, match="locked"):
                short.get("k")
        finally:
            short.close()
        holder.execute("COMMIT")
    finally:
        holder.close()
        store.close()
