"""Typed store operations: what the core asks of a store, as values.

Each operation is an :class:`Op` whose type parameter is its result; it knows how to apply
itself to a synchronous and to an asynchronous store. The core's rules are generators that
``yield from`` an operation and receive its result, typed::

    found = yield from Get(key)          # found: Lookup

so ``mypy --strict`` checks the name, the arguments and the result of every store call, and
the drivers (:mod:`sessionwarden.core.driver`) only execute them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import Any, Generic, TypeVar

from ..records import Alias, Lookup, RecordUpdate, SessionRecord, Tombstone
from ..stores.base import AsyncSessionStore, CapAction, Ended, SessionStore

T = TypeVar("T")

#: A core operation: yields store operations, receives their results, returns ``T``.
Steps = Generator["Op[Any]", Any, T]


class Op(Generic[T]):
    """One store call with its arguments; the result is a ``T``."""

    __slots__ = ()

    #: Whether the call may change the store (a successful write ends a write outage).
    writes = True

    def apply(self, store: SessionStore) -> T:
        raise NotImplementedError

    def apply_async(self, store: AsyncSessionStore) -> Awaitable[T]:
        raise NotImplementedError

    def __iter__(self) -> Generator[Op[Any], Any, T]:
        result: T = yield self
        return result


class Get(Op[Lookup]):
    """The record, alias or tombstone at ``key``."""

    __slots__ = ("key",)
    writes = False

    def __init__(self, key: str) -> None:
        self.key = key

    def apply(self, store: SessionStore) -> Lookup:
        return store.get(self.key)

    def apply_async(self, store: AsyncSessionStore) -> Awaitable[Lookup]:
        return store.get(self.key)


class Insert(Op[Ended]):
    """Add a new record under the per-user cap; the result is the evicted keys and their
    lineages (a refusal, ``on_limit="reject"``, raises
    :class:`~sessionwarden.stores.base.SessionLimitReached`)."""

    __slots__ = ("max_per_user", "on_limit", "record", "tombstone_until")

    def __init__(
        self,
        record: SessionRecord,
        *,
        max_per_user: int,
        tombstone_until: float,
        on_limit: CapAction = "evict-oldest",
    ):
        self.record = record
        self.max_per_user = max_per_user
        self.tombstone_until = tombstone_until
        self.on_limit: CapAction = on_limit

    def apply(self, store: SessionStore) -> Ended:
        return store.insert(
            self.record,
            max_per_user=self.max_per_user,
            tombstone_until=self.tombstone_until,
            on_limit=self.on_limit,
        )

    def apply_async(self, store: AsyncSessionStore) -> Awaitable[Ended]:
        return store.insert(
            self.record,
            max_per_user=self.max_per_user,
            tombstone_until=self.tombstone_until,
            on_limit=self.on_limit,
        )


class Rotate(Op["Ended | None"]):
    """Move a live record to a new key; the evicted keys and their lineages, or ``None`` when
    it is not live."""

    __slots__ = (
        "activity_max",
        "max_per_user",
        "new_key",
        "old_becomes",
        "old_key",
        "on_limit",
        "tombstone_until",
        "update",
    )

    def __init__(
        self,
        old_key: str,
        new_key: str,
        update: RecordUpdate,
        *,
        old_becomes: Alias | Tombstone,
        max_per_user: int,
        tombstone_until: float,
        activity_max: int,
        on_limit: CapAction = "evict-oldest",
    ) -> None:
        self.on_limit: CapAction = on_limit
        self.old_key = old_key
        self.new_key = new_key
        self.update = update
        self.old_becomes = old_becomes
        self.max_per_user = max_per_user
        self.tombstone_until = tombstone_until
        self.activity_max = activity_max

    def apply(self, store: SessionStore) -> Ended | None:
        return store.rotate(
            self.old_key,
            self.new_key,
            self.update,
            old_becomes=self.old_becomes,
            max_per_user=self.max_per_user,
            tombstone_until=self.tombstone_until,
            activity_max=self.activity_max,
            on_limit=self.on_limit,
        )

    def apply_async(self, store: AsyncSessionStore) -> Awaitable[Ended | None]:
        return store.rotate(
            self.old_key,
            self.new_key,
            self.update,
            old_becomes=self.old_becomes,
            max_per_user=self.max_per_user,
            tombstone_until=self.tombstone_until,
            activity_max=self.activity_max,
            on_limit=self.on_limit,
        )


class Update(Op[bool]):
    """Apply a partial update to a live record; ``False`` when it is not live."""

    __slots__ = ("activity_max", "key", "update")

    def __init__(self, key: str, update: RecordUpdate, *, activity_max: int = 0) -> None:
        self.key = key
        self.update = update
        self.activity_max = activity_max

    def apply(self, store: SessionStore) -> bool:
        return store.update(self.key, self.update, activity_max=self.activity_max)

    def apply_async(self, store: AsyncSessionStore) -> Awaitable[bool]:
        return store.update(self.key, self.update, activity_max=self.activity_max)


class Revoke(Op[bool]):
    """Replace a live record or alias with a tombstone; ``False`` when there was none."""

    __slots__ = ("key", "tombstone")

    def __init__(self, key: str, tombstone: Tombstone) -> None:
        self.key = key
        self.tombstone = tombstone

    def apply(self, store: SessionStore) -> bool:
        return store.revoke(self.key, self.tombstone)

    def apply_async(self, store: AsyncSessionStore) -> Awaitable[bool]:
        return store.revoke(self.key, self.tombstone)


class Delete(Op[None]):
    """Remove whatever is at ``key``."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def apply(self, store: SessionStore) -> None:
        store.delete(self.key)

    def apply_async(self, store: AsyncSessionStore) -> Awaitable[None]:
        return store.delete(self.key)


