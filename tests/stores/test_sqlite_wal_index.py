"""The SQLite read cache's wal-index header check (module docstring of
``sessionwarden.stores.sqlite``): used wherever it can be, never stale with respect to a commit
that finished before the read began (another store object, a raw connection, another process, a
WAL checkpoint, restart or truncation), and replaced by ``PRAGMA data_version`` wherever the
header cannot be used."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import struct
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from sessionwarden.records import JSON, RecordUpdate, SessionRecord
from sessionwarden.stores import sqlite as sqlite_module
from sessionwarden.stores.sqlite import SQLiteStore

from .sqlite_support import Statements

LINUX = sys.platform.startswith("linux")
pytestmark = pytest.mark.skipif(
    not LINUX, reason="the header check needs /proc/self/maps: the pragma everywhere else"
)

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


def cached_with_header(store: SQLiteStore, key: str = "k") -> None:
    """Read ``key`` until it is served from the cache through the header check."""
    store.get(key)
    statements = Statements(store)
    hits = store._handle().hits
    store.get(key)
    assert store._handle().view is not None, "the header check must be in use here"
    assert store._handle().hits == hits + 1 and statements.seen == []


def raw(path: Path | str) -> sqlite3.Connection:
    return sqlite3.connect(str(path), isolation_level=None, timeout=5)


def raw_set(db: sqlite3.Connection, n: object, key: str = "k") -> None:
    db.execute("UPDATE items SET data = json_object('n', ?) WHERE key = ?", (n, key))


# -- in use, and never stale ----------------------------------------------------------------


def test_a_hit_runs_no_statement_and_keeps_a_valid_header(
    pair: tuple[SQLiteStore, SQLiteStore],
) -> None:
    writer, reader = pair
    writer.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
    cached_with_header(reader)
    handle = reader._handle()
    assert handle.header is not None and len(handle.header) == 96
    assert sqlite_module._wal_header(handle.view) == handle.header
    statements = Statements(reader)
    for _ in range(100):
        assert n_of(reader) == 1
    assert statements.seen == []


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
                cached_with_header(reader)
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
    """A checkpoint changes no content; a WAL restarted or truncated gets new salts, so the
    same number of frames written again never brings back an old header."""
    writer, reader = pair
    writer.insert(rec("k", n=0), max_per_user=0, tombstone_until=T0)
    shell = raw(db_path)
    seen: list[bytes] = []
    try:
        for n in range(1, 41):
            cached_with_header(reader)
            shell.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
            assert n_of(reader) == n - 1  # content unchanged
            cached_with_header(reader)
            if n % 2:
                writer.update("k", RecordUpdate(set_data={"n": n}))
            else:
                raw_set(shell, n)
            header = sqlite_module._wal_header(reader._handle().view)
            assert header is not None and header not in seen
            seen.append(header)
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
        cached_with_header(store)
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
        assert store._handle().view is not None and store._handle().hits > 100
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
    """Reads racing commits in another process (a header caught half written included)."""
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
        assert store._handle().view is not None
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
    """A connection in locking_mode=EXCLUSIVE keeps its wal-index in private memory; it needs
    the exclusive lock on the file, which an open store's connection (holding its shared lock
    for as long as it is open, in WAL mode) never lets it have."""
    store = SQLiteStore(db_path)
    try:
        store.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
        cached_with_header(store)
        with SPAWN.Pool(1) as pool:
            wrote = pool.apply(_exclusive_write, (str(db_path),))
        assert n_of(store) == (99 if wrote else 1)
        assert not wrote
        wrote = _exclusive_write(str(db_path))  # the same from this process
        assert n_of(store) == (99 if wrote else 1)
    finally:
        store.close()


# -- the fallbacks --------------------------------------------------------------------------


def _sees_a_raw_write_through_the_pragma(store: SQLiteStore, path: Path) -> None:
    assert n_of(store) == 1
    statements = Statements(store)
    assert n_of(store) == 1
    assert statements.seen == ["PRAGMA data_version"]
    assert store._handle().view is None
    shell = raw(path)
    try:
        raw_set(shell, 2)
    finally:
        shell.close()
    assert n_of(store) == 2


def test_read_only_and_mmap_stores_use_the_pragma(db_path: Path) -> None:
    writer = SQLiteStore(db_path)
    try:
        writer.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
        for store in (
            SQLiteStore(db_path, read_only=True),
            SQLiteStore(db_path, mmap_size=1 << 24),
        ):
            try:
                _sees_a_raw_write_through_the_pragma(store, db_path)
                shell = raw(db_path)
                raw_set(shell, 1)
                shell.close()
            finally:
                store.close()
    finally:
        writer.close()


def test_a_file_not_in_wal_mode_uses_the_pragma(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even next to a leftover -shm file holding a valid header."""
    store = SQLiteStore(db_path)
    store.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
    cached_with_header(store)
    leftover = Path(str(db_path) + "-shm").read_bytes()
    store.close()
    shell = raw(db_path)
    shell.execute("PRAGMA journal_mode = DELETE")
    shell.close()
    Path(str(db_path) + "-shm").write_bytes(leftover)
    monkeypatch.setattr(SQLiteStore, "_use_wal", lambda self, db: None)
    store = SQLiteStore(db_path)  # writable, on a file left in rollback-journal mode
    try:
        assert store._db().execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        _sees_a_raw_write_through_the_pragma(store, db_path)
        store.update("k", RecordUpdate(set_data={"n": 3}))
        assert n_of(store) == 3
    finally:
        store.close()


