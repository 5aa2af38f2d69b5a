"""What the PostgreSQL store does, as statements: the schema, and every operation written once as
a generator of :class:`Step` values that a synchronous or an asynchronous runner executes (see
:mod:`sessionwarden.stores.postgres`). Nothing here talks to a server.

Layout (schema version 1, kept in ``<table>_schema``) -- one row per key, like the SQLite store::

    <table>(key text PRIMARY KEY,   -- the keyed hash of a session ID, never the ID itself
            kind smallint,          -- 0 record, 1 alias, 2 tombstone
            user_id text,           -- record owner; alias/tombstone: the user it belonged to
            created_at float8,      -- records only (the per-user cap orders by it)
            expires float8,         -- record: expires_at; alias/tombstone: until
            meta text,              -- JSON: record fields / alias or tombstone fields
            data text,              -- JSON: the record's data (records only)
            activity text)          -- JSON array: the bounded activity trail (records only)

JSON is kept as ``text``: it is written and read whole by the store (never queried inside), and
text keeps exactly what was written (``jsonb`` would reorder keys and re-encode numbers).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias, TypeVar

from ..records import (
    JSON,
    Alias,
    Lookup,
    RecordUpdate,
    SessionRecord,
    Tombstone,
    dumps,
    loads,
)
from .base import CapAction, Ended, StoreStats, appended_trail, merge_stored, over_cap

T = TypeVar("T")

SCHEMA_VERSION: Final = 1
DEFAULT_TABLE: Final = "sessionwarden"

_RECORD: Final = 0
_ALIAS: Final = 1
_TOMBSTONE: Final = 2
_TABLE_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,40}")

# What a step's result is handed back to the operation as.
ONE: Final = "one"  # the first row (or None)
ALL: Final = "all"  # every row
COUNT: Final = "count"  # the number of rows changed


@dataclass(frozen=True, slots=True)
class Step:
    sql: str
    params: tuple[Any, ...]
    result: str = ONE


#: An operation: yields steps, receives each one's result, returns the operation's result.
Op: TypeAlias = Generator[Step, Any, T]


def check_table(name: str) -> str:
    """``name`` when it is a plain lower-case SQL identifier (it is put into statements)."""
    if not _TABLE_NAME.fullmatch(name):
        raise ValueError("table: 1-41 characters of a-z, 0-9 and _, not starting with a digit")
    return name


def lock_id(namespace: str, name: str) -> int:
    """A 64-bit advisory lock number for ``name`` (a user ID) in ``namespace`` (the table)."""
    digest = hashlib.blake2b(
        f"{namespace}\x00{name}".encode("utf-8", "surrogatepass"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


def schema_statements(table: str) -> tuple[str, ...]:
    t = check_table(table)
    return (
        f"""CREATE TABLE IF NOT EXISTS {t} (
            key text PRIMARY KEY,
            kind smallint NOT NULL,
            user_id text,
            created_at double precision,
            expires double precision NOT NULL,
            meta text NOT NULL,
            data text,
            activity text
        )""",
        f"CREATE INDEX IF NOT EXISTS {t}_user ON {t} (user_id, created_at) WHERE kind = 0",
        f"CREATE INDEX IF NOT EXISTS {t}_expires ON {t} (expires)",
        f"CREATE TABLE IF NOT EXISTS {t}_schema (version integer NOT NULL)",
    )


#: A record row's lineage in SQL, from its meta as it was before the statement: the
#: ``lineage`` flag, or the key for a record written before lineages
#: (:func:`~sessionwarden.records.lineage_or_key`).
_LINEAGE = "coalesce(nullif(meta::jsonb #>> '{flags,lineage}', ''), key)"


def _marker_meta(marker: Alias | Tombstone) -> tuple[int, str]:
    if isinstance(marker, Alias):
        meta: dict[str, JSON] = {
            "target": marker.target,
            "at": marker.at,
            "grace_until": marker.grace_until,
        }
        return _ALIAS, dumps(meta)
    meta = {"reason": marker.reason, "at": marker.at}
    if marker.lineage:
        meta["lineage"] = marker.lineage
    return _TOMBSTONE, dumps(meta)


def decode(key: str, row: Sequence[Any]) -> Lookup:
    """What a ``(kind, user_id, expires, meta, data)`` row holds."""
    kind, user_id, expires, meta_text, data_text = row
    meta = loads(meta_text)
    if kind == _RECORD:
        return SessionRecord.from_parts(key, meta, loads(data_text) if data_text else {})
    if kind == _ALIAS:
        return Alias(
            key=key,
            target=meta["target"],
            at=meta["at"],
            grace_until=meta["grace_until"],
            until=float(expires),
            user_id=user_id,
        )
    return Tombstone(
        key=key,
        reason=meta["reason"],
        at=meta["at"],
        until=float(expires),
        user_id=user_id,
        lineage=str(meta.get("lineage") or ""),  # none in a tombstone of an earlier version
    )


class Ops:
    """Every store operation on one table, as a generator of steps.

    Writes run in one transaction (the runner's), under READ COMMITTED: each statement sees
    what was committed before it started, and a row lock (``FOR UPDATE``, an ``UPDATE``) waits
    for the transaction holding it and then sees its outcome. So:

    * ``update`` and ``rotate`` lock the live record (``kind = 0 ... FOR UPDATE``) before
      reading what they merge into: a revocation that committed first leaves no live row to
      lock (nothing is written back to life), and one that comes later waits for them.
    * the per-user cap: ``insert``, ``rotate`` and ``revoke_user`` take a transaction-scoped
      advisory lock on the user (``pg_advisory_xact_lock``) *before* any row lock, then count
      the user's live records. Two sign-ins of one user are thereby serialised, the second
      counts the first, and at most ``max_per_user`` survive any interleaving. Taking it first
      keeps the lock order the same everywhere (user, then rows), so the cap adds no deadlock.
    """

    __slots__ = ("_get", "_live_lock", "_marker", "_record", "table")

    def __init__(self, table: str = DEFAULT_TABLE) -> None:
        t = self.table = check_table(table)
        self._get = f"SELECT kind, user_id, expires, meta, data FROM {t} WHERE key = %s"
        self._live_lock = (
            f"SELECT meta, data, activity FROM {t} WHERE key = %s AND kind = 0 FOR UPDATE"
        )
        # Writing a record keeps the trail already at the key unless one is given (the memory
        # store's semantics: inserting over a live record keeps its trail; rotation brings its own).
        self._record = f"""
            INSERT INTO {t} (key, kind, user_id, created_at, expires, meta, data, activity)
            VALUES (%s, 0, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (key) DO UPDATE SET
                kind = 0, user_id = excluded.user_id, created_at = excluded.created_at,
                expires = excluded.expires, meta = excluded.meta, data = excluded.data,
                activity = coalesce(excluded.activity, {t}.activity)"""
        self._marker = f"""
            INSERT INTO {t} (key, kind, user_id, created_at, expires, meta, data, activity)
            VALUES (%s, %s, %s, NULL, %s, %s, NULL, NULL)
            ON CONFLICT (key) DO UPDATE SET
                kind = excluded.kind, user_id = excluded.user_id, created_at = NULL,
                expires = excluded.expires, meta = excluded.meta, data = NULL, activity = NULL"""

    # -- steps ---------------------------------------------------------------------------------
    def _lock_user(self, user_id: str) -> Step:
        return Step("SELECT pg_advisory_xact_lock(%s)", (lock_id(self.table, user_id),))

    def _put_record(
        self, key: str, meta: dict[str, Any], data: dict[str, Any], activity: str | None
    ) -> Step:
        return Step(
            self._record,
            (
                key,
                meta["user_id"],
                meta["created_at"],
                meta["expires_at"],
                dumps(meta),
                dumps(data),
                activity,
            ),
            COUNT,
        )

    def _put_marker(self, key: str, marker: Alias | Tombstone) -> Step:
        kind, meta = _marker_meta(marker)
        return Step(self._marker, (key, kind, marker.user_id, marker.until, meta), COUNT)

    def _enforce_cap(
        self, key: str, meta: dict[str, Any], cap: int, until: float, on_limit: CapAction
    ) -> Op[Ended]:
        """Hold the user of the record just written at ``key`` to ``cap`` (see
        :func:`~.base.over_cap`): evict (the evicted keys and lineages, oldest first), or raise
        :class:`~.base.SessionLimitReached` (the transaction is then rolled back). The caller
        holds the user's advisory lock."""
        user_id = meta["user_id"]
        if user_id is None or cap <= 0:
            return {}
        at = meta["last_seen"]
        rows = yield Step(
            f"SELECT created_at, coalesce((meta::jsonb->>'last_seen')::float8, created_at), key"
            f" FROM {self.table} WHERE user_id = %s AND kind = 0 AND (expires > %s OR key = %s)",
            (user_id, at, key),
            ALL,
        )
        live = [(float(c), float(seen), str(k)) for c, seen, k in rows]
        evicted = over_cap(live, cap, key, on_limit, user_id)
        if not evicted:
            return {}
        ended = yield from self._bury("key = ANY(%s)", (evicted,), "evicted", at, until)
        return {k: ended[k] for k in evicted}

    def _bury(
        self, where: str, params: tuple[Any, ...], reason: str, at: float, until: float
    ) -> Op[Ended]:
        """Tombstone the records ``where`` selects in one statement, each tombstone keeping
        its record's lineage (the ``lineage`` flag of the row's old meta; its key for a record
        written before lineages); returns their keys and lineages, ordered by key."""
        rows = yield Step(
            f"UPDATE {self.table} SET kind = 2, created_at = NULL, expires = %s,"
            f" meta = (%s::jsonb || jsonb_build_object('lineage', {_LINEAGE}))::text,"
            f" data = NULL, activity = NULL WHERE {where}"
            " RETURNING key, meta::jsonb->>'lineage'",
            (until, dumps({"reason": reason, "at": at}), *params),
            ALL,
        )
        return {str(k): str(lineage) for k, lineage in sorted(rows)}

    # -- reads ---------------------------------------------------------------------------------
    def get(self, key: str) -> Op[Lookup]:
        row = yield Step(self._get, (key,))
        return None if row is None else decode(key, row)

    def is_live(self, key: str) -> Op[bool]:
        row = yield Step(f"SELECT kind FROM {self.table} WHERE key = %s", (key,))
        return row is not None and row[0] == _RECORD

    def user_sessions(self, user_id: str) -> Op[list[SessionRecord]]:
        rows = yield Step(
            f"SELECT key, kind, user_id, expires, meta, data FROM {self.table}"
            " WHERE user_id = %s AND kind = 0",
            (user_id,),
            ALL,
        )
        found = [decode(str(row[0]), row[1:]) for row in rows]
        records = [r for r in found if isinstance(r, SessionRecord)]
        return sorted(records, key=lambda r: (r.created_at, r.key))

    def all_sessions(
        self, after: str | None, limit: int
    ) -> Op[tuple[list[SessionRecord], str | None]]:
        """Keyset pagination on the primary key: the cursor is the last key listed."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        where = "kind = 0 AND user_id IS NOT NULL"
        params: tuple[Any, ...] = (limit + 1,)
        if after is not None:
            where, params = f"key > %s AND {where}", (after, limit + 1)
        rows = yield Step(
            f"SELECT key, kind, user_id, expires, meta, data FROM {self.table}"
            f" WHERE {where} ORDER BY key LIMIT %s",
            params,
            ALL,
        )
        found = [decode(str(row[0]), row[1:]) for row in rows[:limit]]
        page = [r for r in found if isinstance(r, SessionRecord)]
        return page, (str(rows[limit - 1][0]) if len(rows) > limit else None)

    def activity(self, key: str) -> Op[list[dict[str, JSON]]]:
        row = yield Step(f"SELECT activity FROM {self.table} WHERE key = %s", (key,))
        if row is None or not row[0]:
            return []
        trail: list[dict[str, JSON]] = loads(row[0])
        return trail

    def stats(self, now: float) -> Op[StoreStats]:
        row = yield Step(
            "SELECT count(*) FILTER (WHERE kind = 0),"
            " count(DISTINCT user_id) FILTER (WHERE kind = 0),"
            " count(*) FILTER (WHERE kind = 2), count(*) FILTER (WHERE kind = 1)"
            f" FROM {self.table} WHERE expires > %s",
            (now,),
        )
        return StoreStats(
            live_sessions=int(row[0]), users=int(row[1]), tombstones=int(row[2]),
            aliases=int(row[3]),
        )  # fmt: skip

    # -- writes (each runs in one transaction) -------------------------------------------------
    def insert(
        self, record: SessionRecord, cap: int, until: float, on_limit: CapAction
    ) -> Op[Ended]:
        meta: dict[str, Any] = record.meta()
        if record.user_id is not None and cap > 0:
            yield self._lock_user(record.user_id)
        yield self._put_record(record.key, meta, record.data, None)
        return (yield from self._enforce_cap(record.key, meta, cap, until, on_limit))

    def rotate(
        self,
        old_key: str,
        new_key: str,
        update: RecordUpdate,
        old_becomes: Alias | Tombstone,
        cap: int,
        until: float,
        activity_max: int,
        on_limit: CapAction,
    ) -> Op[Ended | None]:
        user: JSON = None
        if cap > 0:
            # The user the new record will belong to, to lock before any row (see the class
            # docstring); read without a lock, checked again once the row is locked.
            row = yield Step(
                f"SELECT user_id FROM {self.table} WHERE key = %s AND kind = 0", (old_key,)
            )
            if row is None:
                return None
            user = update.meta["user_id"] if "user_id" in update.meta else row[0]
            if isinstance(user, str):
                yield self._lock_user(user)
        row = yield Step(self._live_lock, (old_key,))
        if row is None:
            return None  # revoked, rotated out, or gone meanwhile: nothing is written
        meta: dict[str, Any] = loads(row[0])
        data: dict[str, Any] = loads(row[1]) if row[1] else {}
        merge_stored(meta, data, update)
        if cap > 0 and meta["user_id"] is not None and meta["user_id"] != user:
            yield self._lock_user(meta["user_id"])  # its owner changed in between (rare)
        trail_text: str | None = row[2]
        if update.activity is not None and activity_max > 0:
            if trail_text is None:
                # No trail to carry over: the one already at new_key (if any) is kept.
                found = yield Step(f"SELECT activity FROM {self.table} WHERE key = %s", (new_key,))
                trail_text = found[0] if found else None
            trail_text = appended_trail(trail_text, update.activity, activity_max)
        yield self._put_marker(old_key, old_becomes)
        yield self._put_record(new_key, meta, data, trail_text)
        return (yield from self._enforce_cap(new_key, meta, cap, until, on_limit))

    def update(self, key: str, update: RecordUpdate, activity_max: int) -> Op[bool]:
        row = yield Step(self._live_lock, (key,))
        if row is None:
            return False  # revoked, rotated out, or gone: never written back to life
        meta: dict[str, Any] = loads(row[0])
        data: dict[str, Any] = loads(row[1]) if row[1] else {}
        merge_stored(meta, data, update)
        trail_text: str | None = row[2]
        if update.activity is not None and activity_max > 0:
            trail_text = appended_trail(trail_text, update.activity, activity_max)
        yield Step(
            f"UPDATE {self.table} SET user_id = %s, created_at = %s, expires = %s, meta = %s,"
            " data = %s, activity = %s WHERE key = %s",
            (
                meta["user_id"],
                meta["created_at"],
                meta["expires_at"],
                dumps(meta),
                dumps(data),
                trail_text,
                key,
            ),
            COUNT,
        )
        return True

    def revoke(self, key: str, tombstone: Tombstone) -> Op[bool]:
        kind, meta = _marker_meta(tombstone)
        changed = yield Step(
            f"UPDATE {self.table} SET kind = %s, user_id = %s, created_at = NULL, expires = %s,"
            " meta = %s, data = NULL, activity = NULL WHERE key = %s AND kind IN (0, 1)",
            (kind, tombstone.user_id, tombstone.until, meta, key),
            COUNT,
        )
        return bool(changed)

    def delete(self, key: str) -> Op[None]:
        yield Step(f"DELETE FROM {self.table} WHERE key = %s", (key,), COUNT)

    def revoke_user(
        self, user_id: str, reason: str, at: float, until: float, keep: str | None
    ) -> Op[Ended]:
        yield self._lock_user(user_id)
        where = "user_id = %s AND kind = 0 AND key IS DISTINCT FROM %s"
        return (yield from self._bury(where, (user_id, keep), reason, at, until))

    def purge_batch(self, now: float, batch: int) -> Op[int]:
        """One batch of the purge. Rows another transaction holds locked (a request writing
        them right now) are skipped, not waited for: the next purge takes them."""
        count = yield Step(
            f"DELETE FROM {self.table} WHERE key IN (SELECT key FROM {self.table}"
            " WHERE expires <= %s LIMIT %s FOR UPDATE SKIP LOCKED)",
            (now, batch),
            COUNT,
        )
        return int(count)
