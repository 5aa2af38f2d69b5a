"""The Redis Cluster store's key names and operations (see :mod:`.redis_cluster` for the
design): each operation is a generator of calls — a script on one slot, plain commands on any
keys (one pipeline), or a SCAN step on one master — that the sync or async store runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias, TypeVar, cast

from ..records import JSON, Alias, Lookup, RecordUpdate, SessionRecord, Tombstone, dumps, loads
from .base import CapAction, Ended, SessionLimitReached, StoreStats, StoreUnavailable
from .redis_layout import (
    KEY_LAYOUT,
    decode,
    glob_escape,
    load_scripts,
    marker_fields,
    pairs,
    record_fields,
    text,
    update_fields,
)

__all__ = ["SCRIPTS", "Call", "ClusterOps", "Commands", "Op", "Scan", "Script"]

T = TypeVar("T")

#: How often a rotation reads again when the old key was written between its read and commit.
ROTATE_ATTEMPTS: Final = 5
#: Aliases followed, at most, from an index member to the live record it became.
ALIAS_HOPS: Final = 8

#: Script name -> its Lua source (``lua/prelude.lua``, ``lua/cluster_prelude.lua``, then
#: ``lua/cluster_<name>.lua``).
SCRIPTS: Final[dict[str, str]] = {
    name.removeprefix("cluster_"): source
    for name, source in load_scripts(
        [
            f"cluster_{n}"
            for n in ("put", "read", "commit", "mark", "update", "cap", "reserve", "purge")
        ],
        preludes=("prelude", "cluster_prelude"),
    ).items()
}

# -- what an operation asks the store to do --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    keys: tuple[str, ...]
    args: tuple[str | bytes | int, ...]


@dataclass(frozen=True, slots=True)
class Commands:
    """Plain commands, each on its own key (any slots): one pipeline, replies in order."""

    commands: tuple[tuple[str | bytes | int, ...], ...]


@dataclass(frozen=True, slots=True)
class Scan:
    """One SCAN step on one master (``node`` is None: the list of masters is asked for)."""

    node: str | None
    cursor: int = 0
    match: str = ""
    count: int = 1000


Call: TypeAlias = Script | Commands | Scan
Op: TypeAlias = Generator[Call, Any, T]


def _one(*command: str | bytes | int) -> Commands:
    return Commands((command,))


def _tag(value: str) -> str:
    """``value`` as a hash tag's content: as is when it can be one, else ``#`` + SHA-256."""
    if value and "{" not in value and "}" not in value and not value.startswith("#"):
        return value
    return "#" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def _member(key: str) -> bytes:
    """A key as an index member (as the single-server layout writes it: 64 lowercase hex digits
    as byte 0xFF and its 32 bytes, any other key as is)."""
    if len(key) == 64 and all(c in "0123456789abcdef" for c in key):
        return b"\xff" + bytes.fromhex(key)
    return key.encode("utf-8")


def _key_of(member: Any) -> str:
    raw = bytes(member) if isinstance(member, bytes | bytearray) else str(member).encode()
    if len(raw) == 33 and raw[0] == 0xFF:
        return raw[1:].hex()
    return raw.decode("utf-8")


def _user_of(reply: Any) -> str | None:
    """A user ID (or alias target) as a script returns it: text, or nil for none."""
    return None if reply is None else text(reply)


