"""The SQLite store's file layout and row encoding: the schema, the statements, the rowid a
key derives, how records, aliases and tombstones become rows and back, and what SQLite's errors
are called. :mod:`sessionwarden.stores.sqlite` holds the store (connections, transactions, the
read cache); see its docstring for the layout.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import suppress
from types import MappingProxyType
from typing import Any, Final, NoReturn, Protocol, TypeAlias

from ..records import (
    JSON,
    META_FIELDS,
    Alias,
    Lookup,
    RecordUpdate,
    SessionRecord,
    Tombstone,
    dumps,
    lineage_or_key,
    loads,
)
from .base import CapAction, Ended, StoreStats, StoreUnavailable, over_cap

SCHEMA_VERSION: Final = 1

RECORD: Final = 0
ALIAS: Final = 1
TOMBSTONE: Final = 2


SCHEMA: Final = (
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
UPSERT_RECORD: Final = """
    INSERT INTO items (rowid, key, kind, user_id, created_at, expires, meta, data, activity)
    VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET
        kind = 0, user_id = excluded.user_id, created_at = excluded.created_at,
        expires = excluded.expires, meta = excluded.meta, data = excluded.data,
        activity = coalesce(excluded.activity, items.activity)
"""

# An alias or tombstone always takes the place of a row the same transaction found (the record
# it replaces, or an alias revoked): found by the rowid that read returned, it is a plain UPDATE of
# that row, one descent of the table's B-tree (an upsert by key would first try the insert and
# look the key up in its index).
PUT_MARKER: Final = """
    UPDATE items SET kind = ?, user_id = ?, created_at = NULL, expires = ?, meta = ?,
        data = NULL, activity = NULL
    WHERE rowid = ?
"""

LIVE_SELECT: Final = "SELECT kind, meta, data, activity, rowid FROM items WHERE key = ?"
GET: Final = "SELECT kind, user_id, expires, meta, data FROM items WHERE key = ?"
GET_BY_ROWID: Final = (
    "SELECT kind, user_id, expires, meta, data FROM items WHERE rowid = ? AND key = ?"
)


# The meta fields a record's row also keeps in a column of its own (see ``columns``).
_COLUMN_OF: Final = {"user_id": "user_id", "created_at": "created_at", "expires_at": "expires"}


#: A record as decoded from its stored texts, with the fields of its stored meta that are not
#: :data:`META_FIELDS` (a later version's: every rewrite of the meta keeps them).
Decoded: TypeAlias = tuple[SessionRecord, Mapping[str, Any]]

_META_NAMES: Final = frozenset(META_FIELDS)
#: No extra fields (shared: never changed).
NO_EXTRAS: Final[Mapping[str, Any]] = MappingProxyType({})


def decode(key: str, meta_text: str, data_text: str | None) -> Decoded:
    """The record stored as these texts, and its meta's fields beyond :data:`META_FIELDS`."""
    meta: dict[str, Any] = loads(meta_text)
    data: dict[str, Any] = loads(data_text) if data_text else {}
    record = SessionRecord.from_parts(key, meta, data)
    if _META_NAMES.issuperset(meta):
        return record, NO_EXTRAS
    return record, {name: v for name, v in meta.items() if name not in _META_NAMES}


def meta_of(record: SessionRecord, extras: Mapping[str, Any]) -> dict[str, Any]:
    """The meta to store for ``record``: its fields, and ``extras``, the fields a later version
    added to the meta it was read from. Nothing stored is decoded for it: a rewrite of a
    record this process read or wrote knows both."""
    meta: dict[str, Any] = record.meta()
    meta.update(extras)
    return meta


