"""The narrow interface every store implements, once synchronously and once asynchronously.

A store persists records keyed by the keyed hash of a session ID and keeps a per-user index. It
holds no policy: deadlines, reasons and lifetimes arrive computed by the core. What it owes is
atomicity:

* ``update`` writes only the changed fields and only while the record is live, so a request that
  was in flight when the session was revoked can never write it back to life;
* ``rotate`` moves a live record to a new key, applying the request's changes to the *stored*
  data (not a stale copy), and turns the old key into an alias or a tombstone in one step;
* ``insert`` and ``rotate`` enforce the per-user cap in the same step that adds the session, so
  parallel logins can never exceed it: beyond the cap they evict the user's oldest session
  (``"evict-oldest"``) or the one whose last recorded activity is oldest (``"evict-lru"``), or
  they refuse the new session (``"reject"``: :class:`SessionLimitReached`, nothing written).
  Only live sessions count: an expired record (``expires_at`` at or before the new record's
  ``last_seen``, the time of the write) is not counted, nor is the session being rotated.

Any failure to reach the backing service is raised as :class:`StoreUnavailable`, which the
adapters turn into a 503 (fail closed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, TypeAlias, TypeVar, runtime_checkable

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

T = TypeVar("T")


class StoreUnavailable(Exception):
    """The store could not be reached or did not answer in time. Never carries secrets."""


#: What a store does when a new session would take its user past the cap (see the module).
CapAction = Literal["evict-oldest", "evict-lru", "reject"]
CAP_ACTIONS: Final[tuple[CapAction, ...]] = ("evict-oldest", "evict-lru", "reject")


class SessionLimitReached(Exception):
    """A sign-in refused because its user already has ``limit`` live sessions and the policy
    says ``on_session_limit="reject"``. Raised by the store's ``insert`` / ``rotate`` before
    anything is written: the user's sessions, and the session the sign-in came from, stay as
    they were. The adapters answer it with a 409 refusal (``error`` ``"session-limit"``)."""

    def __init__(self, user_id: str, limit: int) -> None:
        super().__init__(f"the user already has {limit} live sessions (the limit)")
        self.user_id = user_id
        self.limit = limit


#: What a write that ends sessions (the cap's evictions in ``insert`` and ``rotate``,
#: ``revoke_user``) returns: the key of each session it ended and that session's lineage
#: (:attr:`~sessionwarden.records.SessionRecord.lineage`, read from the record in the same atomic
#: step), in the order they were ended; so the core names each ended session in its event without
#: listing the user's sessions first. Each tombstone written keeps the same lineage.
Ended: TypeAlias = dict[str, str]


class WouldWait(Exception):
    """Raised by a write of a synchronous store under its ``without_waiting()`` (SQLite) when
    it would have to wait for another writer's lock; nothing was written. The caller runs the
    write again where waiting is harmless (:class:`InlineAsyncStore`: a worker thread)."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    live_sessions: int
    users: int
    tombstones: int
    aliases: int


