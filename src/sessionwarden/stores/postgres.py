"""PostgreSQL store (psycopg 3, pooled): sessions shared by processes on several hosts.

``PostgresStore`` (a :class:`psycopg_pool.ConnectionPool`, for WSGI, the CLI and tests) and
``AsyncPostgresStore`` (an :class:`psycopg_pool.AsyncConnectionPool`, for the ASGI middleware)
run the very same operations: each is written once, in
:mod:`sessionwarden.stores.postgres_ops`, as a generator of statements, and a runner executes it
on a pooled connection -- a read as a single statement, a write in one transaction.

Atomicity comes from the transaction and PostgreSQL's row locks: ``update`` and ``rotate`` lock
the live record before they read what they merge into, so a revoked session is never written
back, and a rotation's new record, the old key's alias or tombstone and the cap's evictions
commit together or not at all. The per-user cap is enforced under a transaction-scoped advisory
lock on the user (``pg_advisory_xact_lock``), taken before any row lock: parallel sign-ins of one
user are serialised, never exceed the cap, and cannot deadlock with one another. A deadlock or a
serialisation failure reported by the server all the same (another application's transaction
in the same database) is retried, up to three attempts.

The schema is created (or migrated) by an explicit step, :func:`init_schema`
(``sessionwarden store init --store postgresql://...``); a store whose table is missing fails
closed with a message saying so. ``check()`` verifies it at start-up.

Failures fail closed: no connection within ``timeout`` seconds (server down, unreachable, pool
exhausted), a statement running longer than ``timeout`` (``statement_timeout``, set on every
connection; it bounds lock waits too), a dropped connection, any server error: all raise
:class:`~sessionwarden.stores.base.StoreUnavailable` with a short message naming the condition,
never the URL, a statement or data. When a pooled connection turns out to have been dropped by
the server (a restart, an idle timeout), the pool's other idle connections are checked, the dead
ones replaced, and the operation tried once more if it had not yet asked to commit.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolClosed, PoolTimeout

from ..records import JSON, Alias, Lookup, RecordUpdate, SessionRecord, Tombstone
from .base import CapAction, Ended, StoreStats, StoreUnavailable
from .postgres_ops import (
    ALL,
    COUNT,
    DEFAULT_TABLE,
    SCHEMA_VERSION,
    Op,
    Ops,
    Step,
    check_table,
    lock_id,
    schema_statements,
)

__all__ = [
    "DEFAULT_TABLE",
    "SCHEMA_VERSION",
    "AsyncPostgresStore",
    "PostgresStore",
    "init_schema",
]

T = TypeVar("T")

#: Default seconds to wait for a connection, and for any one statement.
DEFAULT_TIMEOUT: Final = 2.0
_ATTEMPTS: Final = 3
# Purge: at most this many rows per transaction, and this pause between transactions.
_PURGE_MAX_BATCH: Final = 500
_PURGE_PAUSE: Final = 0.002
_RETRY: Final = (errors.DeadlockDetected, errors.SerializationFailure)
_NAME: Final = "PostgreSQL session store"
_NO_CONNECTION: Final = (
    f"{_NAME}: cannot connect (server down or unreachable, login refused, or no such database"
    " or role)"
)


def _condition(exc: BaseException) -> str:
    if isinstance(exc, PoolTimeout):
        return "no connection within the timeout (server unreachable, or pool exhausted)"
    if isinstance(exc, PoolClosed):
        return "store is closed"
    if isinstance(exc, errors.UndefinedTable):
        return "schema missing: run `sessionwarden store init --store URL`"
    if isinstance(exc, errors.QueryCanceled):
        return "statement timed out"
    if isinstance(exc, psycopg.OperationalError):
        return "server unreachable or connection lost"
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str) and state.isalnum() and len(state) == 5:
        return f"database error (SQLSTATE {state})"
    return "database error"


def _unavailable(exc: BaseException) -> StoreUnavailable:
    # The message names the condition; nothing of the URL, the statement or the data travels.
    return StoreUnavailable(f"{_NAME}: {_condition(exc)}")


def conninfo(url: str, timeout: float) -> str:
    """``url`` (a libpq URI or key=value string) with this store's connection settings added
    where the URL does not set them: a connect timeout and, per statement, ``timeout``."""
    try:
        params: dict[str, Any] = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ValueError("store URL: not a valid PostgreSQL connection URL") from None
    params.setdefault("connect_timeout", str(max(2, math.ceil(timeout))))
    params.setdefault("options", f"-c statement_timeout={max(1, round(timeout * 1000))}")
    params.setdefault("application_name", "sessionwarden")
    return make_conninfo("", **params)


@dataclass(slots=True)
class _Attempt:
    """How far one attempt got: whether it had a connection, and had asked to commit."""

    conn: Any = None
    committing: bool = False


def _again(exc: psycopg.Error, attempt: _Attempt, number: int) -> bool:
    """Whether an operation that failed with ``exc`` is tried once more."""
    if isinstance(exc, _RETRY):
        return number < _ATTEMPTS
    return (
        number == 1
        and isinstance(exc, psycopg.OperationalError)
        and attempt.conn is not None
        and bool(attempt.conn.broken)
        and not attempt.committing
    )


# -- synchronous -------------------------------------------------------------------------------


def _drive(cursor: psycopg.Cursor[Any], op: Op[T]) -> T:
    step = next(op)
    while True:
        cursor.execute(step.sql, step.params)
        if step.result == ALL:
            fetched: Any = cursor.fetchall()
        elif step.result == COUNT:
            fetched = cursor.rowcount
        else:
            fetched = cursor.fetchone()
        try:
            step = op.send(fetched)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


class PostgresStore:
    """Synchronous PostgreSQL store on a connection pool (threads share it)."""

    def __init__(
        self,
        url: str,
        *,
        table: str = DEFAULT_TABLE,
        timeout: float = DEFAULT_TIMEOUT,
        pool_min: int = 1,
        pool_max: int = 10,
    ) -> None:
        self._ops = Ops(table)
        self._conninfo = conninfo(url, timeout)
        self._pool = ConnectionPool(
            self._conninfo,
            kwargs={"autocommit": True},
            min_size=pool_min,
            max_size=pool_max,
            timeout=timeout,
            open=False,
            name="sessionwarden",
        )
        self._pool.open(wait=False)

    @property
    def table(self) -> str:
        return self._ops.table

    def _attempt(self, op: Op[T], write: bool, attempt: _Attempt) -> T:
        with self._pool.connection() as conn:
            attempt.conn = conn
            cursor = conn.cursor()
            if not write:
                return _drive(cursor, op)
            with conn.transaction():
                result = _drive(cursor, op)
                attempt.committing = True
            return result

    def _run(self, make: Callable[[], Op[T]], *, write: bool = False) -> T:
        number = 0
        while True:
            number += 1
            attempt = _Attempt()
            try:
                return self._attempt(make(), write, attempt)
            except psycopg.Error as exc:
                if not _again(exc, attempt, number):
                    raise _unavailable(exc) from None
            if attempt.conn is not None and attempt.conn.broken:
                self._checked()  # the server dropped it: the others are likely gone too

    def _checked(self) -> None:
        """Drop the pool's idle connections the server has closed."""
        try:
            self._pool.check()
        except psycopg.Error as exc:
            raise _unavailable(exc) from None

    def check(self) -> None:
        """Raise :class:`StoreUnavailable` unless the server answers and the schema is there.

        One connection of its own first: a refused connection or a failed login is then named
        at once, where the pool would only log it and wait out its timeout."""
        try:
            psycopg.connect(self._conninfo, autocommit=True).close()
        except psycopg.Error:
            raise StoreUnavailable(_NO_CONNECTION) from None
        _check_version(self._run(lambda: _version(self._ops.table)))

    def get(self, key: str) -> Lookup:
        return self._run(lambda: self._ops.get(key))

    def insert(
        self,
        record: SessionRecord,
        *,
        max_per_user: int,
        tombstone_until: float,
        on_limit: CapAction = "evict-oldest",
    ) -> Ended:
        return self._run(
            lambda: self._ops.insert(record, max_per_user, tombstone_until, on_limit), write=True
        )

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
        return self._run(
            lambda: self._ops.rotate(
                old_key,
                new_key,
                update,
                old_becomes,
                max_per_user,
                tombstone_until,
                activity_max,
                on_limit,
            ),
            write=True,
        )

    def update(self, key: str, update: RecordUpdate, *, activity_max: int = 0) -> bool:
        if not (update.meta or update.set_data or update.del_data) and not (
            update.activity is not None and activity_max > 0
        ):
            return self._run(lambda: self._ops.is_live(key))
        return self._run(lambda: self._ops.update(key, update, activity_max), write=True)

    def revoke(self, key: str, tombstone: Tombstone) -> bool:
        return self._run(lambda: self._ops.revoke(key, tombstone), write=True)

    def delete(self, key: str) -> None:
        self._run(lambda: self._ops.delete(key), write=True)

    def user_sessions(self, user_id: str) -> list[SessionRecord]:
        return self._run(lambda: self._ops.user_sessions(user_id))

    def all_sessions(
        self, after: str | None, limit: int
    ) -> tuple[list[SessionRecord], str | None]:
        return self._run(lambda: self._ops.all_sessions(after, limit))

    def revoke_user(
        self, user_id: str, *, reason: str, at: float, until: float, keep: str | None = None
    ) -> Ended:
        return self._run(
            lambda: self._ops.revoke_user(user_id, reason, at, until, keep), write=True
        )

    def activity(self, key: str) -> list[dict[str, JSON]]:
        return self._run(lambda: self._ops.activity(key))

    def purge(self, now: float, batch: int = 1000) -> int:
        """Delete what expired by ``now`` in transactions of at most ``batch`` rows (and never
        more than 500), pausing between them; rows a request holds locked are left for the next
        purge. A concurrent request waits for one small batch at most."""
        if batch < 1:
            raise ValueError("batch must be >= 1")
        step = min(batch, _PURGE_MAX_BATCH)
        removed = 0
        while True:
            count = self._run(lambda: self._ops.purge_batch(now, step), write=True)
            removed += count
            if count < step:
                return removed
            self._pause()

    def _pause(self) -> None:
        time.sleep(_PURGE_PAUSE)

    def stats(self, now: float) -> StoreStats:
        return self._run(lambda: self._ops.stats(now))

    def close(self) -> None:
        self._pool.close()


