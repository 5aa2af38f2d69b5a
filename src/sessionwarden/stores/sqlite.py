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

A row is written with a rowid derived from its key (``sqlite_rows.row_id``: the first 64 bits of the
hex key, or of a hash of any other key), so that ``get`` finds it by ``rowid = ? AND key = ?``:
one descent of the table's B-tree instead of two (the index on ``key``, then the table), which
is most of a read at a million rows (a bare SELECT measured 13.7 -> 9.4 µs). A row whose
derived rowid was taken (at odds of 2^-64 a pair) gets an ordinary one and is found by ``key``
alone, the second query a miss costs; so are rows an earlier version wrote, until
``sessionwarden migrate`` (:meth:`SQLiteStore.migrate`) gives them their derived rowid.
The derived rowid is only a hint; ``key`` stays the primary key every write goes by. The
price is paid on inserts: rows land at random places in the table instead of at its end (a bulk
fill of a million rows took about twice as long, and the file came out 15 % larger); a
request's read is what happens on every request, an insert only at sign-in and rotation.

The file runs in WAL mode with ``synchronous=NORMAL``: readers never wait for writers, and every
write is one short transaction (``BEGIN IMMEDIATE``, or one statement: below), serialised across
threads and processes by SQLite's own lock. A writer that finds the lock taken retries
``BEGIN IMMEDIATE`` itself every 0.5-2 ms until ``timeout`` (SQLite's busy handler sleeps in
steps of up to 100 ms and so keeps missing the short gaps between another writer's
transactions). The connections have no busy handler at all: a read that finds the file busy (in
WAL mode only while another connection recovers the WAL after a crash, or closes the last
connection to the file) retries itself every millisecond until ``timeout``, so a write needs no
``PRAGMA busy_timeout`` statements around it (each such statement is compiled anew every time:
≈ 25,000 instructions a write). Each thread uses its own connection.

