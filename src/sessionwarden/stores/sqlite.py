"""Embedded store on one SQLite file: the default for a single host, shared by its processes.

Layout (schema version 1, kept in ``PRAGMA user_version``) -- one table, one row per key::

    items(key TEXT PRIMARY KEY,   -- the keyed hash of a session ID, never the ID itself
          kind INTEGER,           -- 0 record, 1 alias, 2 tombstone
          user_id TEXT,           -- record owner; alias/tombstone: the user it belonged to
          created_at REAL,        -- records only (the per-user cap orders by it)
          expires REAL,           -- record: expires_at; alias/tombstone: until
          meta TEXT,              -- JSON: record fields / alias or tombstone fields
          data TEXT,              -- JSON: the record's data (records only)
          activity TEXT)          -- JSON array: the bounded activity trail (records only)

The activity trail lives in the row it belongs to, so it goes wherever the row goes (rotation
moves it, revocation and purge drop it) and can never be orphaned.

A row is written with a rowid derived from its key (:func:`_row_id`: the first 64 bits of the
hex key, or of a hash of any other key), so that ``get`` finds it by ``rowid = ? AND key = ?``:
one descent of the table's B-tree instead of two (the index on ``key``, then the table), which
is most of a read at a million rows (a bare SELECT measured 13.7 -> 9.4 µs). Rows without such
a rowid (written by an earlier version, or whose derived rowid was taken, at odds of 2^-64 a
pair) get an ordinary one and are found by ``key`` alone, the second query a miss costs: no
migration, and processes of both versions can share a file. The derived rowid is only a hint;
``key`` stays the primary key every write goes by. The price is paid on inserts: rows land at
random places in the table instead of at its end (a bulk fill of a million rows took about
twice as long, and the file came out 15 % larger); a request's read is what happens on every
request, an insert only at sign-in and rotation.

The file runs in WAL mode with ``synchronous=NORMAL``: readers never wait for writers, and every
write is one short ``BEGIN IMMEDIATE`` transaction, serialised across threads and processes by
SQLite's own lock. A writer that finds the lock taken retries ``BEGIN IMMEDIATE`` itself every
0.5-2 ms until ``timeout`` (SQLite's busy handler sleeps in steps of up to 100 ms and so keeps
missing the short gaps between another writer's transactions); reads keep SQLite's busy timeout.
Each thread uses its own connection. :meth:`SQLiteStore.purge` deletes in small, paced
transactions and checkpoints the WAL it wrote itself, so a request never waits for more than one
small batch and never pays for copying the purge's pages into the database file.
Everything SQLite reports (locked past the timeout, read-only, disk full, I/O error, corrupt
file) is raised as :class:`StoreUnavailable` with a short message naming the condition.

Reads (:meth:`SQLiteStore.get`) go through a small per-connection read cache that never serves
a record older than the last commit that finished before the get began, whoever made it (another
thread's connection, another store object, another process, an operator's ``sqlite3`` shell).
A cached entry is served only while nothing has been committed to the file since the cache was
last known current, and the store's own write generation (bumped after every write this store
makes, through any of its connections) has not moved; if either moved, the *whole* cache is
dropped and the row is read again. What is compared is taken before the SELECT whose result is
kept, so a commit landing between the check and the SELECT can only make the next get drop an
entry that was already current. "Nothing committed since" is checked in one of two ways:

* **The wal-index header** (the usual way). In WAL mode every connection to the file, in any
  process, shares the ``<file>-shm`` file, which begins with two 48-byte copies of the wal-index
  header (https://www.sqlite.org/walformat.html): a counter every commit increments, the last
  valid frame, the salts (changed whenever the WAL is restarted or truncated), and a checksum.
  A committing writer rewrites both copies (the second, a memory barrier, then the first) before
  its commit returns. A checkpoint changes no content (one that restarts or truncates the WAL
  rewrites the header, with new salts, all the same). Each connection maps the first page of
  that file read-only and keeps the 96 bytes of both copies as they were when
  its cache was last known current, taken only when SQLite itself would accept them (copies
  equal, initialised, checksum right: ``walIndexTryHdr``). A hit requires the 96 bytes to read
  back unchanged, byte for byte: the very condition on which SQLite keeps a connection's own page
  cache between transactions (a different header drops it and moves ``data_version``), so a hit
  is as current as a fresh SELECT on that connection would be. A read that overlaps a commit
  sees either both copies as they were (that commit has not returned yet) or copies that differ
  from each other, which is not a hit. The check is a copy of 96 mapped bytes and a comparison:
  no SQL statement, no lock, no system call.
* **``PRAGMA data_version``** (the fallback), which changes whenever *another* connection has
  committed to the file (a connection's own commits do not move it; the write generation covers
  those): a statement, and a read transaction opened and closed (two file-lock system calls).
  Used by a connection whose file cannot be checked through the header: a store opened
  ``read_only`` (inspection tools) or with ``mmap_size``, a file not in WAL mode, a connection in
  ``locking_mode=EXCLUSIVE``, a platform without ``ctypes`` or ``mmap``, no ``-shm`` file, one
  that is not a regular file of at least 136 bytes, or one that ``/proc/self/maps`` does not show
  SQLite to have mapped in this process under that very name (so anywhere but on Linux); and,
  for one get, by any connection whose header reads back with the copies different (a commit is
  writing them), not initialised, or with a wrong checksum.

The ``-shm`` file is opened once per process and file, and its descriptor is never closed while
the file exists: closing *any* descriptor of a file drops every POSIX lock the process holds on
it, including SQLite's own (a lost write or read lock on the ``-shm`` file can corrupt the
database). SQLite deletes the ``-shm`` file only when the last connection of the last process
closes; the descriptor of a deleted one is closed the next time a ``-shm`` file is opened. A
connection maps the file only after a read of its own (from then on, in WAL mode, SQLite keeps
it mapped, and a shared lock on the database file that keeps anyone from deleting it, until the
connection closes) and only once ``/proc/self/maps`` shows SQLite's own mapping of it: the bytes
compared are the ones SQLite reads for that connection.

How much the cache buys depends on the load:

* read-mostly (the common signed-in GET that changes nothing): a get is the header check (about
  0.1 µs) plus a copy of the cached record, instead of the SELECT and the decoding; measured
  1.3 µs per cached get (4.4 with the pragma), 24 µs per full ASGI request (28 with the pragma;
  the memory store 23, Starlette's SessionMiddleware 24.5 in the same runs);
* any commit anywhere (a login, a touch, a revocation, the purge) invalidates every entry of
  every connection's cache, so under a write-heavy load most gets miss and pay the check on top
  of the read (after a commit the header is validated in full, checksum included: about 1.2 µs,
  no statement), until the connection stops using its cache for a while (below).

A connection whose cache misses at least twice as often as it hits (judged every 4,096
misses) reads without it for the next 65,536 gets, then tries again: a write-heavy load, or sessions
read at random among very many (no key comes back before it is pushed out), then cost about
what they cost without the cache. Unknown keys are not cached, and entries are dropped oldest
first past ``read_cache`` per connection. A hit hands out the kept record itself: nobody changes
a record once read (see :meth:`~sessionwarden.stores.base.SessionStore.get`).
``read_cache=0`` turns it off, together with the decoded records kept by content (see
``_record``): every get then reads and decodes its row, which is what ``bench/scale.py``
measures.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import struct
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Final, NoReturn

from ..records import (
    JSON,
    META_FIELDS,
    Alias,
    Lookup,
    RecordUpdate,
    SessionRecord,
    Tombstone,
    dumps,
    loads,
)
from .base import StoreStats, StoreUnavailable, oldest_over_cap

__all__ = ["READ_CACHE_SIZE", "SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION: Final = 1
#: Default size of each connection's read cache and of the store's decoded records by content
#: (see SQLiteStore.get and SQLiteStore._record).
READ_CACHE_SIZE: Final = 4096
# A connection whose read cache missed at least twice as often as it hit over its last
# _CACHE_WINDOW misses (every commit anywhere empties it; sessions read at random among very many
# never repeat) reads without it for the next _CACHE_REST gets, then tries again. A miss costs
# the data_version check and keeping the entry (about 3.5 µs); a hit saves the SELECT (about 6).
# The window is long enough for a cold cache to fill with a few thousand sessions first.
_CACHE_WINDOW = 4096
_CACHE_REST = 65536

_RECORD: Final = 0
_ALIAS: Final = 1
_TOMBSTONE: Final = 2

_META_NAMES: Final = frozenset(META_FIELDS)

# Taking the write lock: retry BEGIN IMMEDIATE after 0.5 ms, then 1 ms, then every 2 ms. A waiting
# writer thus gets the lock within about 2 ms of its release (the purge pauses longer than that
# between its batches), at the cost of a few cheap failed attempts while it waits.
_LOCK_RETRY_FIRST: Final = 0.0005
_LOCK_RETRY_MAX: Final = 0.002

# Purge: at most this many rows per transaction (a few ms of lock at a million rows, three
# indexes to maintain), and this pause between transactions, in which waiting writers get in.
_PURGE_MAX_BATCH: Final = 200
_PURGE_PAUSE: Final = 0.005

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS items (
        key TEXT PRIMARY KEY NOT NULL,
        kind INTEGER NOT NULL,
        user_id TEXT,
        created_at REAL,
        expires REAL NOT NULL,
        meta TEXT NOT NULL,
        data TEXT,
        activity TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS items_user ON items (user_id, created_at) WHERE kind = 0",
    "CREATE INDEX IF NOT EXISTS items_expires ON items (expires)",
)

# Writing a record keeps the activity trail already at the key unless one is given (the memory
# store's semantics: inserting over a live record keeps its trail; rotation brings its own).
_UPSERT_RECORD: Final = """
    INSERT INTO items (rowid, key, kind, user_id, created_at, expires, meta, data, activity)
    VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET
        kind = 0, user_id = excluded.user_id, created_at = excluded.created_at,
        expires = excluded.expires, meta = excluded.meta, data = excluded.data,
        activity = coalesce(excluded.activity, items.activity)