class Parsed:
    """The records stored as given texts, decoded once and remembered by content: a
    steady-state session is read with the same texts on every request until it is next
    written. Nothing here can be stale (equal texts decode equal); the record handed out is
    shared, which is safe because nobody changes a record once read (see
    :meth:`~sessionwarden.stores.base.SessionStore.get`). ``size`` 0 keeps nothing.

    An entry is the record alone, or, for a meta with fields beyond :data:`META_FIELDS` (rare),
    the record and those fields: no second object per entry for the collector to visit."""

    __slots__ = ("_entries", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, str, str | None], SessionRecord | Decoded] = (
            OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, meta_text: str, data_text: str | None) -> Decoded:
        """What these texts hold (decoded unless kept)."""
        found = self._entries.get((key, meta_text, data_text))
        if found is None:
            record, extras = decode(key, meta_text, data_text)
            return self.keep(key, meta_text, data_text, record, extras), extras
        return (found, NO_EXTRAS) if isinstance(found, SessionRecord) else found

    def keep(
        self,
        key: str,
        meta_text: str,
        data_text: str | None,
        record: SessionRecord,
        extras: Mapping[str, Any],
    ) -> SessionRecord:
        """``record`` (its meta's extra fields ``extras``) is what these texts hold: the
        record kept for them from now on (an equal one kept already stays)."""
        content = (key, meta_text, data_text)
        entries = self._entries
        found = entries.get(content)
        if found is not None:
            return found if isinstance(found, SessionRecord) else found[0]
        if self._size:
            if len(entries) >= self._size:
                # The oldest entry goes, one per new one (O(1) in an OrderedDict; a plain dict
                # must step over the holes its earlier deletions left at its start): no bulk
                # release of thousands of records inside one request. Another thread may have
                # emptied it meanwhile: then nothing goes.
                with suppress(KeyError):
                    entries.popitem(last=False)
            entries[content] = (record, extras) if extras else record
        return record


def rewrite(
    update: RecordUpdate,
    record: SessionRecord,
    extras: Mapping[str, Any],
    meta_text: str,
    data_text: str | None,
    trail_text: str | None = None,
) -> tuple[str, tuple[Any, ...], SessionRecord, str, str | None]:
    """How to write ``update`` over ``record`` (its meta's extra fields ``extras``), stored as
    ``meta_text`` and ``data_text``: the UPDATE statement and its parameters, the new
    record, and its meta and data texts.

    The statement sets only what changes (the indexed columns only when their meta fields
    change: rewriting an index entry is another page for the WAL), with ``trail_text`` the new
    activity trail when given, and only where the row still is that record with those texts:
    on any other row (revoked, rotated out, changed by another writer) it changes nothing, and
    the cursor's ``rowcount`` is 0. Nothing stored is decoded: the new record is the stored
    one with the update applied (:meth:`SessionRecord.updated`), its meta that record's with
    the extra fields (:func:`meta_of`).
    """
    sets: list[str] = []
    params: list[Any] = []
    new = record.updated(update)
    new_meta = meta_text
    if update.meta:
        meta = meta_of(new, extras)
        new_meta = dumps(meta)
        sets.append("meta = ?")
        params.append(new_meta)
        for name in update.meta:
            column = _COLUMN_OF.get(name)
            if column is not None:
                sets.append(f"{column} = ?")
                params.append(meta[name])
    changes_data = bool(update.set_data or update.del_data)
    new_data = dumps(new.data) if changes_data else data_text
    if changes_data:
        sets.append("data = ?")
        params.append(new_data)
    if trail_text is not None:
        sets.append("activity = ?")
        params.append(trail_text)
    # Only the fixed assignments above are joined; every value is a parameter.
    statement = (
        f"UPDATE items SET {', '.join(sets)}"  # noqa: S608
        " WHERE key = ? AND kind = 0 AND meta = ? AND data IS ?"
    )
    return statement, (*params, record.key, meta_text, data_text), new, new_meta, new_data


def row_id(key: str) -> int:
    """The rowid a row for ``key`` is written with: the key's first 64 bits as a signed
    integer (keys are hex digests), or those of a hash of any other key."""
    try:
        return int(key[:16], 16) - (1 << 63) if len(key) >= 16 else _hashed_row_id(key)
    except ValueError:
        return _hashed_row_id(key)


