"""The SQLite store's file: opening a connection (WAL, its pragmas), taking the write lock, and
checkpointing the WAL. :mod:`sessionwarden.stores.sqlite` holds the store; see its docstring.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from typing import Final

from .base import StoreUnavailable
from .sqlite_rows import unavailable

# Taking the write lock: retry BEGIN IMMEDIATE after 0.5 ms, then 1 ms, then every 2 ms. A waiting
# writer thus gets the lock within about 2 ms of its release (the purge pauses longer than that
# between its batches), at the cost of a few cheap failed attempts while it waits.
_LOCK_RETRY_FIRST: Final = 0.0005
_LOCK_RETRY_MAX: Final = 0.002


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether SQLite refused because another connection holds a lock (SQLITE_BUSY, _LOCKED)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in (5, 6)


def connect(
    path: str, timeout: float, *, read_only: bool = False, mmap_size: int = 0
) -> sqlite3.Connection:
    """A connection to the store's file: WAL (unless ``read_only``), ``synchronous=NORMAL``,
    no busy handler (a statement that finds a lock taken fails at once: ``begin_immediate``
    and ``pause_if_busy`` wait, finely, up to ``timeout``), transactions issued by the
    caller."""
    if read_only:
        from urllib.parse import quote

        target = "file:" + quote(os.path.abspath(path)) + "?mode=ro"
        uri = True
    else:
        target, uri = path, False
    db = sqlite3.connect(
        target,
        timeout=0,  # no busy handler: writers and readers wait for locks themselves
        isolation_level=None,  # we issue BEGIN/COMMIT ourselves
        check_same_thread=False,  # close() may run on another thread
        uri=uri,
    )
    try:
        if not read_only:
            use_wal(db, timeout)
            db.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
        db.execute("PRAGMA synchronous = NORMAL")
        if mmap_size:
            db.execute(f"PRAGMA mmap_size = {mmap_size}")
    except BaseException:
        db.close()
        raise
    return db


def use_wal(db: sqlite3.Connection, timeout: float) -> None:
    """Switch the file to WAL (a no-op once done: the mode is stored in the file).

    The switch needs a moment alone with the file, and SQLite does not always apply the busy
    timeout to it, so processes opening a new file at once retry here within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            row = db.execute("PRAGMA journal_mode").fetchone()
            if row is not None and str(row[0]).lower() == "wal":
                return
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def pause_if_busy(exc: sqlite3.Error, deadline: float | None, timeout: float) -> float:
    """After a read failed with ``exc``: when the file was busy and ``deadline`` (None: from
    now, ``timeout``) has not passed, sleep a millisecond and return the deadline to retry
    against; otherwise :class:`StoreUnavailable`."""
    now = time.monotonic()
    if deadline is None:
        deadline = now + timeout
    if not is_busy(exc) or now >= deadline:
        unavailable(exc)
    time.sleep(min(0.001, deadline - now))
    return deadline


def begin_immediate(db: sqlite3.Cursor, timeout: float) -> None:
    """``BEGIN IMMEDIATE``, retried finely until ``timeout`` while another writer holds it.

    The connection has no busy handler (see ``connect``): each attempt fails at once instead
    of sleeping in SQLite's coarse steps.
    """
    deadline = time.monotonic() + timeout
    delay = _LOCK_RETRY_FIRST
    while True:
        try:
            db.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            left = deadline - time.monotonic()
            if not is_busy(exc) or left <= 0:
                raise
            time.sleep(min(delay, left))
            delay = min(delay * 2, _LOCK_RETRY_MAX)


def checkpoint(db: sqlite3.Connection) -> None:
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
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        db.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
    except sqlite3.Error as exc:
        unavailable(exc)


# Purge: at most this many rows per transaction (a few ms of lock at a million rows, three
# indexes to maintain), and this pause between transactions, in which waiting writers get in.
_PURGE_MAX_BATCH: Final = 200
_PURGE_PAUSE: Final = 0.005


