"""In-process store: the reference semantics of the store interface, for tests and one-process
development servers. Everything is lost when the process ends."""

from __future__ import annotations

import threading
from collections import deque

from ..records import JSON, Alias, Lookup, RecordUpdate, SessionRecord, Tombstone
from .base import CapAction, Ended, StoreStats, over_cap


class MemoryStore:
    """A record is copied on the way in, handed out shared by ``get``, and never changed in
    place: a write stores a new one (:meth:`SessionRecord.updated`, sharing what it did not
    change). Reads therefore take no lock."""

    def __init__(self) -> None:
        self._items: dict[str, SessionRecord | Alias | Tombstone] = {}
        self._users: dict[str, set[str]] = {}
        self._activity: dict[str, deque[dict[str, JSON]]] = {}
        self._lock = threading.Lock()

    # -- helpers (called with the lock held) -----------------------------------------------
    def _index_add(self, record: SessionRecord) -> None:
        if record.user_id is not None:
            self._users.setdefault(record.user_id, set()).add(record.key)

    def _index_drop(self, key: str, user_id: str | None) -> None:
        if user_id is None:
            return
        keys = self._users.get(user_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._users[user_id]

    def _over_cap(
        self, record: SessionRecord, cap: int, on_limit: CapAction, moved: str
    ) -> list[str]:
        """The cap's decision before ``record`` is written (``moved``: the key it moves from,
        not counted): the keys to evict, or :class:`SessionLimitReached` raised."""
        user = record.user_id
        if user is None or cap <= 0:
            return []
        now = record.last_seen
        live = [
            (item.created_at, item.last_seen, k)
            for k in self._users.get(user, ())
            if k not in (moved, record.key)
            and isinstance(item := self._items.get(k), SessionRecord)
            and item.expires_at > now
        ]
        live.append((record.created_at, record.last_seen, record.key))
        return over_cap(live, cap, record.key, on_limit, user)

    def _evict(self, keys: list[str], record: SessionRecord, until: float) -> Ended:
        return self._bury(keys, "evicted", record.last_seen, until, record.user_id)

    def _bury(
        self, keys: list[str], reason: str, at: float, until: float, user_id: str | None
    ) -> Ended:
        """Tombstone the user's records at ``keys``, each keeping its record's lineage."""
        ended: Ended = {}
        for k in keys:
            item = self._items.get(k)
            lineage = item.lineage if isinstance(item, SessionRecord) else ""
            self._items[k] = Tombstone(k, reason, at, until, user_id, lineage)
            self._activity.pop(k, None)
            self._index_drop(k, user_id)
            ended[k] = lineage
        return ended

    def _append_activity(self, key: str, update: RecordUpdate, activity_max: int) -> None:
        if update.activity is None or activity_max <= 0:
            return
        trail = self._activity.get(key)
        if trail is None or trail.maxlen != activity_max:
            trail = deque(trail or (), maxlen=activity_max)
            self._activity[key] = trail
        trail.append(dict(update.activity))

    # -- interface -------------------------------------------------------------------------
    def check(self) -> None:
        """A start-up check: a memory store is always usable."""

    def get(self, key: str) -> Lookup:
        return self._items.get(key)  # shared: writes replace it, nobody changes it

    def insert(
        self,
        record: SessionRecord,
        *,
        max_per_user: int,
        tombstone_until: float,
        on_limit: CapAction = "evict-oldest",
    ) -> Ended:
        with self._lock:
            victims = self._over_cap(record, max_per_user, on_limit, record.key)
            previous = self._items.get(record.key)
            if isinstance(previous, SessionRecord):
                self._index_drop(record.key, previous.user_id)
            self._items[record.key] = record.copy()
            self._index_add(record)
            return self._evict(victims, record, tombstone_until)

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
        with self._lock:
            old = self._items.get(old_key)
            if not isinstance(old, SessionRecord):
                return None
            new = old.updated(update)
            new.key = new_key
            victims = self._over_cap(new, max_per_user, on_limit, old_key)
            self._index_drop(old_key, old.user_id)
            overwritten = self._items.get(new_key)
            if isinstance(overwritten, SessionRecord):
                self._index_drop(new_key, overwritten.user_id)
            self._items[old_key] = old_becomes
            self._items[new_key] = new
            trail = self._activity.pop(old_key, None)
            if trail is not None:
                self._activity[new_key] = trail
            self._append_activity(new_key, update, activity_max)
            self._index_add(new)
            return self._evict(victims, new, tombstone_until)

    def update(self, key: str, update: RecordUpdate, *, activity_max: int = 0) -> bool:
        with self._lock:
            record = self._items.get(key)
            if not isinstance(record, SessionRecord):
                return False
            new = record.updated(update)
            self._items[key] = new
            if new.user_id != record.user_id:
                self._index_drop(key, record.user_id)
                self._index_add(new)
            self._append_activity(key, update, activity_max)
            return True

    def revoke(self, key: str, tombstone: Tombstone) -> bool:
        with self._lock:
            item = self._items.get(key)
            if not isinstance(item, SessionRecord | Alias):
                return False
            self._items[key] = tombstone
            self._activity.pop(key, None)
            if isinstance(item, SessionRecord):
                self._index_drop(key, item.user_id)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            item = self._items.pop(key, None)
            self._activity.pop(key, None)
            if isinstance(item, SessionRecord):
                self._index_drop(key, item.user_id)

    def user_sessions(self, user_id: str) -> list[SessionRecord]:
        with self._lock:
            found = [
                item.copy()
                for k in self._users.get(user_id, ())
                if isinstance(item := self._items.get(k), SessionRecord)
            ]
        return sorted(found, key=lambda r: (r.created_at, r.key))

    def all_sessions(
        self, after: str | None, limit: int
    ) -> tuple[list[SessionRecord], str | None]:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        with self._lock:
            keys = sorted(
                k for ks in self._users.values() for k in ks if after is None or k > after
            )
            page = [
                item.copy()
                for k in keys[:limit]
                if isinstance(item := self._items.get(k), SessionRecord)
            ]
        return page, (keys[limit - 1] if len(keys) > limit else None)

    def revoke_user(
        self, user_id: str, *, reason: str, at: float, until: float, keep: str | None = None
    ) -> Ended:
        with self._lock:
            keys = sorted(k for k in self._users.get(user_id, ()) if k != keep)
            return self._bury(keys, reason, at, until, user_id)

    def activity(self, key: str) -> list[dict[str, JSON]]:
        with self._lock:
            return [dict(e) for e in self._activity.get(key, ())]

    def purge(self, now: float, batch: int = 1000) -> int:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        removed = 0
        while True:
            with self._lock:
                due = [
                    k
                    for k, item in self._items.items()
                    if (item.expires_at if isinstance(item, SessionRecord) else item.until) <= now
                ][:batch]
                for k in due:
                    item = self._items.pop(k)
                    self._activity.pop(k, None)
                    if isinstance(item, SessionRecord):
                        self._index_drop(k, item.user_id)
            removed += len(due)
            if len(due) < batch:
                return removed

    def stats(self, now: float) -> StoreStats:
        with self._lock:
            items = list(self._items.values())
        live = [i for i in items if isinstance(i, SessionRecord) and i.expires_at > now]
        return StoreStats(
            live_sessions=len(live),
            users=len({r.user_id for r in live if r.user_id is not None}),
            tombstones=sum(isinstance(i, Tombstone) and i.until > now for i in items),
            aliases=sum(isinstance(i, Alias) and i.until > now for i in items),
        )

    def close(self) -> None:
        return None