def _hashed_row_id(key: str) -> int:
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def write_row(db: sqlite3.Cursor, statement: str, key: str, values: tuple[Any, ...]) -> None:
    """``statement`` (an upsert whose first two parameters are the rowid and the key) with the
    key's derived rowid, or, when another key's row holds that rowid, with an ordinary one."""
    try:
        db.execute(statement, (row_id(key), key, *values))
    except sqlite3.IntegrityError:
        # The derived rowid is taken by another key (or by an ordinary rowid SQLite handed
        # out): this row goes without it and is found by key alone. A conflict on ``key``
        # itself never lands here: the upsert updates that row, which keeps its rowid.
        db.execute(statement, (None, key, *values))


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


def unavailable(exc: sqlite3.Error) -> NoReturn:
    # ``from None``: the message names the condition; nothing of the statement or data travels.
    raise StoreUnavailable(f"SQLite session store: {_condition(exc)}") from None


def marker(kind: int, key: str, user_id: str | None, expires: float, meta_text: str) -> Lookup:
    """The alias or tombstone a row of ``kind`` holds."""
    meta = loads(meta_text)
    if kind == ALIAS:
        return Alias(
            key=key,
            target=meta["target"],
            at=meta["at"],
            grace_until=meta["grace_until"],
            until=expires,
            user_id=user_id,
        )
    return Tombstone(
        key=key,
        reason=meta["reason"],
        at=meta["at"],
        until=expires,
        user_id=user_id,
        lineage=str(meta.get("lineage") or ""),  # none in a tombstone of an earlier version
    )


def put_marker(db: sqlite3.Cursor, rowid: int, item: Alias | Tombstone) -> None:
    """Replace the row at ``rowid`` (found by this transaction) with the alias or tombstone
    ``item``."""
    if isinstance(item, Alias):
        kind = ALIAS
        meta: dict[str, JSON] = {
            "target": item.target,
            "at": item.at,
            "grace_until": item.grace_until,
        }
    else:
        kind = TOMBSTONE
        meta = {"reason": item.reason, "at": item.at}
        if item.lineage:
            meta["lineage"] = item.lineage
    db.execute(PUT_MARKER, (kind, item.user_id, item.until, dumps(meta), rowid))


def put_record(
    db: sqlite3.Cursor,
    key: str,
    meta: dict[str, Any],
    data: dict[str, Any],
    activity: str | None,
    data_text: str | None = None,
) -> tuple[str, str]:
    """Write the record at ``key``; its meta and data as stored (JSON text). ``data_text``:
    ``data`` as stored already (a rotation that changes no data key), not encoded again."""
    meta_text = dumps(meta)
    if data_text is None:
        data_text = dumps(data)
    write_row(db, UPSERT_RECORD, key, (*columns(meta), meta_text, data_text, activity))
    return meta_text, data_text