class SessionStore(Protocol):
    """Synchronous store interface (WSGI, the CLI, tests)."""

    def get(self, key: str) -> Lookup:
        """The record, alias or tombstone at ``key`` (expired ones included), in one round trip.

        What it returns may be shared (a read cache hands the same record to every request)
        and is never changed by the caller: the core copies before it changes anything, and a
        session copies the lists and dicts it hands to the application."""
        ...

    def insert(
        self,
        record: SessionRecord,
        *,
        max_per_user: int,
        tombstone_until: float,
        on_limit: CapAction = "evict-oldest",
    ) -> Ended:
        """Add a new record. When it has a user and ``max_per_user`` > 0, hold that user to the
        cap in the same atomic step: evict sessions (``on_limit``: the oldest by
        ``created_at``, or the least recently active by ``last_seen``) so at most
        ``max_per_user`` remain, each evicted key becoming a tombstone with reason
        ``"evicted"`` that keeps the evicted record's lineage; or, with ``"reject"``, raise
        :class:`SessionLimitReached` without writing anything when ``max_per_user`` live
        sessions exist already. Returns the evicted keys and their lineages (:data:`Ended`)."""
        ...

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
        """Atomically: read the live record at ``old_key``, apply ``update``, store it at
        ``new_key`` (index updated), and replace ``old_key`` with ``old_becomes``. Enforces the
        per-user cap like :meth:`insert` (the new key is never evicted, and the record being
        moved does not count against the cap). Returns the evicted keys and their lineages
        (:data:`Ended`), or ``None`` when ``old_key`` is no longer a live record (nothing is
        written). ``old_becomes.key`` is ``old_key``. The activity
        trail moves to ``new_key``; ``update.activity`` is appended to it (bounded by
        ``activity_max``) like :meth:`update` does."""
        ...

    def update(self, key: str, update: RecordUpdate, *, activity_max: int = 0) -> bool:
        """Apply a partial update only if ``key`` is a live record. ``False`` when it is not."""
        ...

    def revoke(self, key: str, tombstone: Tombstone) -> bool:
        """Replace a live record or alias with ``tombstone`` and drop it from the user index.
        ``False`` when there was no live record or alias. The caller holds the session it ends,
        so ``tombstone.lineage`` already names it."""
        ...

    def delete(self, key: str) -> None:
        """Remove whatever is at ``key`` (an expired record, an old tombstone)."""
        ...

    def user_sessions(self, user_id: str) -> list[SessionRecord]:
        """The user's records (the core filters out expired ones), oldest first."""
        ...

    def all_sessions(
        self, after: str | None, limit: int
    ) -> tuple[list[SessionRecord], str | None]:
        """One page of every signed-in record (``user_id`` set; expired ones included, the
        core filters them), for the operator's ``sessions list --all``. ``after`` is the cursor
        the previous page returned (``None``: the first page); the result is the page and the
        cursor of the next one, ``None`` when there is none. Aliases, tombstones and anonymous
        records are never listed.

        Stores that can keep an order (memory, SQLite, PostgreSQL) list by key, at most
        ``limit`` per page, and the cursor is the last key listed: every record that stays
        signed in is listed exactly once. Redis walks its keys with SCAN: the cursor is SCAN's,
        a page may hold more or fewer than ``limit`` records (never none unless it is the last),
        and a record may be listed twice, so callers drop repeats."""
        ...

    def revoke_user(
        self, user_id: str, *, reason: str, at: float, until: float, keep: str | None = None
    ) -> Ended:
        """Tombstone every session of ``user_id`` except ``keep``, each tombstone keeping its
        record's lineage. Returns the revoked keys and their lineages (:data:`Ended`), ordered
        by key."""
        ...

    def activity(self, key: str) -> list[dict[str, JSON]]:
        """The session's activity trail, oldest first."""
        ...

    def purge(self, now: float, batch: int = 1000) -> int:
        """Delete records (``expires_at <= now``), aliases and tombstones (``until <= now``) in
        batches small enough never to stall a concurrent request. Returns how many went."""
        ...

    def stats(self, now: float) -> StoreStats: ...

    def close(self) -> None: ...


class AsyncSessionStore(Protocol):
    """The same interface for ASGI; see :class:`SessionStore` for the semantics."""

    async def get(self, key: str) -> Lookup: ...

    async def insert(
        self,
        record: SessionRecord,
        *,
        max_per_user: int,
        tombstone_until: float,
        on_limit: CapAction = "evict-oldest",
    ) -> Ended: ...

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
    ) -> Ended | None: ...

    async def update(self, key: str, update: RecordUpdate, *, activity_max: int = 0) -> bool: ...

    async def revoke(self, key: str, tombstone: Tombstone) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def user_sessions(self, user_id: str) -> list[SessionRecord]: ...

    async def all_sessions(
        self, after: str | None, limit: int
    ) -> tuple[list[SessionRecord], str | None]: ...

    async def revoke_user(
        self, user_id: str, *, reason: str, at: float, until: float, keep: str | None = None
    ) -> Ended: ...

    async def activity(self, key: str) -> list[dict[str, JSON]]: ...

    async def purge(self, now: float, batch: int = 1000) -> int: ...

    async def stats(self, now: float) -> StoreStats: ...

    async def close(self) -> None: ...