class ClusterOps:
    """Key names and every operation of the cluster store, as generators of calls."""

    __slots__ = ("head", "prefix")

    def __init__(self, prefix: str) -> None:
        if not isinstance(prefix, str):
            raise TypeError("prefix must be a string")
        if "{" in prefix or "}" in prefix:
            raise ValueError("prefix: no braces on Redis Cluster (each key gets its own tag)")
        self.prefix = prefix
        self.head = KEY_LAYOUT.script_args(prefix)

    # -- names --

    def skey(self, key: str) -> str:
        return f"{self.prefix}s:{{{_tag(key)}}}"

    def akey(self, key: str) -> str:
        return f"{self.prefix}a:{{{_tag(key)}}}"

    def _session(self, key: str) -> tuple[str, str]:
        return self.skey(key), self.akey(key)

    def ukey(self, user_id: str) -> str:
        return f"{self.prefix}u:{{{_tag(user_id)}}}"

    def vkey(self, user_id: str) -> str:
        return f"{self.prefix}v:{{{_tag(user_id)}}}"

    def _script(self, name: str, keys: Sequence[str], *args: str | bytes | int) -> Script:
        return Script(name, tuple(keys), (*self.head, *args))

    # -- one session key --

    def get(self, key: str) -> Op[Lookup]:
        (reply,) = yield _one("HGETALL", self.skey(key))
        return decode(key, pairs(reply))

    def _put(
        self,
        key: str,
        fields: Sequence[str | bytes],
        trail: Sequence[bytes] = (),
        entry: str = "",
        activity_max: int = 0,
    ) -> Op[str | None]:
        previous = yield self._script(
            "put",
            self._session(key),
            str(max(int(activity_max), 0)),
            str(len(trail)),
            *trail,
            entry,
            *fields,
        )
        return _user_of(previous)

    def _index_add(self, user_id: str, key: str, created_at: float) -> Op[None]:
        yield _one("ZADD", self.ukey(user_id), repr(float(created_at)), _member(key))

    def _index_rem(self, user_id: str | None, key: str) -> Op[None]:
        if user_id is not None:
            yield _one("ZREM", self.ukey(user_id), _member(key))

    def insert(
        self,
        record: SessionRecord,
        max_per_user: int,
        tombstone_until: float,
        on_limit: CapAction = "evict-oldest",
    ) -> Op[Ended]:
        previous = yield from self._put(record.key, record_fields(record))
        if previous != record.user_id:
            yield from self._index_rem(previous, record.key)
        if record.user_id is None:
            return {}
        if on_limit == "reject" and max_per_user > 0:
            yield from self._reserve(record, record.key, max_per_user)
            return {}
        yield from self._index_add(record.user_id, record.key, record.created_at)
        at = record.last_seen
        return (
            yield from self._cap(
                record.user_id, record.key, max_per_user, at, tombstone_until, on_limit
            )
        )

    def update(self, key: str, update: RecordUpdate, activity_max: int) -> Op[bool]:
        sets, dels = update_fields(update)
        entry = "" if update.activity is None else dumps(update.activity)
        reply = yield self._script(
            "update",
            self._session(key),
            str(max(int(activity_max), 0)),
            entry,
            str(len(sets)),
            *sets,
            str(len(dels)),
            *dels,
        )
        if not reply:
            return False
        before, after = _user_of(reply[1]), _user_of(reply[2])
        if before != after:
            if after is not None:
                yield from self._index_add(after, key, float(reply[3]))
            yield from self._index_rem(before, key)
        return True

    def revoke(self, key: str, tombstone: Tombstone) -> Op[bool]:
        done, user, _ = yield from self._mark(key, "revoke", tombstone)
        if done == 1:
            yield from self._index_rem(user, key)
        return done == 1

    def delete(self, key: str) -> Op[None]:
        _, user, _ = yield from self._mark(key, "delete", None)
        yield from self._index_rem(user, key)
        return None

    def _mark(
        self, key: str, mode: str, tombstone: Tombstone | None
    ) -> Op[tuple[int, str | None, str]]:
        """``(1, user, lineage)`` written (a tombstone over a live record keeps the record's
        lineage, in ``"member"`` mode the key for a record without one), ``(2, target, "")`` an
        alias to follow, ``(0, None, "")`` nothing."""
        if tombstone is None:
            args: tuple[str | bytes, ...] = ("0",)
        else:
            lineage = tombstone.lineage or (key if mode == "member" else "")
            stone = Tombstone(
                key, tombstone.reason, tombstone.at, tombstone.until, tombstone.user_id, lineage
            )
            args = (dumps(stone.until), *marker_fields(stone))
        reply = yield self._script("mark", self._session(key), mode, *args)
        done = int(reply[0])
        if not done:
            return done, None, ""
        written = reply[2] if done == 1 and len(reply) > 2 else None
        return done, _user_of(reply[1]), "" if written is None else text(written)

    def activity(self, key: str) -> Op[list[dict[str, JSON]]]:
        (reply,) = yield _one("LRANGE", self.akey(key), 0, -1)
        return [dict(loads(entry)) for entry in reply]

    # -- rotation --

    def rotate(
        self,
        old_key: str,
        new_key: str,
        update: RecordUpdate,
        old_becomes: Alias | Tombstone,
        max_per_user: int,
        tombstone_until: float,
        activity_max: int,
        on_limit: CapAction = "evict-oldest",
    ) -> Op[Ended | None]:
        reject = on_limit == "reject" and max_per_user > 0
        moved = yield from self._move(
            old_key, new_key, update, old_becomes, activity_max, max_per_user if reject else 0
        )
        if moved is None:
            return None
        fields, previous, old_user = moved
        record = cast(SessionRecord, decode(new_key, fields))
        if previous not in (None, record.user_id):
            yield from self._index_rem(previous, new_key)
        if record.user_id is not None:
            yield from self._index_add(record.user_id, new_key, record.created_at)
        yield from self._index_rem(old_user, old_key)
        if record.user_id is None or reject:
            return {}
        return (
            yield from self._cap(
                record.user_id, new_key, max_per_user, record.last_seen, tombstone_until, on_limit
            )
        )

    def _move(
        self,
        old_key: str,
        new_key: str,
        update: RecordUpdate,
        old_becomes: Alias | Tombstone,
        activity_max: int,
        reject_at: int,
    ) -> Op[tuple[dict[str, bytes], str | None, str | None] | None]:
        """Steps 1-3 of a rotation: the new record's fields, the user of what was at the new
        key before, and the old record's user; ``None`` when the old key is no longer live.
        ``reject_at`` > 0: the cap's ``"reject"``, decided before the old key changes."""
        sets, dels = update_fields(update)
        entry = "" if update.activity is None else dumps(update.activity)
        marker = (dumps(old_becomes.until), *marker_fields(old_becomes))
        for _ in range(ROTATE_ATTEMPTS):
            got = yield self._script("read", self._session(old_key))
            if not got:
                return None
            digest, stored, trail = got
            fields = pairs(stored)
            old_user = cast(SessionRecord, decode(old_key, fields)).user_id
            fields.update(pairs(sets))
            for name in dels:
                fields.pop(name, None)
            flat = [part for item in fields.items() for part in item]
            previous = yield from self._put(new_key, flat, list(trail), entry, activity_max)
            moved = cast(SessionRecord, decode(new_key, fields)) if reject_at > 0 else None
            if moved is not None and moved.user_id is not None:
                yield from self._reserve(moved, old_key, reject_at)
            done = yield self._script("commit", self._session(old_key), digest, *marker)
            if int(done) == 1:
                return fields, previous, old_user
            yield _one("DEL", *self._session(new_key))
            if int(done) == 0:
                yield from self._index_rem(moved.user_id if moved else None, new_key)
                return None
        raise StoreUnavailable("redis: the rotated session kept changing")

    # -- the user index --

    def _drain(self, user_id: str) -> Op[None]:
        """Tombstone what a cap step moved to the pending evictions and clear it there."""
        (pending,) = yield _one("HGETALL", self.vkey(user_id))
        for raw_key, value in pairs(pending).items():
            at, until, user = loads(value)
            yield from self._evict_chain(str(raw_key), Tombstone("", "evicted", at, until, user))
            yield _one("HDEL", self.vkey(user_id), raw_key)

    def _evict_chain(self, key: str, tombstone: Tombstone, keep: str | None = None) -> Op[Ended]:
        """Tombstone ``key``, following aliases to the live record they lead to (never
        ``keep``). Returns the keys that were live records and are tombstones now, with the
        lineages their tombstones keep."""
        done: Ended = {}
        for _ in range(ALIAS_HOPS):
            if key == keep:
                break
            status, found, lineage = yield from self._mark(key, "member", tombstone)
            if status == 1:
                done[key] = lineage
            if status != 2 or found is None:
                break
            key = found
        return done

    def _members(self, user_id: str) -> Op[list[SessionRecord]]:
        """The user's live records (index order not kept), after pruning and repairing the
        index: members that are gone or tombstones leave it, an alias is replaced by the live
        record it leads to."""
        yield from self._drain(user_id)
        idx = self.ukey(user_id)
        (flat,) = yield _one("ZRANGE", idx, 0, -1)
        keys = list(dict.fromkeys(_key_of(m) for m in flat))
        found = yield Commands(tuple(("HGETALL", self.skey(k)) for k in keys))
        live: dict[str, SessionRecord] = {}
        for key, reply in zip(keys, found, strict=True):
            item = decode(key, pairs(reply))
            hops = 0
            while isinstance(item, Alias) and hops < ALIAS_HOPS:
                target = item.target
                (reply,) = yield _one("HGETALL", self.skey(target))
                item, hops = decode(target, pairs(reply)), hops + 1
            if isinstance(item, SessionRecord) and item.user_id == user_id:
                if item.key != key:
                    yield from self._index_add(user_id, item.key, item.created_at)
                live[item.key] = item
            if not isinstance(item, SessionRecord) or item.key != key:
                yield _one("ZREM", idx, _member(key))
        return list(live.values())

    def _reserve(self, record: SessionRecord, moved_from: str, cap: int) -> Op[None]:
        """Index ``record`` (just written at its key) only while its user has fewer than
        ``cap`` other live sessions, in one step on the user's slot; else delete it and raise
        :class:`SessionLimitReached`. Not counted: the key it moves from, and sessions whose
        deadline passed (``expires_at`` at or before the record's ``last_seen``)."""
        user_id = cast(str, record.user_id)
        expired = [
            r.key for r in (yield from self._members(user_id)) if r.expires_at <= record.last_seen
        ]
        done = yield self._script(
            "reserve",
            (self.ukey(user_id),),
            str(int(cap)),
            _member(record.key),
            repr(float(record.created_at)),
            record.key,
            moved_from,
            *expired,
        )
        if int(done) != 1:
            yield _one("DEL", *self._session(record.key))
            raise SessionLimitReached(user_id, cap)

    def _cap(
        self, user_id: str, keep: str, cap: int, at: float, until: float, on_limit: CapAction
    ) -> Op[Ended]:
        if cap <= 0:
            return {}
        (count,) = yield _one("ZCARD", self.ukey(user_id))
        if int(count) <= cap:
            return {}
        records = yield from self._members(user_id)
        expired = [r.key for r in records if r.expires_at <= at and r.key != keep]
        order: list[str] = []
        if on_limit == "evict-lru":
            order = [r.key for r in sorted(records, key=lambda r: (r.last_seen, r.key))]
        value = dumps([at, until, user_id])
        moved = yield self._script(
            "cap",
            (self.ukey(user_id), self.vkey(user_id)),
            str(int(cap)),
            keep,
            value,
            str(len(expired)),
            *expired,
            *order,
        )
        evicted: Ended = {}
        stone = Tombstone("", "evicted", at, until, user_id)
        for raw in moved:
            key = text(raw)
            evicted.update((yield from self._evict_chain(key, stone, keep)))
            yield _one("HDEL", self.vkey(user_id), key)
        return evicted

    def user_sessions(self, user_id: str) -> Op[list[SessionRecord]]:
        records = yield from self._members(user_id)
        return sorted(records, key=lambda r: (r.created_at, r.key))

    def revoke_user(
        self, user_id: str, reason: str, at: float, until: float, keep: str | None
    ) -> Op[Ended]:
        stone = Tombstone("", reason, at, until, user_id)
        revoked: Ended = {}
        for record in (yield from self._members(user_id)):
            if record.key == keep:
                continue
            revoked.update((yield from self._evict_chain(record.key, stone, keep)))
            yield _one("ZREM", self.ukey(user_id), _member(record.key))
        return dict(sorted(revoked.items()))

    # -- whole-store passes --

    def _keys(self, match: str, count: int = 1000) -> Op[list[list[str]]]:
        """Every key matching ``match`` on every master, in SCAN-sized batches."""
        masters = yield Scan(None)
        batches: list[list[str]] = []
        for node in masters:
            cursor = 0
            while True:
                cursor, found = yield Scan(node, cursor, match, count)
                if found:
                    batches.append([text(k) for k in found])
                if int(cursor) == 0:
                    break
        return batches

    def _records_at(
        self, node: str, cursor: int, limit: int
    ) -> Op[tuple[int, list[SessionRecord]]]:
        """One SCAN step over the session hashes on one master: its signed-in records."""
        cursor, found = yield Scan(node, cursor, glob_escape(self.prefix) + "s:*", limit)
        names = list(dict.fromkeys(text(k) for k in found))
        replies = (yield Commands(tuple(("HGETALL", k) for k in names))) if names else []
        records: list[SessionRecord] = []
        for name, reply in zip(names, replies, strict=True):
            kind, tag = _split(self.prefix, name)
            if kind != "s" or _tag(tag) != tag:  # a hashed tag does not give its key back
                continue
            item = decode(tag, pairs(reply))
            if isinstance(item, SessionRecord) and item.user_id is not None:
                records.append(item)
        return int(cursor), records

    def all_sessions(
        self, after: str | None, limit: int
    ) -> Op[tuple[list[SessionRecord], str | None]]:
        """SCAN on every master in turn (by name); the cursor is ``<SCAN cursor>@<master>``.
        Pages vary in size and may repeat a record, as on a single server; a master that left
        the cluster between two pages is passed over (walk again after a failover)."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        start, cursor = _cluster_cursor(after)
        masters = sorted(text(m) for m in (yield Scan(None)))
        todo = [m for m in masters if m >= start]
        if todo and todo[0] != start:
            cursor = 0
        page: list[SessionRecord] = []
        for i, node in enumerate(todo):
            while True:
                cursor, records = yield from self._records_at(node, cursor, limit)
                page += records
                if cursor == 0:
                    break
                if page:
                    return page, f"{cursor}@{node}"
            if page and i + 1 < len(todo):
                return page, f"0@{todo[i + 1]}"
        return page, None

    def purge(self, now: float, batch: int) -> Op[int]:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        removed = 0
        users: set[str] = set()
        for keys in (yield from self._keys(glob_escape(self.prefix) + "*", batch)):
            for name in keys:
                kind, tag = _split(self.prefix, name)
                if kind in ("s", "a"):
                    s, a = f"{self.prefix}s:{{{tag}}}", f"{self.prefix}a:{{{tag}}}"
                    reply = yield self._script("purge", (s, a), dumps(float(now)))
                    removed += int(reply[0])
                    user = _user_of(reply[1])
                    if user is not None and _tag(tag) == tag:
                        yield from self._index_rem(user, tag)
                elif kind in ("u", "v") and not tag.startswith("#"):
                    users.add(tag)
        for user_id in users:
            yield from self._members(user_id)
        return removed

    def stats(self, now: float) -> Op[StoreStats]:
        live = tombs = aliases = 0
        users: set[str] = set()
        for keys in (yield from self._keys(glob_escape(self.prefix) + "s:*")):
            replies = yield Commands(tuple(("HGETALL", k) for k in keys))
            for reply in replies:
                item = decode("", pairs(reply))
                if isinstance(item, SessionRecord) and item.expires_at > now:
                    live += 1
                    if item.user_id is not None:
                        users.add(item.user_id)
                elif isinstance(item, Alias) and item.until > now:
                    aliases += 1
                elif isinstance(item, Tombstone) and item.until > now:
                    tombs += 1
        return StoreStats(live_sessions=live, users=len(users), tombstones=tombs, aliases=aliases)


def _cluster_cursor(after: str | None) -> tuple[str, int]:
    """``(master, SCAN cursor)`` from a page cursor (``None``: the first master, from 0)."""
    if after is None:
        return "", 0
    number, at, node = after.partition("@")
    if not (at and node and number.isascii() and number.isdigit() and len(number) <= 20):
        raise ValueError("not a cursor this store returned")
    return node, int(number)


def _split(prefix: str, name: str) -> tuple[str, str]:
    """``P s:{tag}`` -> ``("s", "tag")``; anything else -> ``("", "")``."""
    rest = name[len(prefix) :]
    if len(rest) >= 4 and rest[1:3] == ":{" and rest.endswith("}"):
        return rest[0], rest[3:-1]
    return "", ""