def columns(meta: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The meta fields a record's row also keeps in columns: user, creation, expiry."""
    return meta["user_id"], meta["created_at"], meta["expires_at"]


def enforce_cap(
    db: sqlite3.Cursor,
    key: str,
    meta: dict[str, Any],
    cap: int,
    until: float,
    on_limit: CapAction = "evict-oldest",
) -> Ended:
    """Hold the user of the record just written at ``key`` to ``cap`` (see
    :func:`~.base.over_cap`): tombstone the keys evicted and return them with their lineages
    (:func:`bury`), or raise
    :class:`~.base.SessionLimitReached` (the caller's transaction is then rolled back)."""
    user_id = meta["user_id"]
    if user_id is None or cap <= 0:
        return {}
    at = meta["last_seen"]
    rows = db.execute(
        "SELECT created_at, coalesce(json_extract(meta, '$.last_seen'), created_at), key"
        " FROM items"
        " WHERE user_id = ? AND kind = 0 AND (expires > ? OR key = ?)",
        (user_id, at, key),
    ).fetchall()
    live = [(float(c), float(seen), str(k)) for c, seen, k in rows]
    return bury(db, over_cap(live, cap, key, on_limit, user_id), "evicted", at, until, user_id)


#: A record's stored lineage flag (``NULL`` for a record written before lineages), and its rowid.
_LINEAGE_SELECT = "SELECT json_extract(meta, '$.flags.lineage'), rowid FROM items WHERE key = ?"


def bury(
    db: sqlite3.Cursor, keys: Sequence[str], reason: str, at: float, until: float, user: str
) -> Ended:
    """Tombstone the live records at ``keys`` (in the caller's transaction), each tombstone
    keeping its record's lineage; returns the keys with those lineages. Runs only for the
    sessions a write ends, so a write that ends none reads nothing more."""
    ended: Ended = {}
    for k in keys:  # each read in the caller's transaction: its row is there
        stored, rowid = db.execute(_LINEAGE_SELECT, (k,)).fetchone()
        lineage = ended[k] = lineage_or_key(stored, k)
        put_marker(db, rowid, Tombstone(k, reason, at, until, user, lineage))
    return ended


def rehome(db: sqlite3.Cursor, after: int | None, batch: int) -> tuple[int | None, int]:
    """Give the rows of one page (up to ``batch`` rows in rowid order after ``after``) that
    were written without their derived rowid (by an earlier version) that rowid, where it is
    free. Returns where the next page starts (None: done) and how many rows moved."""
    page = "SELECT rowid, key FROM items {} ORDER BY rowid LIMIT ?"
    if after is None:
        rows = db.execute(page.format(""), (batch,)).fetchall()
    else:
        rows = db.execute(page.format("WHERE rowid > ?"), (after, batch)).fetchall()
    if not rows:
        return None, 0
    moved = 0
    for rowid, key in rows:
        want = row_id(str(key))
        if rowid == want:
            continue
        try:
            db.execute("UPDATE items SET rowid = ? WHERE key = ?", (want, key))
            moved += 1
        except sqlite3.IntegrityError:
            pass  # taken by another key: this row keeps its rowid and is found by key
    return int(rows[-1][0]), moved


#: Live sessions, users with one, tombstones and aliases not yet expired at ``?``.
STATS: Final = (
    "SELECT coalesce(sum(kind = 0), 0),"
    " count(DISTINCT CASE WHEN kind = 0 THEN user_id END),"
    " coalesce(sum(kind = 2), 0), coalesce(sum(kind = 1), 0)"
    " FROM items WHERE expires > ?"
)


def stats(row: Any) -> StoreStats:
    """:data:`STATS`' one row as :class:`StoreStats`."""
    return StoreStats(
        live_sessions=int(row[0]),
        users=int(row[1]),
        tombstones=int(row[2]),
        aliases=int(row[3]),
    )


# One page of signed-in records in key order (SQLite walks the primary key's index).
_ALL_FIRST: Final = (
    "SELECT key, meta, data FROM items"
    " WHERE kind = 0 AND user_id IS NOT NULL ORDER BY key LIMIT ?"
)
_ALL_AFTER: Final = (
    "SELECT key, meta, data FROM items"
    " WHERE key > ? AND kind = 0 AND user_id IS NOT NULL ORDER BY key LIMIT ?"
)


class _Reads(Protocol):
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


class ListsAll:
    """Mixed into the store: :meth:`all_sessions`, kept here beside the statements."""

    __slots__ = ()

    def all_sessions(
        self: _Reads, after: str | None, limit: int
    ) -> tuple[list[SessionRecord], str | None]:
        """A page of signed-in records by key; the cursor is the last key (see the interface)."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        if after is None:
            rows = self._read(_ALL_FIRST, (limit + 1,))
        else:
            rows = self._read(_ALL_AFTER, (after, limit + 1))
        page = [
            SessionRecord.from_parts(str(key), loads(meta), loads(data) if data else {})
            for key, meta, data in rows[:limit]
        ]
        return page, (page[-1].key if len(rows) > limit else None)