class InlineAsyncStore:
    """Runs a local synchronous store (memory, SQLite) for the event loop.

    Reads run inline: a SQLite read in WAL mode never waits for a writer and takes microseconds,
    far less than a hop to a thread pool. With ``offload_writes`` (SQLite), a write that would
    wait for a lock held elsewhere runs in a worker thread, so such a lock delays only the
    requests that write, never the whole event loop: a store with ``without_waiting()`` (see
    :meth:`~sessionwarden.stores.sqlite.SQLiteStore.without_waiting`) first tries the write
    inline and hands it to the thread only when it raises :class:`WouldWait`; any other store
    writes in the thread. A purge always runs in the thread (it pauses between batches).
    """

    __slots__ = ("_inline", "_offload", "sync")

    def __init__(self, sync: SessionStore, *, offload_writes: bool = False) -> None:
        self.sync = sync
        self._offload = offload_writes
        inline: Callable[[], AbstractContextManager[object]] | None
        inline = getattr(sync, "without_waiting", None)
        self._inline = inline if offload_writes else None

    async def _write(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if not self._offload:
            return fn(*args, **kwargs)
        if self._inline is not None:
            try:
                with self._inline():
                    return fn(*args, **kwargs)
            except WouldWait:
                pass  # nothing was written: the thread waits for the lock
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def get(self, key: str) -> Lookup:
        return self.sync.get(key)

    async def insert(
        self,
        record: SessionRecord,
        *,
        max_per_user: int,
        tombstone_until: float,
        on_limit: CapAction = "evict-oldest",
    ) -> Ended:
        return await self._write(
            self.sync.insert,
            record,
            max_per_user=max_per_user,
            tombstone_until=tombstone_until,
            on_limit=on_limit,
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
        return await self._write(
            self.sync.rotate,
            old_key,
            new_key,
            update,
            old_becomes=old_becomes,
            max_per_user=max_per_user,
            tombstone_until=tombstone_until,
            activity_max=activity_max,
            on_limit=on_limit,
        )

    async def update(self, key: str, update: RecordUpdate, *, activity_max: int = 0) -> bool:
        return await self._write(self.sync.update, key, update, activity_max=activity_max)

    async def revoke(self, key: str, tombstone: Tombstone) -> bool:
        return await self._write(self.sync.revoke, key, tombstone)

    async def delete(self, key: str) -> None:
        await self._write(self.sync.delete, key)

    async def user_sessions(self, user_id: str) -> list[SessionRecord]:
        return self.sync.user_sessions(user_id)

    async def all_sessions(
        self, after: str | None, limit: int
    ) -> tuple[list[SessionRecord], str | None]:
        return self.sync.all_sessions(after, limit)

    async def revoke_user(
        self, user_id: str, *, reason: str, at: float, until: float, keep: str | None = None
    ) -> Ended:
        return await self._write(
            self.sync.revoke_user, user_id, reason=reason, at=at, until=until, keep=keep
        )

    async def activity(self, key: str) -> list[dict[str, JSON]]:
        return self.sync.activity(key)

    async def purge(self, now: float, batch: int = 1000) -> int:
        if self._offload:
            return await asyncio.to_thread(self.sync.purge, now, batch)
        return self.sync.purge(now, batch)

    async def stats(self, now: float) -> StoreStats:
        return self.sync.stats(now)

    async def check(self) -> None:
        """The wrapped store's start-up check (``await store.check()``), when it has one."""
        check = getattr(self.sync, "check", None)
        if callable(check):
            check()

    async def close(self) -> None:
        self.sync.close()


@runtime_checkable
class Migratable(Protocol):
    """A store that can bring what an earlier version wrote to its current layout
    (``sessionwarden migrate``). Idempotent, safe while the store is in use; returns how many
    items changed (0 once done). A store without earlier layouts does not implement it."""

    def migrate(self, batch: int = 1000) -> int: ...


def migrate_store(store: object, batch: int = 1000) -> int:
    """Run ``store``'s :meth:`Migratable.migrate`; 0 for a store that has nothing to migrate."""
    return store.migrate(batch) if isinstance(store, Migratable) else 0


def oldest_over_cap(
    records: Sequence[tuple[float, str]], max_per_user: int, keep: str
) -> list[str]:
    """Keys to evict so that at most ``max_per_user`` sessions remain, oldest first, never
    ``keep`` (the session being added). ``records`` are ``(time, key)`` pairs of the user's
    live sessions, ``keep`` among them: the time is ``created_at`` (evict the oldest) or
    ``last_seen`` (evict the least recently active), ties broken by key."""
    if max_per_user <= 0 or len(records) <= max_per_user:
        return []
    candidates = sorted(r for r in records if r[1] != keep)
    return [key for _, key in candidates[: len(records) - max_per_user]]


def over_cap(
    records: Sequence[tuple[float, float, str]],
    max_per_user: int,
    keep: str,
    on_limit: CapAction,
    user_id: str,
) -> list[str]:
    """The cap's decision for a store that reads the user's live sessions itself: the keys to
    evict, or :class:`SessionLimitReached` raised (``"reject"``: ``max_per_user`` sessions
    besides ``keep`` exist already). ``records`` are ``(created_at, last_seen, key)`` of the
    user's live sessions, ``keep`` (the session being added) among them."""
    if max_per_user <= 0 or len(records) <= max_per_user:
        return []
    if on_limit == "reject":
        raise SessionLimitReached(user_id, max_per_user)
    lru = on_limit == "evict-lru"
    return oldest_over_cap([(r[1] if lru else r[0], r[2]) for r in records], max_per_user, keep)


_META_NAMES = frozenset(META_FIELDS)


def merge_stored(meta: dict[str, Any], data: dict[str, Any], update: RecordUpdate) -> None:
    """:meth:`SessionRecord.apply` on a record's stored form, its meta and data as decoded JSON
    (only the named fields change): for stores that keep a record as JSON columns."""
    for name, value in update.meta.items():
        if name not in _META_NAMES:
            raise ValueError(f"RecordUpdate.meta: unknown field {name!r}")
        meta[name] = value
    for name, value in update.set_data.items():
        data[name] = value
    for name in update.del_data:
        data.pop(name, None)


#: How a stored trail (a JSON array) starts, separates its entries and ends: one entry a line.
_TRAIL_OPEN, _TRAIL_SEP, _TRAIL_CLOSE = "[\n", ",\n", "\n]"


def appended_trail(trail_text: str | None, entry: dict[str, JSON], activity_max: int) -> str:
    """A JSON activity trail with ``entry`` appended, keeping the newest ``activity_max``.

    The trail is a JSON array written one entry a line (``[``, the entries separated by ``,``
    and a line break, ``]``): compact JSON has no line break of its own (one inside a string is
    escaped), so an append finds the entries by their line breaks and decodes none of them.
    A trail in another layout (an earlier version wrote the array on one line) is decoded once
    and written in this one."""
    if (
        trail_text
        and trail_text.startswith(_TRAIL_OPEN)
        and trail_text.endswith(_TRAIL_CLOSE)
        and len(trail_text) > len(_TRAIL_OPEN) + len(_TRAIL_CLOSE)
    ):
        lines = trail_text[len(_TRAIL_OPEN) : -len(_TRAIL_CLOSE)].split(_TRAIL_SEP)
    else:
        lines = [dumps(item) for item in loads(trail_text)] if trail_text else []
    lines.append(dumps(entry))
    return _TRAIL_OPEN + _TRAIL_SEP.join(lines[-activity_max:]) + _TRAIL_CLOSE