def test_a_connection_in_exclusive_locking_mode_uses_the_pragma(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    try:
        store.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
        store._db().execute("PRAGMA locking_mode = EXCLUSIVE")
        assert n_of(store) == 1
        assert store._handle().view is None
        statements = Statements(store)
        assert n_of(store) == 1
        assert statements.seen == ["PRAGMA data_version"]
        store.update("k", RecordUpdate(set_data={"n": 2}))
        assert n_of(store) == 2
    finally:
        store.close()


def test_no_mapping_means_the_pragma(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A platform without ctypes or mmap (or a C library that refuses the mapping)."""
    monkeypatch.setattr(sqlite_module, "_map_header", lambda fd: None)
    store = SQLiteStore(db_path)
    try:
        store.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
        _sees_a_raw_write_through_the_pragma(store, db_path)
    finally:
        store.close()


def test_unconfirmed_mapping_means_the_pragma(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where /proc/self/maps cannot show SQLite's own mapping of the file (not Linux)."""
    monkeypatch.setattr(sqlite_module, "_mapped_elsewhere", lambda path, ours: False)
    store = SQLiteStore(db_path)
    try:
        store.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
        _sees_a_raw_write_through_the_pragma(store, db_path)
    finally:
        store.close()


def test_only_sqlites_own_mapping_confirms_a_file(tmp_path: Path, db_path: Path) -> None:
    plain = tmp_path / "plain.db-shm"
    plain.write_bytes(bytes(4096))
    index = sqlite_module._wal_index(str(plain))
    assert index is not None and index.address
    assert not sqlite_module._mapped_elsewhere(str(plain), index.address)  # ours alone
    store = SQLiteStore(db_path)
    try:
        assert store.get("k") is None
        shm = str(db_path.resolve()) + "-shm"
        mine = sqlite_module._wal_index(shm)
        assert mine is not None and sqlite_module._mapped_elsewhere(shm, mine.address)
    finally:
        store.close()
    assert not sqlite_module._mapped_elsewhere(shm, mine.address)  # SQLite let go of it


def test_a_leftover_file_named_after_another_link_is_not_used(tmp_path: Path) -> None:
    """SQLite names the -shm file after the path the first connection of the process opened;
    a leftover file with a valid header at another link's name must not stand in for it."""
    first_path, second_path = tmp_path / "first.db", tmp_path / "second.db"
    store = SQLiteStore(first_path)
    store.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
    cached_with_header(store)
    leftover = Path(str(first_path) + "-shm").read_bytes()
    store.close()
    os.link(first_path, second_path)
    shell = raw(second_path)  # this process's SQLite now maps second.db-shm for the file
    try:
        assert shell.execute("SELECT count(*) FROM items").fetchone() == (1,)
        Path(str(first_path) + "-shm").write_bytes(leftover)
        store = SQLiteStore(first_path)
        try:
            assert n_of(store) == 1
            assert store._handle().wal_index_tried and store._handle().view is None
        finally:
            store.close()
    finally:
        shell.close()


def test_missing_short_or_odd_shm_files_are_not_mapped(tmp_path: Path) -> None:
    assert sqlite_module._wal_index(str(tmp_path / "absent.db-shm")) is None
    short = tmp_path / "short.db-shm"
    short.write_bytes(b"\0" * 135)
    assert sqlite_module._wal_index(str(short)) is None
    directory = tmp_path / "dir.db-shm"
    directory.mkdir()
    assert sqlite_module._wal_index(str(directory)) is None
    fifo = tmp_path / "fifo.db-shm"
    if hasattr(os, "mkfifo"):
        os.mkfifo(fifo)
        # Looked at, never opened (opening a FIFO for reading would wait for a writer).
        assert sqlite_module._wal_index(str(fifo)) is None
    short.write_bytes(b"\0" * 4096)  # the same file, long enough now: mapped
    index = sqlite_module._wal_index(str(short))
    assert index is not None and sqlite_module._wal_header(index.view) is None  # no header


class FakeView:
    """Stands in for the mapped header: ``both`` is what the next reads return."""

    def __init__(self, both: bytes) -> None:
        self.raw = both


def _with_checksum(first: bytes) -> bytes:
    words = list(struct.unpack("=12I", first))
    s1 = s2 = 0
    for i in range(0, 10, 2):
        s1 = (s1 + words[i] + s2) & 0xFFFFFFFF
        s2 = (s2 + words[i + 1] + s1) & 0xFFFFFFFF
    words[10], words[11] = s1, s2
    return struct.pack("=12I", *words)


def test_headers_sqlite_would_not_accept_are_refused(
    pair: tuple[SQLiteStore, SQLiteStore],
) -> None:
    writer, reader = pair
    writer.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
    cached_with_header(reader)
    good = reader._handle().header
    assert good is not None
    one = good[:48]
    assert _with_checksum(one) == one  # the checksum is computed as SQLite does
    changed = bytearray(one)
    changed[8] ^= 1  # iChange, checksum not updated
    not_init = bytearray(one)
    not_init[12] = 0
    wrong_version = bytearray(one)
    wrong_version[0] ^= 1
    for both in (
        one + bytes(changed),  # the copies differ: a commit writing them
        bytes(changed) + one,
        bytes(changed) * 2,  # a wrong checksum
        _with_checksum(bytes(not_init)) * 2,
        _with_checksum(bytes(wrong_version)) * 2,
        bytes(96),
    ):
        assert sqlite_module._wal_header(FakeView(both)) is None
    assert sqlite_module._wal_header(FakeView(good)) == good


def test_a_header_caught_being_written_falls_back_for_that_read(
    pair: tuple[SQLiteStore, SQLiteStore], db_path: Path
) -> None:
    writer, reader = pair
    writer.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
    cached_with_header(reader)
    handle = reader._handle()
    real_view = handle.view
    good = handle.header
    assert good is not None
    handle.view = FakeView(good[:48] + bytes(48))
    statements = Statements(reader)
    assert n_of(reader) == 1  # the pragma decides (no version known yet: read again)
    assert statements.seen[0] == "PRAGMA data_version"
    statements.seen.clear()
    assert n_of(reader) == 1
    assert statements.seen == ["PRAGMA data_version"]  # a hit, through the pragma
    statements.seen.clear()
    writer.update("k", RecordUpdate(set_data={"n": 2}))
    assert n_of(reader) == 2  # still torn: the pragma sees the commit
    assert "PRAGMA data_version" in statements.seen
    handle.view = real_view  # the write is over
    assert n_of(reader) == 2
    cached_with_header(reader)
    assert n_of(reader) == 2


# -- the -shm descriptor --------------------------------------------------------------------


def test_deleted_shm_files_are_let_go_and_a_new_one_is_mapped(tmp_path: Path) -> None:
    path = tmp_path / "cycle.db"
    inodes: set[tuple[int, int]] = set()
    for n in range(12):
        store = SQLiteStore(path)
        other = SQLiteStore(path)
        try:
            if n == 0:
                store.insert(rec("k", n=0), max_per_user=0, tombstone_until=T0)
            cached_with_header(store)
            other.update("k", RecordUpdate(set_data={"n": n + 1}))
            assert n_of(store) == n + 1
            shm = os.stat(str(path) + "-shm")
            inodes.add((shm.st_dev, shm.st_ino))
        finally:
            other.close()
            store.close()
        # The last connection of the last process closed: SQLite deleted the -shm file.
        assert not os.path.exists(str(path) + "-shm")
    assert len(inodes) > 1

    def kept(exclude: set[tuple[int, int]]) -> list[object]:
        return [
            i
            for i in sqlite_module._wal_indexes
            if (i.dev, i.ino) in inodes - exclude and i.fd >= 0
        ]

    # The deleted ones were let go; the latest goes when the next -shm file is opened.
    assert len(kept(set())) <= 1
    another = SQLiteStore(tmp_path / "another.db")
    try:
        assert another.get("x") is None
        shm = os.stat(str(tmp_path / "another.db") + "-shm")
        assert kept({(shm.st_dev, shm.st_ino)}) == []
    finally:
        another.close()


_DMS_PROBE = """
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
fmt = "hhxxxxqqixxxx"  # struct flock on Linux (64-bit off_t)
probe = struct.pack(fmt, fcntl.F_WRLCK, os.SEEK_SET, 128, 1, 0)
l_type, _, _, _, pid = struct.unpack(fmt, fcntl.fcntl(fd, fcntl.F_GETLK, probe))
print(l_type == fcntl.F_RDLCK, pid)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or struct.calcsize("P") != 8, reason="Linux 64-bit"
)
def test_this_process_keeps_its_sqlite_locks_on_the_shm_file(db_path: Path) -> None:
    """Closing any descriptor of the -shm file would drop SQLite's locks on it: the store must
    never do that while the file is in use. SQLite holds a shared lock on the DMS byte (128)
    for as long as a connection of this process has the file mapped."""
    store = SQLiteStore(db_path)
    try:
        store.insert(rec("k", n=1), max_per_user=0, tombstone_until=T0)
        cached_with_header(store)
        for _ in range(3):  # more store objects on the file come and go, another file too
            other = SQLiteStore(db_path)
            cached_with_header(other)
            other.close()
            elsewhere = SQLiteStore(db_path.with_name("elsewhere.db"))
            assert elsewhere.get("x") is None
            elsewhere.close()
        probe = subprocess.run(
            [sys.executable, "-c", _DMS_PROBE, str(db_path) + "-shm"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert probe.stdout.split() == ["True", str(os.getpid())]
        assert n_of(store) == 1
    finally:
        store.close()