def purge(
    db: sqlite3.Connection,
    write: Callable[[], AbstractContextManager[sqlite3.Cursor]],
    now: float,
    batch: int,
) -> int:
    """``SQLiteStore.purge`` on its connection ``db``, each batch in a ``write()``
    transaction: delete what expired by ``now``, at most ``batch`` (and 200) rows a
    transaction, checkpointing after each batch."""
    step = min(batch, _PURGE_MAX_BATCH)
    try:
        # This connection checkpoints explicitly below, not inside its commits.
        auto = int(db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        db.execute("PRAGMA wal_autocheckpoint = 0")
    except sqlite3.Error as exc:
        unavailable(exc)
    removed = 0
    try:
        while True:
            with write() as tx:
                count = tx.execute(
                    "DELETE FROM items WHERE rowid IN"
                    " (SELECT rowid FROM items WHERE expires <= ? LIMIT ?)",
                    (now, step),
                ).rowcount
            removed += count
            if count > 0:
                checkpoint(db)
            if count < step:
                return removed
            time.sleep(_PURGE_PAUSE)
    finally:
        with suppress(sqlite3.Error):
            db.execute(f"PRAGMA wal_autocheckpoint = {auto}")


# The store's connections leave checkpoints to the Checkpointer; SQLite's own automatic
# checkpoint (run by whichever commit passes this many WAL pages) stays only as a backstop for
# when the checkpointer cannot keep up or is gone. SQLite's default is 1,000 pages.
BACKSTOP_PAGES: Final = 10_000
# The checkpointer runs after this many commits of the process, or this long after the first
# commit since its last run, whichever comes first.
_CHECKPOINT_COMMITS: Final = 1000
_CHECKPOINT_AFTER: Final = 1.0


class Checkpointer:
    """Copies the WAL into the database file from a thread of its own, so that no commit does.

    SQLite's automatic checkpoint runs inside the commit that passes the threshold: that
    commit copies the WAL into the database file and syncs both (10-110 ms measured on a
    loaded machine), and on an event loop every request waits for it. Here the store's
    connections run with the automatic checkpoint at :data:`BACKSTOP_PAGES`, and this thread
    checkpoints (``checkpoint``: PASSIVE, then RESTART without waiting) once a second while
    the process writes, or after every 1,000 of its commits. One thread per store and
    process, started by the first commit (and again in a forked child); each checkpoint opens
    a connection of its own, and holds no lock a writer waits for longer than the RESTART's
    moment.

    A fork waits until the thread is out of SQLite (``_busy``, taken around each of its calls
    and by the fork): a child forked while another thread is inside SQLite can inherit one of
    SQLite's mutexes locked, and would hang at its first use of SQLite.
    """

    def __init__(self, path: str, timeout: float) -> None:
        self._path = path
        self._timeout = timeout
        self._lock = threading.Lock()  # starting and stopping the thread
        self._busy = threading.Lock()  # held by the thread while it is inside SQLite
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._fork = -1  # the store's fork count when the thread was started (-1: never)
        self._pid = 0
        self._commits = 0  # since the last checkpoint (lost increments only delay one)
        self._closed = False
        _checkpointers.add(self)

    def wrote(self, fork: int) -> None:
        """A commit of this process (``fork``: how many forks this process descends from, as
        the store counts them): start the thread if it is not running here, and wake it once
        enough commits are waiting."""
        if self._fork != fork:
            self._start(fork)
        self._commits += 1
        if self._commits >= _CHECKPOINT_COMMITS:
            self._wake.set()

    def _start(self, fork: int) -> None:
        with self._lock:
            if self._fork == fork or self._closed:
                return
            # In a forked child the parent's thread is not running, and its event is the
            # parent's: start afresh.
            self._wake = threading.Event()
            self._commits = 0
            self._thread = threading.Thread(
                target=self._run, name="sessionwarden-sqlite-checkpoint", daemon=True
            )
            self._fork, self._pid = fork, os.getpid()
            self._thread.start()

    def _run(self) -> None:
        wake = self._wake
        while True:
            wake.wait(_CHECKPOINT_AFTER)
            wake.clear()
            if self._closed:
                return
            if self._commits:
                self._commits = 0
                with self._busy:
                    self._checkpoint()

    def _checkpoint(self) -> None:
        """One checkpoint on a connection of its own, opened for it: an idle thread keeps no
        connection (one open would keep, for one, a connection in exclusive locking mode from
        taking its lock). What it could not do, the next one does; what is wrong with the file,
        the requests report."""
        try:
            db = connect(self._path, self._timeout)
        except sqlite3.Error:
            return
        try:
            with suppress(StoreUnavailable):
                checkpoint(db)
        finally:
            db.close()

    def close(self) -> None:
        """Stop the thread (after a checkpoint in progress) and close its connection."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is not None and self._pid == os.getpid():
            self._wake.set()
            thread.join(timeout=max(self._timeout, 1.0) + 1.0)


# Every checkpointer of the process, and the locks a fork in progress holds (see Checkpointer).
_checkpointers: weakref.WeakSet[Checkpointer] = weakref.WeakSet()
_held: list[threading.Lock] = []


def _before_fork() -> None:
    for each in list(_checkpointers):
        for lock in (each._lock, each._busy):
            lock.acquire()
            _held.append(lock)


def _after_fork() -> None:
    while _held:
        _held.pop().release()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)