"""

_PUT_MARKER: Final = """
    INSERT INTO items (rowid, key, kind, user_id, created_at, expires, meta, data, activity)
    VALUES (?, ?, ?, ?, NULL, ?, ?, NULL, NULL)
    ON CONFLICT (key) DO UPDATE SET
        kind = excluded.kind, user_id = excluded.user_id, created_at = NULL,
        expires = excluded.expires, meta = excluded.meta, data = NULL, activity = NULL
"""

_LIVE_SELECT: Final = "SELECT kind, meta, data, activity FROM items WHERE key = ?"
_GET: Final = "SELECT kind, user_id, expires, meta, data FROM items WHERE key = ?"
_GET_BY_ROWID: Final = (
    "SELECT kind, user_id, expires, meta, data FROM items WHERE rowid = ? AND key = ?"
)


def _row_id(key: str) -> int:
    """The rowid a row for ``key`` is written with: the key's first 64 bits as a signed
    integer (keys are hex digests), or those of a hash of any other key."""
    try:
        return int(key[:16], 16) - (1 << 63) if len(key) >= 16 else _hashed_row_id(key)
    except ValueError:
        return _hashed_row_id(key)


def _hashed_row_id(key: str) -> int:
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _write_row(db: sqlite3.Connection, statement: str, key: str, values: tuple[Any, ...]) -> None:
    """``statement`` (an upsert whose first two parameters are the rowid and the key) with the
    key's derived rowid, or, when another key's row holds that rowid, with an ordinary one."""
    try:
        db.execute(statement, (_row_id(key), key, *values))
    except sqlite3.IntegrityError:
        # The derived rowid is taken by another key (or by an ordinary rowid SQLite handed
        # out): this row goes without it and is found by key alone. A conflict on ``key``
        # itself never lands here: the upsert updates that row, which keeps its rowid.
        db.execute(statement, (None, key, *values))


_DATA_VERSION: Final = "PRAGMA data_version"

# The wal-index header at the start of ``<file>-shm`` (https://www.sqlite.org/walformat.html):
# two copies of 48 bytes, then the 40-byte checkpoint information. Each copy is twelve native
# 32-bit words: iVersion, unused, iChange, {isInit, bigEndCksum, szPage}, mxFrame, nPage,
# aFrameCksum[2], aSalt[2], aCksum[2] (aCksum covers the first ten words).
_HEADER_SIZE: Final = 48
_HEADERS: Final = 2 * _HEADER_SIZE
_SHM_MIN_SIZE: Final = _HEADERS + 40
_HEADER_WORDS: Final = struct.Struct("=12I")
_WAL_INDEX_VERSION: Final = 3007000
_IS_INIT: Final = 12  # byte offset of isInit

# Primary result codes (``sqlite3.Error.sqlite_errorcode & 0xFF``) and what we call them.
_CONDITIONS: Final = {
    3: "permission denied",  # SQLITE_PERM
    5: "database locked (busy timeout expired)",  # SQLITE_BUSY
    6: "database locked (busy timeout expired)",  # SQLITE_LOCKED
    7: "out of memory",  # SQLITE_NOMEM
    8: "database is read-only",  # SQLITE_READONLY
    10: "disk I/O error",  # SQLITE_IOERR
    11: "database file is corrupt",  # SQLITE_CORRUPT
    13: "disk full",  # SQLITE_FULL
    14: "cannot open database file",  # SQLITE_CANTOPEN
    26: "file is not a database",  # SQLITE_NOTADB
}


def _condition(exc: sqlite3.Error) -> str:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in _CONDITIONS:
        return _CONDITIONS[code & 0xFF]
    if isinstance(exc, sqlite3.ProgrammingError):
        return "store is closed or misused"
    name = getattr(exc, "sqlite_errorname", None)
    return f"database error ({name})" if isinstance(name, str) else "database error"


def _unavailable(exc: sqlite3.Error) -> NoReturn:
    # ``from None``: the message names the condition; nothing of the statement or data travels.
    raise StoreUnavailable(f"SQLite session store: {_condition(exc)}") from None


# Bumped in every child process right after a fork: a connection opened before the fork is never
# used in the child (checked per call without a getpid() system call).
_forks = 0


def _after_fork_in_child() -> None:
    global _forks, _wal_indexes_lock
    _forks += 1
    # Another thread may have held it at the fork. The descriptors and mappings are inherited.
    _wal_indexes_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _WalIndex:
    """One ``-shm`` file this process has opened to read its wal-index header: the descriptor,
    and the header bytes mapped read-only (``view``, None when the file could not be mapped)."""

    __slots__ = ("address", "dev", "fd", "ino", "view")

    def __init__(self, fd: int, dev: int, ino: int) -> None:
        self.fd = fd
        self.dev = dev
        self.ino = ino
        self.view: Any = None
        self.address = 0  # where view is mapped


# Every -shm file this process has opened, kept open for the life of the process unless the
# file has been deleted: closing *any* descriptor of a file drops every POSIX lock the process
# holds on it, and SQLite's connections in this process hold theirs on the -shm file through
# their own descriptor. SQLite deletes a -shm file only when the last connection of the last
# process closes, so a deleted one is in nobody's use, and its descriptor can go.
_wal_indexes: list[_WalIndex] = []
_wal_indexes_lock = threading.Lock()


def _map_header(fd: int) -> Any:
    """The first :data:`_HEADERS` bytes of ``fd``, mapped shared and read-only, as a ctypes
    char array (``.raw`` copies the current bytes), or None where that is not possible.

    Mapped through the C library rather than :class:`mmap.mmap`, whose object closes a copy of
    the descriptor when it is collected (at the latest while the interpreter shuts down, with
    daemon threads possibly still inside SQLite): the mapping made here is never unmapped and
    closes nothing.
    """
    try:
        import ctypes
        import mmap
    except ImportError:  # pragma: no cover - interpreters built without them
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        mapper = libc.mmap
    except (OSError, AttributeError):  # pragma: no cover - no C library to call
        return None
    mapper.restype = ctypes.c_void_p
    mapper.argtypes = (
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    )
    address = mapper(None, _HEADERS, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if address is None or address == ctypes.c_void_p(-1).value:
        return None
    return (ctypes.c_char * _HEADERS).from_address(address)


def _mapped_elsewhere(shm_path: str, ours: int) -> bool:
    """Whether this process has ``shm_path`` mapped at an address other than ``ours`` (SQLite's
    own mapping), that file still being the one at that path; False when that cannot be told
    (``/proc/self/maps`` is Linux's)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                # A file deleted or replaced since it was mapped shows as "<path> (deleted)".
                if len(fields) < 6 or fields[5].lstrip(" ").rstrip("\n") != shm_path:
                    continue
                start, _, end = fields[0].partition("-")
                if not int(start, 16) <= ours < int(end, 16):
                    return True
    except (OSError, ValueError):
        return False
    return False


def _wal_index(shm_path: str) -> _WalIndex | None:
    """This process's mapping of ``shm_path`` (opened on first use), or None when there is no
    such file, it is not a regular file of at least 136 bytes, or it cannot be mapped."""
    with _wal_indexes_lock:
        try:
            found = os.stat(shm_path)
        except OSError:
            return None
        if not stat.S_ISREG(found.st_mode) or found.st_size < _SHM_MIN_SIZE:
            return None  # not opened (a FIFO would block), so nothing to keep open either
        index = next(
            (
                i
                for i in _wal_indexes
                if i.fd >= 0 and (i.dev, i.ino) == (found.st_dev, found.st_ino)
            ),
            None,
        )
        if index is None:
            _forget_deleted_wal_indexes()
            try:
                fd = os.open(shm_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                return None
            try:
                opened = os.fstat(fd)
            except OSError:  # pragma: no cover - fstat of a descriptor just opened
                opened = found
            # Kept whatever follows (see _wal_indexes): never closed here.
            index = _WalIndex(fd, opened.st_dev, opened.st_ino)
            _wal_indexes.append(index)
            found = opened
        if index.view is None:
            if not stat.S_ISREG(found.st_mode) or found.st_size < _SHM_MIN_SIZE:
                return None
            index.view = _map_header(index.fd)
            if index.view is not None:
                import ctypes

                index.address = ctypes.addressof(index.view)
        return index if index.view is not None else None


def _forget_deleted_wal_indexes() -> None:
    """Close the descriptors of -shm files deleted since (their mappings stay valid)."""
    for index in list(_wal_indexes):
        try:
            deleted = os.fstat(index.fd).st_nlink == 0
        except OSError:  # pragma: no cover - our own descriptor, never closed elsewhere
            deleted = False
        if deleted:
            os.close(index.fd)
            index.fd = -1
            _wal_indexes.remove(index)


def _wal_header(view: Any) -> bytes | None:
    """Both copies of the wal-index header as they are now, if SQLite would accept them as a
    consistent header (``walIndexTryHdr``: the copies equal, initialised, checksum right), else
    None (a commit is writing them right now, or the file holds no valid header)."""
    both: bytes = view.raw
    if both[:_HEADER_SIZE] != both[_HEADER_SIZE:] or both[_IS_INIT] != 1:
        return None
    words = _HEADER_WORDS.unpack_from(both)
    if words[0] != _WAL_INDEX_VERSION:
        return None
    s1 = s2 = 0
    for i in range(0, 10, 2):
        s1 = (s1 + words[i] + s2) & 0xFFFFFFFF
        s2 = (s2 + words[i + 1] + s1) & 0xFFFFFFFF
    if s1 != words[10] or s2 != words[11]:
        return None
    return both


class _Handle:
    """One thread's connection (weakly registered so :meth:`SQLiteStore.close` can reach it),
    with a cursor kept for the hot reads and this connection's read cache (see
    :meth:`SQLiteStore.get`)."""

    __slots__ = (
        "__weakref__",
        "cache",
        "cursor",
        "db",
        "fork",
        "generation",
        "header",
        "hits",
        "misses",
        "pid",
        "rest",
        "version",
        "view",
        "wal_index_tried",
    )

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.cursor = db.cursor()
        self.pid = os.getpid()
        self.fork = _forks
        # key -> what get() returned for it, valid while the store's write generation is still
        # `generation` and either the wal-index header still reads `header` or data_version is
        # still `version` (None / -1: not known).
        self.cache: OrderedDict[str, Lookup] = OrderedDict()
        self.version = -1
        self.header: bytes | None = None
        self.generation = -1
        # The -shm file's header, mapped (see _WalIndex); None: data_version only.
        self.view: Any = None
        self.wal_index_tried = False
        self.hits = 0
        self.misses = 0
        self.rest = 0  # gets left to do without the cache (see _CACHE_WINDOW)


class SQLiteStore:
    """The session store on a SQLite file; safe for many threads and processes on one host."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 1.0,
        read_only: bool = False,
        read_cache: int = READ_CACHE_SIZE,
        mmap_size: int = 0,
    ) -> None:
        """Open (creating when absent, unless ``read_only``) the store at ``path``.

        ``timeout`` bounds, in seconds, how long any operation waits for another writer's lock
        before :class:`StoreUnavailable`. ``read_only`` opens the file for reading only (every
        write then raises :class:`StoreUnavailable`), for inspection tools. ``read_cache`` is
        how many entries each thread's connection keeps for :meth:`get`, and how many decoded
        records the store keeps by content (0: neither; every get reads and decodes its row).

        ``mmap_size`` (bytes, default 0: off) lets each connection read the file through a
        memory map of that size (``PRAGMA mmap_size``) instead of a system call and a copy
        per page. With many sessions read at random this is the cheaper read (measured at
        1,000,000 sessions: about 23 -> 20 µs per uncached get), and the map shares the
        operating system's page cache instead of adding memory per connection. The price is
        the failure mode: an I/O error while reading a mapped page (a failing disk, a network
        file system gone) kills the process with SIGBUS, where a read through a system call
        raises :class:`StoreUnavailable` and the request is answered with a 503.
        """
        if timeout < 0:
            raise ValueError("timeout must be >= 0")
        if read_cache < 0:
            raise ValueError("read_cache must be >= 0")
        if mmap_size < 0:
            raise ValueError("mmap_size must be >= 0")
        self._cache_size = int(read_cache)
        self._mmap_size = int(mmap_size)
        # Bumped after every write transaction of this store (see get()).
        self._generation = 0
        self._path = os.fspath(path)
        self._timeout = float(timeout)
        self._busy_pragma = f"PRAGMA busy_timeout = {round(self._timeout * 1000)}"
        self._read_only = read_only
        self._local = threading.local()
        self._handles: weakref.WeakSet[_Handle] = weakref.WeakSet()
        self._registry_lock = threading.Lock()
        self._inherited: list[sqlite3.Connection] = []
        self._closed = False
        self._parse_cache: OrderedDict[tuple[str, str, str | None], SessionRecord] = OrderedDict()
        try:
            self._init_schema()
        except BaseException:
            self.close()
            raise

    # -- connections -----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._read_only:
            from urllib.parse import quote

            target = "file:" + quote(os.path.abspath(self._path)) + "?mode=ro"
            uri = True
        else:
            target, uri = self._path, False
        db = sqlite3.connect(
            target,
            timeout=self._timeout,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # close() may run on another thread
            uri=uri,
        )
        try:
            if not self._read_only:
                self._use_wal(db)
            db.execute("PRAGMA synchronous = NORMAL")
            if self._mmap_size:
                db.execute(f"PRAGMA mmap_size = {self._mmap_size}")
        except BaseException:
            db.close()
            raise
        return db

    def _use_wal(self, db: sqlite3.Connection) -> None:
        """Switch the file to WAL (a no-op once done: the mode is stored in the file).

        The switch needs a moment alone with the file, and SQLite does not always apply the busy
        timeout to it, so processes opening a new file at once retry here within ``timeout``.
        """
        deadline = time.monotonic() + self._timeout
        delay = 0.001
        while True:
            try:
                row = db.execute("PRAGMA journal_mode").fetchone()
                if row is not None and str(row[0]).lower() == "wal":
                    return
                db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
                if code not in (5, 6) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def _db(self) -> sqlite3.Connection:
        return self._handle().db

    def _handle(self) -> _Handle:
        if self._closed:
            raise StoreUnavailable("SQLite session store: store is closed")
        handle: _Handle | None = getattr(self._local, "handle", None)
        if handle is not None and handle.fork == _forks:
            return handle
        if handle is not None:
            # Inherited across fork: never use it, and never close it here either (closing
            # could checkpoint or unlink files the parent is still using).
            self._inherited.append(handle.db)
        try:
            handle = _Handle(self._connect())
        except sqlite3.Error as exc:
            _unavailable(exc)
        self._local.handle = handle
        with self._registry_lock:
            self._handles.add(handle)
        return handle

    def _begin_immediate(self, db: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``, retried finely until ``timeout`` while another writer holds it.

        The connection's busy timeout must be 0 here (see :meth:`_write`): each attempt then
        fails at once instead of sleeping in SQLite's coarse steps.
        """
        deadline = time.monotonic() + self._timeout
        delay = _LOCK_RETRY_FIRST
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
                left = deadline - time.monotonic()
                if code not in (5, 6) or left <= 0:  # SQLITE_BUSY, SQLITE_LOCKED
                    raise
                time.sleep(min(delay, left))
                delay = min(delay * 2, _LOCK_RETRY_MAX)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back otherwise."""
        db = self._db()
        try:
            # No busy handler while this connection writes: the lock is waited for by
            # _begin_immediate, and once it is held (WAL) nothing in the transaction waits.
            db.execute("PRAGMA busy_timeout = 0")
            try:
                self._begin_immediate(db)
                try:
                    yield db
                except BaseException:
                    if db.in_transaction:
                        db.rollback()
                    raise
                db.execute("COMMIT")
            finally:
                # Before anything else can run on this connection: its read cache must not
                # serve what was read before this write (data_version ignores own commits).
                self._generation += 1
                db.execute(self._busy_pragma)  # reads on this connection wait as usual
        except sqlite3.Error as exc:
            try:
                if db.in_transaction:
                    db.rollback()
            except sqlite3.Error:
                pass
            _unavailable(exc)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        db = self._db()
        try:
            return db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            _unavailable(exc)

    def _init_schema(self) -> None:
        version = self._read("PRAGMA user_version")[0][0]
        if version == SCHEMA_VERSION:
            return
        if version == 0 and not self._read_only:
            with self._write() as db:
                # Re-read under the write lock: another process may have created it meanwhile.
                if db.execute("PRAGMA user_version").fetchone()[0] == 0:
                    for statement in _SCHEMA:
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            version = self._read("PRAGMA user_version")[0][0]
            if version == SCHEMA_VERSION:
                return
        raise StoreUnavailable(
            f"SQLite session store: unsupported schema version {int(version)}"
            f" (expected {SCHEMA_VERSION})"
        )

    # -- row helpers -----------------------------------------------------------------------
    def _record(self, key: str, meta_text: str, data_text: str | None) -> SessionRecord:
        """The record stored as these texts, decoded once and remembered by content: a
        steady-state session is read with the same texts on every request until it is next
        written. Nothing here can be stale (equal texts decode equal); the record returned is
        shared, which is safe because nobody changes a record once read (see
        :meth:`~sessionwarden.stores.base.SessionStore.get`)."""
        content = (key, meta_text, data_text)
        cache = self._parse_cache
        record = cache.get(content)
        if record is None:
            data: dict[str, Any] = loads(data_text) if data_text else {}
            record = SessionRecord.from_parts(key, loads(meta_text), data)
            if not self._cache_size:
                return record
            if len(cache) >= self._cache_size:
                # The oldest entry goes, one per new one (O(1) in an OrderedDict; a plain
                # dict must step over the holes its earlier deletions left at its start): no
                # bulk release of thousands of records inside one request. Another thread
                # may have emptied it meanwhile: then nothing goes.
                with suppress(KeyError):
                    cache.popitem(last=False)
            cache[content] = record
        return record

    def _decode(self, key: str, row: Sequence[Any]) -> Lookup:
        """What ``row`` holds; a record is the shared decoded one."""
        kind, user_id, expires, meta_text, data_text = row
        if kind == _RECORD:
            return self._record(key, meta_text, data_text)
        meta = loads(meta_text)
        if kind == _ALIAS:
            return Alias(
                key=key,
                target=meta["target"],
                at=meta["at"],
                grace_until=meta["grace_until"],
                until=expires,
                user_id=user_id,
            )
        return Tombstone(
            key=key, reason=meta["reason"], at=meta["at"], until=expires, user_id=user_id
        )

    @staticmethod
    def _put_marker(db: sqlite3.Connection, key: str, marker: Alias | Tombstone) -> None:
        if isinstance(marker, Alias):
            kind = _ALIAS
            meta: dict[str, JSON] = {
                "target": marker.target,
                "at": marker.at,
                "grace_until": marker.grace_until,
            }
        else:
            kind = _TOMBSTONE
            meta = {"reason": marker.reason, "at": marker.at}
        _write_row(db, _PUT_MARKER, key, (kind, marker.user_id, marker.until, dumps(meta)))

    @staticmethod
    def _put_record(
        db: sqlite3.Connection,
        key: str,
        meta: dict[str, Any],
        data: dict[str, Any],
        activity: str | None,
    ) -> None:
        _write_row(
            db,
            _UPSERT_RECORD,
            key,
            (
                meta["user_id"],
                meta["created_at"],
                meta["expires_at"],
                dumps(meta),
                dumps(data),
                activity,
            ),
        )

    @staticmethod
    def _merge(meta: dict[str, Any], data: dict[str, Any], update: RecordUpdate) -> None:
        """:meth:`SessionRecord.apply` on the stored form (only the named fields change)."""
        for name, value in update.meta.items():
            if name not in _META_NAMES:
                raise ValueError(f"RecordUpdate.meta: unknown field {name!r}")
            meta[name] = value
        for name, value in update.set_data.items():
            data[name] = value
        for name in update.del_data:
            data.pop(name, None)

    @staticmethod
    def _appended(trail_text: str | None, entry: dict[str, JSON], activity_max: int) -> str:
        """The trail with ``entry`` appended, keeping the newest ``activity_max`` entries."""
        trail: list[Any] = loads(trail_text) if trail_text else []
        trail.append(dict(entry))
        return dumps(trail[-activity_max:])

    @staticmethod
    def _enforce_cap(
        db: sqlite3.Connection,
        key: str,
        meta: dict[str, Any],
        cap: int,
        until: float,
    ) -> list[str]:
        user_id = meta["user_id"]
        if user_id is None or cap <= 0:
            return []
        rows = db.execute(
            "SELECT created_at, key FROM items WHERE user_id = ? AND kind = 0", (user_id,)
        ).fetchall()
        evicted = oldest_over_cap([(float(c), str(k)) for c, k in rows], cap, keep=key)
        at = meta["last_seen"]
        for victim in evicted:
            SQLiteStore._put_marker(db, victim, Tombstone(victim, "evicted", at, until, user_id))
        return evicted

    # -- interface -------------------------------------------------------------------------
    def get(self, key: str) -> Lookup:
        """What is at ``key``, as of the latest commit of any connection or process.

        Served from this thread's read cache only while nothing was committed to the file
        since the cache was last known current: the wal-index header in the ``-shm`` file (any
        commit, by any connection or process, rewrites it before it returns) reads back byte for
        byte as it was then, or, where that header cannot be used, ``PRAGMA data_version`` has
        not moved; and this store's write generation, bumped after every write through *any* of
        its connections, has not moved either. Both are taken before the SELECT whose result is
        kept, and the whole cache is dropped as soon as either has moved: a commit that lands
        between the check and the SELECT can only make the next get drop an entry that was
        already current. See the module docstring for the details, the fallbacks, and what
        this buys and when it does not.
        """
        handle = self._handle()
        cache = handle.cache if self._cache_size else None
        if cache is not None and handle.rest:
            handle.rest -= 1
            cache = None
        try:
            if cache is not None:
                view = handle.view
                if (
                    view is None
                    or view.raw != handle.header
                    or self._generation != handle.generation
                ):
                    self._revalidate(handle, cache)
                hit = cache.get(key)
                if hit is not None:
                    handle.hits += 1
                    return hit
                handle.misses += 1
                if handle.misses >= _CACHE_WINDOW:
                    if 2 * handle.hits < handle.misses:
                        # Not paying for itself: rest, and start afresh afterwards.
                        handle.rest = _CACHE_REST
                        cache.clear()
                        handle.version = -1
                        handle.header = None
                    handle.hits = handle.misses = 0
            cursor = handle.cursor
            row = cursor.execute(_GET_BY_ROWID, (_row_id(key), key)).fetchone()
            if row is None:  # unknown, or a row without its derived rowid
                row = cursor.execute(_GET, (key,)).fetchone()
        except sqlite3.Error as exc:
            _unavailable(exc)
        if row is None:
            return None  # not cached: unknown IDs must not push out live sessions
        found = self._decode(key, row)
        if cache is not None and self._cache_size:
            if len(cache) >= self._cache_size:
                cache.popitem(last=False)  # the oldest entry
            cache[key] = found
        return found

    def _revalidate(self, handle: _Handle, cache: OrderedDict[str, Lookup]) -> None:
        """Keep ``cache`` only if nothing was committed since it was last known current.

        The wal-index header when it can be read consistently (see the module docstring), else
        ``PRAGMA data_version``; and the store's write generation either way. Whatever is taken
        here is taken before the SELECT whose result is kept.
        """
        if not handle.wal_index_tried:
            self._attach_wal_index(handle)
        header = _wal_header(handle.view) if handle.view is not None else None
        generation = self._generation
        if header is not None:
            if header != handle.header or generation != handle.generation:
                cache.clear()
                handle.header = header
                handle.version = -1
                handle.generation = generation
            return
        version = handle.cursor.execute(_DATA_VERSION).fetchone()[0]
        generation = self._generation
        if version != handle.version or generation != handle.generation:
            cache.clear()
            handle.header = None
            handle.version = version
            handle.generation = generation

    def _attach_wal_index(self, handle: _Handle) -> None:
        """Map the wal-index header of this connection's file, when it can stand in for
        ``PRAGMA data_version`` (see the module docstring for when it cannot)."""
        handle.wal_index_tried = True
        if self._read_only or self._mmap_size or os.name != "posix":
            return
        db = handle.db
        # A read first: from then on, in WAL mode, SQLite keeps this connection's -shm file
        # mapped and a shared lock on the database file until the connection closes, so the file
        # looked up by name below is the one this connection uses, and nobody can delete it
        # (SQLite deletes it only after taking the exclusive lock) while the mapping is used.
        db.execute(_DATA_VERSION).fetchone()
        mode = db.execute("PRAGMA journal_mode").fetchone()
        locking = db.execute("PRAGMA locking_mode").fetchone()
        files = db.execute("PRAGMA database_list").fetchall()
        if mode is None or str(mode[0]).lower() != "wal":
            return
        if locking is None or str(locking[0]).lower() != "normal":
            return
        # The path as SQLite resolved it when it opened the file: the -shm file is named after it.
        path = next((str(row[2]) for row in files if row[1] == "main"), "")
        if not path:
            return
        index = _wal_index(path + "-shm")
        # The file must be the one SQLite has mapped for this connection, not merely one named
        # after its path (a hard link to the database opened first names SQLite's -shm file
        # after the other path; a leftover file could then sit at this one).
        if index is not None and _mapped_elsewhere(path + "-shm", index.address):
            handle.view = index.view

    def insert(
        self, record: SessionRecord, *, max_per_user: int, tombstone_until: float
    ) -> list[str]:
        meta: dict[str, Any] = record.meta()
        with self._write() as db:
            self._put_record(db, record.key, meta, record.data, None)
            return self._enforce_cap(db, record.key, meta, max_per_user, tombstone_until)

    def rotate(
        self,
        old_key: str,
        new_key: str,
        update: RecordUpdate,
        *,
        old_becomes: Alias | Tombstone,
        max_per_user: int,
        tombstone_until: float,
        activity_max: int = 0,
    ) -> list[str] | None:
        with self._write() as db:
            row = db.execute(_LIVE_SELECT, (old_key,)).fetchone()
            if row is None or row[0] != _RECORD:
                return None
            meta: dict[str, Any] = loads(row[1])
            data: dict[str, Any] = loads(row[2]) if row[2] else {}
            self._merge(meta, data, update)
            trail_text: str | None = row[3]
            if update.activity is not None and activity_max > 0:
                if trail_text is None:
                    # No trail to carry over: the one already at new_key (if any) is kept.
                    found = db.execute(
                        "SELECT activity FROM items WHERE key = ?", (new_key,)
                    ).fetchone()
                    trail_text = found[0] if found else None
                trail_text = self._appended(trail_text, update.activity, activity_max)
            self._put_marker(db, old_key, old_becomes)
            self._put_record(db, new_key, meta, data, trail_text)
            return self._enforce_cap(db, new_key, meta, max_per_user, tombstone_until)

    def update(self, key: str, update: RecordUpdate, *, activity_max: int = 0) -> bool:
        add_activity = update.activity is not None and activity_max > 0
        if not (update.meta or update.set_data or update.del_data or add_activity):
            rows = self._read("SELECT kind FROM items WHERE key = ?", (key,))
            return bool(rows) and rows[0][0] == _RECORD
        with self._write() as db:
            row = db.execute(_LIVE_SELECT, (key,)).fetchone()
            if row is None or row[0] != _RECORD:
                return False  # revoked, rotated out, or gone: never written back to life
            meta: dict[str, Any] = loads(row[1])
            data: dict[str, Any] = loads(row[2]) if row[2] else {}
            self._merge(meta, data, update)
            trail_text = row[3]
            if update.activity is not None and add_activity:
                trail_text = self._appended(trail_text, update.activity, activity_max)
            db.execute(
                "UPDATE items SET user_id = ?, created_at = ?, expires = ?, meta = ?, data = ?,"
                " activity = ? WHERE key = ?",
                (
                    meta["user_id"],
                    meta["created_at"],
                    meta["expires_at"],
                    dumps(meta),
                    dumps(data),
                    trail_text,
                    key,
                ),
            )
            return True

    def revoke(self, key: str, tombstone: Tombstone) -> bool:
        with self._write() as db:
            row = db.execute("SELECT kind FROM items WHERE key = ?", (key,)).fetchone()
            if row is None or row[0] not in (_RECORD, _ALIAS):
                return False
            self._put_marker(db, key, tombstone)
            return True

    def delete(self, key: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM items WHERE key = ?", (key,))

    def user_sessions(self, user_id: str) -> list[SessionRecord]:
        rows = self._read(
            "SELECT key, kind, user_id, expires, meta, data FROM items"
            " WHERE user_id = ? AND kind = 0",
            (user_id,),
        )
        found = [self._decode(row[0], row[1:]) for row in rows]
        records = [r.copy() for r in found if isinstance(r, SessionRecord)]
        return sorted(records, key=lambda r: (r.created_at, r.key))

    def revoke_user(
        self, user_id: str, *, reason: str, at: float, until: float, keep: str | None = None
    ) -> list[str]:
        with self._write() as db:
            rows = db.execute(
                "SELECT key FROM items WHERE user_id = ? AND kind = 0 AND key IS NOT ?",
                (user_id, keep),
            ).fetchall()
            keys = sorted(str(k) for (k,) in rows)
            for k in keys:
                self._put_marker(db, k, Tombstone(k, reason, at, until, user_id))
            return keys

    def activity(self, key: str) -> list[dict[str, JSON]]:
        rows = self._read("SELECT activity FROM items WHERE key = ?", (key,))
        if not rows or not rows[0][0]:
            return []
        trail: list[dict[str, JSON]] = loads(rows[0][0])
        return trail

    def purge(self, now: float, batch: int = 1000) -> int:
        """Delete what expired by ``now`` in transactions of at most ``batch`` rows (and never
        more than 200), pausing 5 ms between them: a background job that yields to requests.

        A concurrent writer waits for one small batch at most. The purge also pays for the WAL
        it writes: it checkpoints after each batch itself (see :meth:`_checkpoint`), so the WAL
        stays far below the auto-checkpoint threshold and no request's commit ends up copying the
        purge's pages into the database file (and syncing it) inside the request.
        """
        if batch < 1:
            raise ValueError("batch must be >= 1")
        step = min(batch, _PURGE_MAX_BATCH)
        db = self._db()
        try:
            # This connection checkpoints explicitly below, not inside its commits.
            auto = int(db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
            db.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error as exc:
            _unavailable(exc)
        removed = 0
        try:
            while True:
                with self._write() as tx:
                    count = tx.execute(
                        "DELETE FROM items WHERE rowid IN"
                        " (SELECT rowid FROM items WHERE expires <= ? LIMIT ?)",
                        (now, step),
                    ).rowcount
                removed += count
                if count > 0:
                    self._checkpoint(db)
                if count < step:
                    return removed
                time.sleep(_PURGE_PAUSE)
        finally:
            with suppress(sqlite3.Error):
                db.execute(f"PRAGMA wal_autocheckpoint = {auto}")

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        """Copy the WAL into the database file without holding anyone up, then rewind it.

        ``PASSIVE`` does the bulk of the work (the batch just written, and its syncs) without any
        lock that writers need. ``RESTART`` then takes the write lock for a moment, copies the
        few frames writers committed meanwhile (usually none) and rewinds the WAL. Without the
        rewind, measured with requests writing every few ms, the WAL was seldom rewound even
        after complete checkpoints; it passed the 1,000-page auto-checkpoint threshold, and from
        then on request commits ran checkpoints themselves, syncs included (10-110 ms). Both run
        without a busy handler: when a writer holds the lock, or a reader an old snapshot, they
        do what they can without waiting, and the next batch's checkpoint finishes the job.
        """
        try:
            db.execute("PRAGMA busy_timeout = 0")
            try:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                db.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            finally:
                db.execute(self._busy_pragma)
        except sqlite3.Error as exc:
            _unavailable(exc)

    def stats(self, now: float) -> StoreStats:
        row = self._read(
            "SELECT coalesce(sum(kind = 0), 0),"
            " count(DISTINCT CASE WHEN kind = 0 THEN user_id END),"
            " coalesce(sum(kind = 2), 0), coalesce(sum(kind = 1), 0)"
            " FROM items WHERE expires > ?",
            (now,),
        )[0]
        return StoreStats(
            live_sessions=int(row[0]),
            users=int(row[1]),
            tombstones=int(row[2]),
            aliases=int(row[3]),
        )

    def close(self) -> None:
        """Close every thread's connection; later calls raise :class:`StoreUnavailable`."""
        with self._registry_lock:
            self._closed = True
            handles = list(self._handles)
            self._handles.clear()
        for handle in handles:
            if handle.pid == os.getpid():
                with suppress(sqlite3.Error):
                    handle.db.close()
