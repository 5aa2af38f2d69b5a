"""The SQLite store's file: opening a connection (WAL, its pragmas), taking the write lock, and
checkpointing the WAL. :mod:`sessionwarden.stores.sqlite` holds the store; see its docstring.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Final

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
    SQLite's busy timeout at ``timeout``, transactions issued by the caller."""
    if read_only:
        from urllib.parse import quote

        target = "file:" + quote(os.path.abspath(path)) + "?mode=ro"
        uri = True
    else:
        target, uri = path, False
    db = sqlite3.connect(
        target,
        timeout=timeout,
        isolation_level=None,  # we issue BEGIN/COMMIT ourselves
        check_same_thread=False,  # close() may run on another thread
        uri=uri,
    )
    try:
        if not read_only:
            use_wal(db, timeout)
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


def begin_immediate(db: sqlite3.Connection, timeout: float) -> None:
    """``BEGIN IMMEDIATE``, retried finely until ``timeout`` while another writer holds it.

    The connection's busy timeout must be 0 here (see ``SQLiteStore._write``): each attempt
    then fails at once instead of sleeping in SQLite's coarse steps.
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


def checkpoint(db: sqlite3.Connection, busy_pragma: str) -> None:
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
            db.execute(busy_pragma)
    except sqlite3.Error as exc:
        unavailable(exc)