# -- asynchronous ------------------------------------------------------------------------------


async def _adrive(cursor: psycopg.AsyncCursor[Any], op: Op[T]) -> T:
    step = next(op)
    while True:
        await cursor.execute(step.sql, step.params)
        if step.result == ALL:
            fetched: Any = await cursor.fetchall()
        elif step.result == COUNT:
            fetched = cursor.rowcount
        else:
            fetched = await cursor.fetchone()
        try:
            step = op.send(fetched)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


class AsyncPostgresStore:
    """Asynchronous PostgreSQL store on an :class:`~psycopg_pool.AsyncConnectionPool`.

    The pool is opened on first use, inside the running event loop (a pool belongs to the loop
    it was opened in); a store used from another event loop opens a pool of its own there.
    """

    def __init__(
        self,
        url: str,
        *,
        table: str = DEFAULT_TABLE,
        timeout: float = DEFAULT_TIMEOUT,
        pool_min: int = 1,
        pool_max: int = 10,
    ) -> None:
        self._ops = Ops(table)
        self._conninfo = conninfo(url, timeout)
        self._timeout = timeout
        self._sizes = (pool_min, pool_max)
        self._pools: dict[asyncio.AbstractEventLoop, asyncio.Task[AsyncConnectionPool]] = {}
        self._closed = False

    @property
    def table(self) -> str:
        return self._ops.table

    async def _open_pool(self) -> AsyncConnectionPool:
        pool: AsyncConnectionPool = AsyncConnectionPool(
            self._conninfo,
            kwargs={"autocommit": True},
            min_size=self._sizes[0],
            max_size=self._sizes[1],
            timeout=self._timeout,
            open=False,
            name="sessionwarden",
        )
        await pool.open(wait=False)
        return pool

    async def _pool(self) -> AsyncConnectionPool:
        if self._closed:
            raise StoreUnavailable(f"{_NAME}: store is closed")
        loop = asyncio.get_running_loop()
        task = self._pools.get(loop)
        if task is None:
            for other in [k for k in self._pools if k.is_closed()]:
                del self._pools[other]  # a finished loop's pool went with it
            task = self._pools[loop] = loop.create_task(self._open_pool())
        return await asyncio.shield(task)

    async def _attempt(self, op: Op[T], write: bool, attempt: _Attempt) -> T:
        pool = await self._pool()
        async with pool.connection() as conn:
            attempt.conn = conn
            cursor = conn.cursor()
            if not write:
                return await _adrive(cursor, op)
            async with conn.transaction():
                result = await _adrive(cursor, op)
                attempt.committing = True
            return result

    async def _run(self, make: Callable[[], Op[T]], *, write: bool = False) -> T:
        number = 0
        while True:
            number += 1
            attempt = _Attempt()
            try:
                return await self._attempt(make(), write, attempt)
            except psycopg.Error as exc:
                if not _again(exc, attempt, number):
                    raise _unavailable(exc) from None
            if attempt.conn is not None and attempt.conn.broken:
                await self._checked()  # the server dropped it: the others are likely gone too

    async def _checked(self) -> None:
        """Drop the pool's idle connections the server has closed."""
        try:
            await (await self._pool()).check()
        except psycopg.Error as exc:
            raise _unavailable(exc) from None

    async def check(self) -> None:
        """As :meth:`PostgresStore.check`, for the event loop."""
        try:
            await (await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)).close()
        except psycopg.Error:
            raise StoreUnavailable(_NO_CONNECTION) from None
        _check_version(await self._run(lambda: _version(self._ops.table)))

    async def get(self, key: str) -> Lookup:
        return await self._run(lambda: self._ops.get(key))

    async def insert(
        self,
        record: SessionRecord,
        *,
        max_per_user: int,
        tombstone_until: float,
        on_limit: CapAction = "evict-oldest",
    ) -> Ended:
        return await self._run(
            lambda: self._ops.insert(record, max_per_user, tombstone_until, on_limit), write=True
        )

    async def rotate(
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
        return await self._run(
            lambda: self._ops.rotate(
                old_key,
                new_key,
                update,
                old_becomes,
                max_per_user,
                tombstone_until,
                activity_max,
                on_limit,
            ),
            write=True,
        )

    async def update(self, key: str, update: RecordUpdate, *, activity_max: int = 0) -> bool:
        if not (update.meta or update.set_data or update.del_data) and not (
            update.activity is not None and activity_max > 0
        ):
            return await self._run(lambda: self._ops.is_live(key))
        return await self._run(lambda: self._ops.update(key, update, activity_max), write=True)

    async def revoke(self, key: str, tombstone: Tombstone) -> bool:
        return await self._run(lambda: self._ops.revoke(key, tombstone), write=True)

    async def delete(self, key: str) -> None:
        await self._run(lambda: self._ops.delete(key), write=True)

    async def user_sessions(self, user_id: str) -> list[SessionRecord]:
        return await self._run(lambda: self._ops.user_sessions(user_id))

    async def all_sessions(
        self, after: str | None, limit: int
    ) -> tuple[list[SessionRecord], str | None]:
        return await self._run(lambda: self._ops.all_sessions(after, limit))

    async def revoke_user(
        self, user_id: str, *, reason: str, at: float, until: float, keep: str | None = None
    ) -> Ended:
        return await self._run(
            lambda: self._ops.revoke_user(user_id, reason, at, until, keep), write=True
        )

    async def activity(self, key: str) -> list[dict[str, JSON]]:
        return await self._run(lambda: self._ops.activity(key))

    async def purge(self, now: float, batch: int = 1000) -> int:
        """See :meth:`PostgresStore.purge`."""
        if batch < 1:
            raise ValueError("batch must be >= 1")
        step = min(batch, _PURGE_MAX_BATCH)
        removed = 0
        while True:
            count = await self._run(lambda: self._ops.purge_batch(now, step), write=True)
            removed += count
            if count < step:
                return removed
            await asyncio.sleep(_PURGE_PAUSE)

    async def stats(self, now: float) -> StoreStats:
        return await self._run(lambda: self._ops.stats(now))

    async def close(self) -> None:
        """Close the pool of the running loop (pools of loops that have ended went with them)."""
        self._closed = True
        pools, self._pools = self._pools, {}
        loop = asyncio.get_running_loop()
        task = pools.get(loop)
        if task is None:
            return
        try:
            pool = await task
        except Exception:  # the pool never opened: nothing to close
            return
        await pool.close()


# -- the schema --------------------------------------------------------------------------------


def _version(table: str) -> Op[int | None]:
    row = yield Step(f"SELECT max(version) FROM {check_table(table)}_schema", ())
    return None if row is None or row[0] is None else int(row[0])


def _check_version(version: int | None) -> None:
    if version != SCHEMA_VERSION:
        raise StoreUnavailable(
            f"{_NAME}: schema version {version} (expected {SCHEMA_VERSION}):"
            " run `sessionwarden store init --store URL`"
        )


def init_schema(
    url: str, *, table: str = DEFAULT_TABLE, timeout: float = 10.0
) -> tuple[int | None, int]:
    """Create the store's tables in the database ``url`` names, or migrate them to the current
    layout; safe to run again and from several processes at once (it takes an advisory lock).

    Returns ``(version before, version after)``: ``(None, 1)`` when it created them, ``(1, 1)``
    when they were current. Raises :class:`StoreUnavailable` when the server cannot be reached
    or holds a newer layout than this version knows.
    """
    check_table(table)
    try:
        conn = psycopg.connect(conninfo(url, timeout), autocommit=True)
    except psycopg.Error:
        raise StoreUnavailable(_NO_CONNECTION) from None
    try:
        with conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id("schema", table),))
            found = conn.execute("SELECT to_regclass(%s)", (f"{table}_schema",)).fetchone()
            before = None
            if found is not None and found[0] is not None:
                row = conn.execute(f"SELECT max(version) FROM {table}_schema").fetchone()
                before = None if row is None or row[0] is None else int(row[0])
            if before is not None and before > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"{_NAME}: the database holds schema version {before}, newer than this"
                    f" version's {SCHEMA_VERSION}"
                )
            for statement in schema_statements(table):
                conn.execute(statement)
            if before is None:
                conn.execute(f"INSERT INTO {table}_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
    except psycopg.Error as exc:
        raise _unavailable(exc) from None
    return before, SCHEMA_VERSION