class UserSessions(Op[list[SessionRecord]]):
    """A user's records, oldest first."""

    __slots__ = ("user_id",)
    writes = False

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id

    def apply(self, store: SessionStore) -> list[SessionRecord]:
        return store.user_sessions(self.user_id)

    def apply_async(self, store: AsyncSessionStore) -> Awaitable[list[SessionRecord]]:
        return store.user_sessions(self.user_id)


class AllSessions(Op["tuple[list[SessionRecord], str | None]"]):
    """One page of every signed-in record and the cursor of the next page (``None``: done)."""

    __slots__ = ("after", "limit")
    writes = False

    def __init__(self, after: str | None, limit: int) -> None:
        self.after = after
        self.limit = limit

    def apply(self, store: SessionStore) -> tuple[list[SessionRecord], str | None]:
        return store.all_sessions(self.after, self.limit)

    def apply_async(
        self, store: AsyncSessionStore
    ) -> Awaitable[tuple[list[SessionRecord], str | None]]:
        return store.all_sessions(self.after, self.limit)


class RevokeUser(Op[Ended]):
    """Tombstone every session of a user but ``keep``; the result is the revoked keys and
    their lineages."""

    __slots__ = ("at", "keep", "reason", "until", "user_id")

    def __init__(
        self, user_id: str, *, reason: str, at: float, until: float, keep: str | None
    ) -> None:
        self.user_id = user_id
        self.reason = reason
        self.at = at
        self.until = until
        self.keep = keep

    def apply(self, store: SessionStore) -> Ended:
        return store.revoke_user(
            self.user_id, reason=self.reason, at=self.at, until=self.until, keep=self.keep
        )

    def apply_async(self, store: AsyncSessionStore) -> Awaitable[Ended]:
        return store.revoke_user(
            self.user_id, reason=self.reason, at=self.at, until=self.until, keep=self.keep
        )


class Purge(Op[int]):
    """Delete what expired before ``now``; the result is how many went."""

    __slots__ = ("batch", "now")

    def __init__(self, now: float, *, batch: int) -> None:
        self.now = now
        self.batch = batch

    def apply(self, store: SessionStore) -> int:
        return store.purge(self.now, self.batch)

    def apply_async(self, store: AsyncSessionStore) -> Awaitable[int]:
        return store.purge(self.now, self.batch)