An update of a record this connection's read cache holds (the common write: a request that
read its session and changed a key) is not a transaction around a read: it is one UPDATE,
committed on its own, that sets only what changes and only where the row still holds the
meta and data texts the cache holds (``sqlite_rows.rewrite``). Whatever happened to the row
since (another process's write of any key, a revocation, a rotation), the statement then
changes nothing, and the update reads the row under the write lock and merges there, as it
does without a cache: no write of another writer is lost and no dead session comes back.
(Measured: an update 72 -> 40 µs on a quiet machine; rewriting the indexed columns that did not
change was half of the difference.) The statement runs without a busy handler: when another
writer holds the lock it fails at once, and the transaction path waits as above.

No commit of a request copies the WAL into the database file: a thread of the store does
(``sqlite_file.Checkpointer``), and the connections keep SQLite's automatic checkpoint only as
a backstop. :meth:`SQLiteStore.without_waiting` makes a write that would wait for the lock fail
at once instead, for an event loop that then hands it to a thread. :meth:`SQLiteStore.purge`
deletes in small, paced transactions and checkpoints the WAL it wrote itself, so a request never
waits for more than one small batch.
Everything SQLite reports (locked past the timeout, read-only, disk full, I/O error, corrupt
file) is raised as :class:`StoreUnavailable` with a short message naming the condition.

Reads (:meth:`SQLiteStore.get`) go through a small per-connection read cache that never serves
a record older than the last commit that finished before the get began, whoever made it (another
thread's connection, another store object, another process, an operator's ``sqlite3`` shell).
Only documented SQLite behaviour is relied on: ``PRAGMA data_version``
(https://www.sqlite.org/pragma.html#pragma_data_version) returns, on one connection, a value that
changes whenever *another* connection, in this process or any other, has committed to the file;
a connection's own commits do not move it, so the store also keeps a write generation, bumped
after every write this store makes through any of its connections. A cached entry is served only
while neither has moved since the cache was last known current; when either has, the *whole*
cache is dropped and the row is read again. Both are taken before the SELECT whose result is
kept, so a commit landing between the check and the SELECT can only make the next get drop an
entry that was already current.

How much the cache buys depends on the load:

* read-mostly (the common signed-in GET that changes nothing): a get is the pragma (a statement
  and a read transaction opened and closed) plus a dictionary look-up, instead of the SELECT by
  key and the decoding: measured 2.0 µs per cached get against 11.5 µs uncached
  (``bench/store_reads.py``);
* any commit anywhere (a login, a touch, a revocation, the purge) invalidates every entry of
  every connection's cache, so under a write-heavy load most gets miss and pay the check on top
  of the read, until the connection stops using its cache for a while (below).

A connection whose cache misses at least twice as often as it hits (judged every 4,096
misses) reads without it for the next 65,536 gets, then tries again: a write-heavy load, or
sessions read at random among very many (no key comes back before it is pushed out), then cost
about what they cost without the cache. Unknown keys are not cached, and entries are dropped
oldest first past ``read_cache`` per connection. A hit hands out the kept record itself: nobody
changes a record once read (see :meth:`~sessionwarden.stores.base.SessionStore.get`).
``read_cache=0`` turns it off, together with the decoded records kept by content (see
``sqlite_rows.Parsed``): every get then reads and decodes its row, which is what ``bench/scale.py``
measures.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any, Final

from ..records import JSON, Alias, Lookup, RecordUpdate, SessionRecord, Tombstone, loads
from . import sqlite_file as _file
from . import sqlite_rows as _rows
from .base import CapAction, Ended, StoreStats, StoreUnavailable, WouldWait, appended_trail
from .sqlite_rows import (
    ALIAS,
    GET,
    GET_BY_ROWID,
    LIVE_SELECT,
    RECORD,
    SCHEMA,
    SCHEMA_VERSION,
    unavailable,
)

__all__ = ["READ_CACHE_SIZE", "SCHEMA_VERSION", "SQLiteStore"]

#: Default size of each connection's read cache and of the store's decoded records by content
#: (see SQLiteStore.get and sqlite_rows.Parsed).
READ_CACHE_SIZE: Final = 4096
# A connection whose read cache missed at least twice as often as it hit over its last
# _CACHE_WINDOW misses (every commit anywhere empties it; sessions read at random among very many
# never repeat) reads without it for the next _CACHE_REST gets, then tries again. A miss costs
# the data_version check and keeping the entry; a hit saves the SELECT and the decoding.
# The window is long enough for a cold cache to fill with a few thousand sessions first.
_CACHE_WINDOW = 4096
_CACHE_REST = 65536

_DATA_VERSION: Final = "PRAGMA data_version"

# Bumped in every child process right after a fork: a connection opened before the fork is never
# used in the child (checked per call without a getpid() system call).
_forks = 0


def _after_fork_in_child() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


# A read cache entry: what get() returned, the meta and data texts of the row it came from (what
# SQLiteStore.update's conditional statement expects to find), and the meta's fields beyond
# META_FIELDS (what a rewrite of the meta keeps; see sqlite_rows.Parsed).
_Entry = tuple[Lookup, str | None, str | None, Mapping[str, Any]]


class _Handle:
    """One thread's connection (weakly registered so :meth:`SQLiteStore.close` can reach it),
    with a cursor kept for the hot reads and the write transactions, and this connection's read
    cache (see
    :meth:`SQLiteStore.get`)."""

    __slots__ = (
        "__weakref__",
        "cache",
        "cursor",
        "db",
        "fork",
        "generation",
        "hits",
        "misses",
        "no_wait",
        "pid",
        "rest",
        "version",
    )

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.cursor = db.cursor()
        self.pid = os.getpid()
        self.fork = _forks
        # key -> what get() returned for it and the row's meta and data texts, valid while
        # data_version is still `version` and the store's write generation still `generation`
        # (-1: not known).
        self.cache: OrderedDict[str, _Entry] = OrderedDict()
        self.version = -1
        self.generation = -1
        self.hits = 0
        self.misses = 0
        self.no_wait = False  # see SQLiteStore.without_waiting
        self.rest = 0  # gets left to do without the cache (see _CACHE_WINDOW)

    # As a context manager: SQLiteStore.without_waiting's block, with no_wait set.
    def __enter__(self) -> None:
        self.no_wait = True

    def __exit__(self, *exc_info: object) -> None:
        self.no_wait = False


class SQLiteStore(_rows.ListsAll):
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
        self._read_only = read_only
        self._local = threading.local()
        self._handles: weakref.WeakSet[_Handle] = weakref.WeakSet()
        self._registry_lock = threading.Lock()
        self._inherited: list[sqlite3.Connection] = []
        self._closed = False
        self._parsed = _rows.Parsed(self._cache_size)
        self._checkpoints = _file.Checkpointer(self._path, self._timeout)
        weakref.finalize(self, self._checkpoints.close)  # its thread must not outlive the store
        try:
            self._init_schema()
        except BaseException:
            self.close()
            raise

    # -- connections -----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        return _file.connect(
            self._path, self._timeout, read_only=self._read_only, mmap_size=self._mmap_size
        )

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
            unavailable(exc)
        self._local.handle = handle
        with self._registry_lock:
            self._handles.add(handle)
        return handle

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back otherwise.
        Under :meth:`without_waiting`, :class:`WouldWait` when another writer holds the lock.
        Yields the connection's kept cursor: ``Connection.execute`` makes a cursor object per
        statement (a sign-in's transaction runs five)."""
        handle = self._handle()
        db = handle.db
        cursor = handle.cursor
        try:
            # The connection has no busy handler (see sqlite_file.connect): the lock is waited
            # for by begin_immediate, and once it is held (WAL) nothing in the transaction waits.
            try:
                try:
                    _file.begin_immediate(cursor, 0.0 if handle.no_wait else self._timeout)
                except sqlite3.OperationalError as exc:
                    if handle.no_wait and _file.is_busy(exc):
                        raise WouldWait from None
                    raise
                try:
                    yield cursor
                except BaseException:
                    if db.in_transaction:
                        db.rollback()
                    raise
                cursor.execute("COMMIT")
                self._checkpoints.wrote(_forks)
            finally:
                # Before anything else can run on this connection: its read cache must not
                # serve what was read before this write (data_version ignores own commits).
                self._generation += 1
        except sqlite3.Error as exc:
            try:
                if db.in_transaction:
                    db.rollback()
            except sqlite3.Error:
                pass
            unavailable(exc)

    def without_waiting(self) -> AbstractContextManager[None]:
        """Writes on this thread within it never wait for another writer: one that would
        raises :class:`WouldWait` at once, having written nothing. For an event loop, which
        runs a write inline when the lock is free and in a worker thread when it is not
        (:class:`~sessionwarden.stores.base.InlineAsyncStore`). The connection's handle is
        the context manager (no object, no generator made: this runs around every write)."""
        return self._handle()

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        db = self._db()
        deadline = None
        while True:
            try:
                return db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                deadline = _file.pause_if_busy(exc, deadline, self._timeout)

    def _init_schema(self) -> None:
        version = self._read("PRAGMA user_version")[0][0]
        if version == SCHEMA_VERSION:
            return
        if version == 0 and not self._read_only:
            with self._write() as db:
                # Re-read under the write lock: another process may have created it meanwhile.
                if db.execute("PRAGMA user_version").fetchone()[0] == 0:
                    for statement in SCHEMA:
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
    def _decode(self, key: str, row: Sequence[Any]) -> tuple[Lookup, Mapping[str, Any]]:
        """What ``row`` holds, and its meta's extra fields; a record is the shared one decoded
        once per content (``_rows.Parsed``)."""
        kind, user_id, expires, meta_text, data_text = row
        if kind == RECORD:
            return self._parsed.get(key, meta_text, data_text)
        return _rows.marker(kind, key, user_id, expires, meta_text), _rows.NO_EXTRAS

    _put_marker = staticmethod(_rows.put_marker)
    _put_record = staticmethod(_rows.put_record)
    _appended = staticmethod(appended_trail)
    _enforce_cap = staticmethod(_rows.enforce_cap)

    # -- interface -------------------------------------------------------------------------
    def get(self, key: str) -> Lookup:
        """What is at ``key``, as of the latest commit of any connection or process.

        Served from this thread's read cache only while ``PRAGMA data_version`` (moved by any
        other connection's commit, in any process) and this store's write generation (bumped
        after every write through *any* of its connections) are both as they were when the
        cache was last known current. Both are taken before the SELECT whose result is kept,
        and the whole cache is dropped as soon as either has moved: a commit that lands between
        the check and the SELECT can only make the next get drop an entry that was already
        current. See the module docstring for what this buys and when it does not.
        """
        handle = self._handle()
        deadline = None
        while True:
            try:
                cache = self._current_cache(handle)
                if cache is not None:
                    hit = cache.get(key)
                    if hit is not None:
                        handle.hits += 1
                        return hit[0]
                    self._missed(handle, cache)
                cursor = handle.cursor
                row = cursor.execute(GET_BY_ROWID, (_rows.row_id(key), key)).fetchone()
                if row is None:  # unknown, or a row without its derived rowid
                    row = cursor.execute(GET, (key,)).fetchone()
                break
            except sqlite3.Error as exc:
                deadline = _file.pause_if_busy(exc, deadline, self._timeout)
        if row is None:
            return None  # not cached: unknown IDs must not push out live sessions
        found, extras = self._decode(key, row)
        if cache is not None:
            if len(cache) >= self._cache_size:
                cache.popitem(last=False)  # the oldest entry
            cache[key] = (found, row[3], row[4], extras)
        return found

    def _current_cache(self, handle: _Handle) -> OrderedDict[str, _Entry] | None:
        """This connection's read cache, emptied if anything was committed since it was last
        known current; None while the cache is off or resting (see ``_CACHE_WINDOW``)."""
        if not self._cache_size:
            return None
        if handle.rest:
            handle.rest -= 1
            return None
        version = handle.cursor.execute(_DATA_VERSION).fetchone()[0]
        generation = self._generation
        cache = handle.cache
        if version != handle.version or generation != handle.generation:
            cache.clear()
            handle.version = version
            handle.generation = generation
        return cache

    @staticmethod
    def _missed(handle: _Handle, cache: OrderedDict[str, _Entry]) -> None:
        """Count a miss; a cache that does not pay for itself rests, then starts afresh."""
        handle.misses += 1
        if handle.misses >= _CACHE_WINDOW:
            if 2 * handle.hits < handle.misses:
                handle.rest = _CACHE_REST
                cache.clear()
                handle.version = -1
            handle.hits = handle.misses = 0

    def migrate(self, batch: int = 1000) -> int:
        """Bring rows written by an earlier version to the current layout: give every row its
        derived rowid where that is free (see the module docstring), in transactions of
        ``batch`` rows. Idempotent; safe while other processes use the file. Returns how many
        rows moved (0 once done)."""
        if batch < 1:
            raise ValueError("batch must be >= 1")
        moved = 0
        after: int | None = None
        while True:
            with self._write() as db:
                after, count = _rows.rehome(db, after, batch)
            moved += count
            if after is None:
                return moved

    def insert(
        self,
        record: SessionRecord,
        *,
        max_per_user: int,
        tombstone_until: float,
        on_limit: CapAction = "evict-oldest",
    ) -> Ended:
        meta: dict[str, Any] = record.meta()
        with self._write() as db:
            self._put_record(db, record.key, meta, record.data, None)
            return self._enforce_cap(db, record.key, meta, max_per_user, tombstone_until, on_limit)

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
        on_limit: CapAction = "evict-oldest",
    ) -> Ended | None:
        handle = self._handle()
        with self._write() as db:
            row = db.execute(LIVE_SELECT, (old_key,)).fetchone()
            if row is None or row[0] != RECORD:
                return None
            # The stored record, decoded once per content (the request's own read did), with
            # the update applied; its meta keeps the fields a later version may have added.
            # What is written is what the read cache then keeps.
            old, extras = self._parsed.get(old_key, row[1], row[2])
            new = old.updated(update)
            new.key = new_key
            meta = _rows.meta_of(new, extras)
            trail_text: str | None = row[3]
            if update.activity is not None and activity_max > 0:
                if trail_text is None:
                    # No trail to carry over: the one already at new_key (if any) is kept.
                    found = db.execute(
                        "SELECT activity FROM items WHERE key = ?", (new_key,)
                    ).fetchone()
                    trail_text = found[0] if found else None
                trail_text = self._appended(trail_text, update.activity, activity_max)
            # Data no key of which the update sets or deletes is the stored text as it is.
            same_data = None if update.set_data or update.del_data else row[2]
            generation = self._generation
            self._put_marker(db, row[4], old_becomes)
            texts = self._put_record(db, new_key, meta, new.data, trail_text, same_data)
            evicted = self._enforce_cap(db, new_key, meta, max_per_user, tombstone_until, on_limit)
        self._written(handle, generation, (old_key, *evicted), new_key, *texts, new, extras)
        return evicted

    def update(self, key: str, update: RecordUpdate, *, activity_max: int = 0) -> bool:
        add_activity = update.activity is not None and activity_max > 0
        if not (update.meta or update.set_data or update.del_data or add_activity):
            rows = self._read("SELECT kind FROM items WHERE key = ?", (key,))
            return bool(rows) and rows[0][0] == RECORD
        handle = self._handle()
        if not add_activity and self._update_cached(handle, key, update):
            return True
        with self._write() as db:
            row = db.execute(LIVE_SELECT, (key,)).fetchone()
            if row is None or row[0] != RECORD:
                return False  # revoked, rotated out, or gone: never written back to life
            generation = self._generation
            trail_text = None
            if update.activity is not None and add_activity:
                trail_text = self._appended(row[3], update.activity, activity_max)
            record, extras = self._parsed.get(key, row[1], row[2])
            statement, params, new, meta_text, data_text = _rows.rewrite(
                update, record, extras, row[1], row[2], trail_text
            )
            db.execute(statement, params)
        self._written(handle, generation, (), key, meta_text, data_text, new, extras)
        return True

    def _update_cached(self, handle: _Handle, key: str, update: RecordUpdate) -> bool:
        """Write ``update`` over the record this connection's read cache holds for ``key``, in
        one statement of its own (no transaction around a read) that changes the row only if
        it still holds exactly the texts the cache holds: a concurrent write of any field, a
        revocation or a rotation makes it change nothing. True when it wrote; False when it did
        not (nothing cached, the row moved on, or another writer holds the lock): then
        :meth:`update` reads the row under the write lock and merges there, as without a cache.

        The cache need not be current: the condition compares the row itself. When the row
        matches, merging into the cached texts is merging into the row.
        """
        entry = handle.cache.get(key)
        if entry is None:
            return False
        record, stored_meta, stored_data, extras = entry
        if not isinstance(record, SessionRecord) or stored_meta is None:
            return False
        statement, params, new, meta_text, data_text = _rows.rewrite(
            update, record, extras, stored_meta, stored_data
        )
        generation = self._generation
        try:
            try:  # no busy handler: a lock held elsewhere fails it at once
                written = handle.cursor.execute(statement, params).rowcount == 1
            finally:
                self._generation += 1  # as after any write (see _write)
        except sqlite3.OperationalError as exc:
            if _file.is_busy(exc):
                return False
            unavailable(exc)
        except sqlite3.Error as exc:
            unavailable(exc)
        if written:
            self._checkpoints.wrote(_forks)
            self._written(handle, generation, (), key, meta_text, data_text, new, extras)
        return written

    def _written(
        self,
        handle: _Handle,
        generation: int,
        drop: Sequence[str],
        key: str,
        meta_text: str,
        data_text: str | None,
        written: SessionRecord,
        extras: Mapping[str, Any],
    ) -> None:
        """After ``handle`` committed the record ``written`` at ``key`` (``extras``: the extra
        meta fields it was written with), its cache keeps it (the next get reads nothing); the
        rest stays only if this store wrote nothing else since the cache was last known current
        (``generation``: as before this write). No ``data_version`` is read: the cache keeps
        the one read before this commit, so any other connection's commit since then, before or
        after this one, empties it at the next get, this entry included (a SELECT more, never a
        stale record)."""
        if not self._cache_size or handle.rest:
            return
        cache = handle.cache
        if generation != handle.generation or self._generation != generation + 1:
            cache.clear()
        handle.generation = self._generation
        for gone in drop:
            cache.pop(gone, None)
        if len(cache) >= self._cache_size:
            cache.popitem(last=False)
        record = self._parsed.keep(key, meta_text, data_text, written, extras)
        cache[key] = (record, meta_text, data_text, extras)

    def revoke(self, key: str, tombstone: Tombstone) -> bool:
        with self._write() as db:
            row = db.execute("SELECT kind, rowid FROM items WHERE key = ?", (key,)).fetchone()
            if row is None or row[0] not in (RECORD, ALIAS):
                return False
            self._put_marker(db, row[1], tombstone)
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
        found = [self._decode(row[0], row[1:])[0] for row in rows]
        records = [r.copy() for r in found if isinstance(r, SessionRecord)]
        return sorted(records, key=lambda r: (r.created_at, r.key))

    def revoke_user(
        self, user_id: str, *, reason: str, at: float, until: float, keep: str | None = None
    ) -> Ended:
        with self._write() as db:
            rows = db.execute(
                "SELECT key FROM items WHERE user_id = ? AND kind = 0 AND key IS NOT ?",
                (user_id, keep),
            ).fetchall()
            keys = sorted(str(k) for (k,) in rows)
            return _rows.bury(db, keys, reason, at, until, user_id)

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
        it writes: it checkpoints after each batch itself (``sqlite_file.checkpoint``), so the WAL
        stays far below the auto-checkpoint threshold and no request's commit ends up copying the
        purge's pages into the database file (and syncing it) inside the request.
        """
        if batch < 1:
            raise ValueError("batch must be >= 1")
        return _file.purge(self._db(), self._write, now, batch)

    def stats(self, now: float) -> StoreStats:
        return _rows.stats(self._read(_rows.STATS, (now,))[0])

    def check(self) -> None:
        """A start-up check: :class:`StoreUnavailable` naming the file and the reason unless
        the store can be read."""
        try:
            self._read("PRAGMA user_version")
        except StoreUnavailable as exc:
            raise StoreUnavailable(f"{exc}: {self._path}") from None

    def close(self) -> None:
        """Close every thread's connection; later calls raise :class:`StoreUnavailable`."""
        self._checkpoints.close()
        with self._registry_lock:
            self._closed = True
            handles = list(self._handles)
            self._handles.clear()
        for handle in handles:
            if handle.pid == os.getpid():
                with suppress(sqlite3.Error):
                    handle.db.close()
