"""The Redis store's operations, written once for the sync and the async store: each is a
generator of :class:`Call` (a registered script or a plain command) that the store runs with
its own client. Key names come from :data:`~.redis_layout.KEY_LAYOUT`, which every script has
as constants; a script call passes the store's prefix first (see
:meth:`~.redis_layout.KeyLayout.script_args`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias, TypeVar

from redis.exceptions import RedisError, ResponseError

from ..records import JSON, Alias, Lookup, RecordUpdate, SessionRecord, Tombstone, dumps, loads
from .base import CapAction, Ended, SessionLimitReached, StoreStats, StoreUnavailable
from .redis_layout import (
    KEY_LAYOUT,
    SCRIPTS,
    Scalars,
    decode,
    enc,
    ended_pairs,
    flat_fields,
    glob_escape,
    marker_fields,
    new_parts,
    pairs,
    record_fields,
    text,
    time_enc,
    update_fields,
)
from .tracking import InvalidationFeed, ReadCache

T = TypeVar("T")

#: Seconds between PINGs on a connection that sat idle (catches connections dropped silently).
HEALTH_CHECK_INTERVAL: Final = 15
#: Keys examined per SCAN step by :meth:`RedisStore.stats`.
STATS_BATCH: Final = 1000
#: The cap's mode as the insert and rotate scripts take it (see ``lua/prelude.lua``), and
#: their answer when it refuses.
CAP_MODES: Final[dict[CapAction, str]] = {"evict-oldest": "c", "evict-lru": "l", "reject": "r"}
REFUSED: Final = -1


@dataclass(frozen=True, slots=True)
class Call:
    """One round trip: a registered script (``script`` names it) or a plain command."""

    script: str | None
    keys: tuple[str, ...]
    args: tuple[str | bytes | int, ...]


Op: TypeAlias = Generator[Call, Any, T]


def command(*args: str | int) -> Call:
    return Call(None, (), args)


#: Script name -> its SHA1 (what ``EVALSHA`` names it by).
SHAS: Final[dict[str, bytes]] = {
    # SHA1 is what Redis names scripts by (not a security use)
    name: hashlib.sha1(src.encode("utf-8"), usedforsecurity=False).hexdigest().encode()
    for name, src in SCRIPTS.items()
}


class ScriptCommands:
    """Scripts as commands for the lean connections: ``EVAL`` with the source the first time
    a store runs one (which also caches it in Redis), ``EVALSHA`` after that; when Redis lost
    it meanwhile (``SCRIPT FLUSH``, a restart) the store sends :meth:`by_source` once more."""

    __slots__ = ("_sent",)

    def __init__(self) -> None:
        self._sent: set[str] = set()

    def __call__(self, call: Call) -> tuple[str | bytes | int, ...]:
        assert call.script is not None
        if call.script in self._sent:
            return script_command(call)
        self._sent.add(call.script)
        return script_command(call, by_source=True)

    @staticmethod
    def by_source(call: Call) -> tuple[str | bytes | int, ...]:
        return script_command(call, by_source=True)


def script_command(call: Call, *, by_source: bool = False) -> tuple[str | bytes | int, ...]:
    """``call`` (a script) as an ``EVALSHA`` command, or ``EVAL`` with the source when Redis
    does not know the script yet (``NOSCRIPT``; ``EVAL`` also caches it there); the arguments
    as given (:func:`~.resp.encode` turns text and integers into bytes)."""
    assert call.script is not None
    if by_source:
        return (b"EVAL", SCRIPTS[call.script], len(call.keys), *call.keys, *call.args)
    return (b"EVALSHA", SHAS[call.script], len(call.keys), *call.keys, *call.args)


def _fields(reply: Any) -> Mapping[str, str | bytes]:
    """A script's flat hash reply as field name -> raw value (bytes, as the store's own
    connections and redis-py without ``decode_responses`` give them; anything else the slow
    way)."""
    items = reply if type(reply) is list else list(reply)
    if items and isinstance(items[0], bytes):
        return flat_fields(items)
    return pairs(items)


def _count(values: Sequence[Any]) -> list[Any]:
    return [len(values), *values]


class Ops:
    """Key layout and every operation, written once, as generators of :class:`Call`.

    The sync and async stores only differ in how they run a :class:`Call`.
    """

    __slots__ = ("head", "prefix", "scalars")

    def __init__(self, prefix: str, cluster_hash_tag: bool) -> None:
        if not isinstance(prefix, str):
            raise TypeError("prefix must be a string")
        if cluster_hash_tag:
            if "{" in prefix or "}" in prefix:
                raise ValueError("prefix: no braces with cluster_hash_tag=True")
            prefix = "{" + (prefix.rstrip(":") or "sw") + "}:"
        self.prefix = prefix
        #: What every script call's ARGV starts with: the prefix.
        self.head = KEY_LAYOUT.script_args(prefix)
        #: Scalar field values parsed once by content (the store's reads use it too).
        self.scalars = Scalars()

    def skey(self, key: str) -> str:
        return self.prefix + KEY_LAYOUT.session + key

    def akey(self, key: str) -> str:
        return self.prefix + KEY_LAYOUT.activity + key

    def ukey(self, user_id: str) -> str:
        return self.prefix + KEY_LAYOUT.user + user_id

    def get(self, key: str) -> Op[Lookup]:
        reply = yield command("HGETALL", self.skey(key))
        return decode(key, pairs(reply))

    def insert(
        self,
        record: SessionRecord,
        max_per_user: int,
        tombstone_until: float,
        on_limit: CapAction = "evict-oldest",
    ) -> Op[Ended]:
        keys = [self.skey(record.key)]
        if record.user_id is not None:
            keys.append(self.ukey(record.user_id))
        args = [
            *self.head,
            record.key,
            str(int(max_per_user)),
            time_enc(tombstone_until),
            enc("evicted"),
            CAP_MODES[on_limit],
            *record_fields(record),
        ]
        reply = yield Call("insert", tuple(keys), tuple(args))
        if reply == REFUSED:
            raise SessionLimitReached(record.user_id or "", int(max_per_user))
        return ended_pairs(reply)

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
    ) -> Op[tuple[Ended | None, Lookup]]:
        """The evicted keys and their lineages (``None`` when ``old_key`` held no live record)
        and the record as written at ``new_key``; :class:`SessionLimitReached` when the cap
        refuses it. The script answers with the fields the new key kept from the old one; the
        record is those, decoded, and the values this call set, as a read of them gives them."""
        written = new_parts()
        sets, dels = update_fields(update, written)
        args = [
            *self.head,
            old_key,
            new_key,
            str(int(max_per_user)),
            time_enc(tombstone_until),
            enc("evicted"),
            time_enc(old_becomes.until),
            str(max(int(activity_max), 0)),
            "" if update.activity is None else dumps(update.activity),
            CAP_MODES[on_limit],
            *_count(marker_fields(old_becomes)),
            *_count(sets),
            *_count(dels),
        ]
        reply = yield Call("rotate", (self.skey(old_key), self.skey(new_key)), tuple(args))
        if reply is None:
            return None, None
        if reply == REFUSED:
            user = update.meta.get("user_id")
            raise SessionLimitReached(user if isinstance(user, str) else "", int(max_per_user))
        items = list(reply)
        return ended_pairs(items[1:]), self.scalars.record(new_key, _fields(items[0]), written)

    def update(self, key: str, update: RecordUpdate, activity_max: int) -> Op[Lookup]:
        """The record as written (the script answers with the whole hash), or ``None`` when
        ``key`` held no live record."""
        sets, dels = update_fields(update)
        entry = "" if update.activity is None else dumps(update.activity)
        amax = max(int(activity_max), 0)
        args = (*self.head, key, amax, entry, len(sets), *sets, len(dels), *dels)
        reply = yield Call("update", (self.skey(key),), args)
        return decode(key, _fields(reply), self.scalars) if reply else None

    def revoke(self, key: str, tombstone: Tombstone) -> Op[bool]:
        args = [*self.head, key, dumps(tombstone.until), *marker_fields(tombstone)]
        reply = yield Call("revoke", (self.skey(key),), tuple(args))
        return bool(reply)

    def delete(self, key: str) -> Op[None]:
        yield Call("delete", (self.skey(key),), (*self.head, key))
        return None

    def user_sessions(self, user_id: str) -> Op[list[SessionRecord]]:
        reply = yield Call("user_sessions", (self.ukey(user_id),), self.head)
        items = list(reply or ())
        found: list[SessionRecord] = []
        for i in range(0, len(items) - 1, 2):
            record = decode(text(items[i]), pairs(items[i + 1]))
            if isinstance(record, SessionRecord):
                found.append(record)
        return sorted(found, key=lambda r: (r.created_at, r.key))

    def all_sessions(
        self, after: str | None, limit: int
    ) -> Op[tuple[list[SessionRecord], str | None]]:
        """SCAN steps over the session hashes (``COUNT limit``) until one finds a signed-in
        record; the cursor is SCAN's. A page may hold more or fewer than ``limit`` records and
        a record may come twice (SCAN's guarantee: every key present throughout, at least
        once)."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        cursor = scan_cursor(after)
        head = self.prefix + KEY_LAYOUT.session
        page: list[SessionRecord] = []
        while True:
            cursor, names = yield from self._scan(cursor, glob_escape(head) + "*", limit)
            for name in dict.fromkeys(names):
                item = decode(name[len(head) :], pairs((yield command("HGETALL", name))))
                if isinstance(item, SessionRecord) and item.user_id is not None:
                    page.append(item)
            if cursor == 0:
                return page, None
            if page:
                return page, str(cursor)

    def revoke_user(
        self, user_id: str, reason: str, at: float, until: float, keep: str | None
    ) -> Op[Ended]:
        tomb = marker_fields(Tombstone("", reason, at, until, user_id))
        args = [
            *self.head,
            "0" if keep is None else "1",
            keep or "",
            dumps(until),
            *tomb,
        ]
        reply = yield Call("revoke_user", (self.ukey(user_id),), tuple(args))
        return dict(sorted(ended_pairs(reply).items()))

    def activity(self, key: str) -> Op[list[dict[str, JSON]]]:
        reply = yield command("LRANGE", self.akey(key), 0, -1)
        return [dict(loads(entry)) for entry in reply]

    def _scan(self, cursor: int, match: str, count: int) -> Op[tuple[int, list[str]]]:
        reply = yield command("SCAN", cursor, "MATCH", match, "COUNT", count)
        next_cursor, keys = reply
        return int(next_cursor), [text(k) for k in keys]

    def purge(self, now: float, batch: int) -> Op[int]:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        match = glob_escape(self.prefix) + "*"
        removed = 0
        cursor = 0
        while True:
            cursor, keys = yield from self._scan(cursor, match, batch)
            for i in range(0, len(keys), batch):
                chunk = tuple(keys[i : i + batch])
                removed += int((yield Call("purge", chunk, (*self.head, dumps(float(now))))))
            if cursor == 0:
                return removed

    def migrate(self, batch: int) -> Op[int]:
        """Rewrite what earlier versions left (see ``lua/migrate.lua``), one SCAN step at a
        time; how many keys changed."""
        if batch < 1:
            raise ValueError("batch must be >= 1")
        match = glob_escape(self.prefix) + "*"
        changed = 0
        cursor = 0
        while True:
            cursor, keys = yield from self._scan(cursor, match, batch)
            for i in range(0, len(keys), batch):
                changed += int((yield Call("migrate", tuple(keys[i : i + batch]), self.head)))
            if cursor == 0:
                return changed

    def stats(self, now: float) -> Op[StoreStats]:
        match = glob_escape(self.prefix + KEY_LAYOUT.session) + "*"
        seen: set[str] = set()
        users: set[str] = set()
        live = tombs = aliases = 0
        cursor = 0
        while True:
            cursor, keys = yield from self._scan(cursor, match, STATS_BATCH)
            fresh = [k for k in dict.fromkeys(keys) if k not in seen]
            seen.update(fresh)
            for i in range(0, len(fresh), STATS_BATCH):
                chunk = tuple(fresh[i : i + STATS_BATCH])
                reply = yield Call("stats", chunk, (*self.head, dumps(float(now))))
                live += int(reply[0])
                tombs += int(reply[1])
                aliases += int(reply[2])
                users.update(text(u) for u in reply[3:])
            if cursor == 0:
                return StoreStats(
                    live_sessions=live, users=len(users), tombstones=tombs, aliases=aliases
                )


def scan_cursor(after: str | None) -> int:
    """A SCAN cursor from a page cursor (``None``: the start); ``ValueError`` when it is not
    one."""
    if after is None:
        return 0
    if not (after.isascii() and after.isdigit() and len(after) <= 20 and int(after) < 2**64):
        raise ValueError("not a cursor this store returned")
    return int(after)


def unavailable(exc: BaseException) -> StoreUnavailable:
    """A message naming only the kind of failure (never keys, data or server text)."""
    reason = type(exc).__name__
    if isinstance(exc, ResponseError):
        code = str(exc).split(" ", 1)[0]
        if code.isascii() and code.isalpha() and code.isupper() and len(code) <= 16:
            reason = f"{reason} {code}"
    return StoreUnavailable(f"redis unreachable: {reason}")


FAILURES: Final = (RedisError, OSError)


def client_options(timeout: float) -> dict[str, Any]:
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "decode_responses": False,
    }


def read_cache(
    target: tuple[str, int, int, str | None, str | None] | None,
    prefix: str,
    timeout: float,
    ttl: float,
    size: int,
) -> ReadCache | None:
    """The local read cache (:mod:`.tracking`) for session hashes, or ``None`` when it is off
    (``ttl`` 0) or the store was given a client rather than a plain ``redis://`` URL."""
    if ttl < 0 or size < 1:
        raise ValueError("read_cache_ttl must be >= 0 and read_cache_size >= 1")
    if target is None or ttl == 0:
        return None
    host, port, _db, username, password = target

    def feed(on_keys: Callable[[list[bytes] | None], None]) -> InvalidationFeed:
        return InvalidationFeed(
            host,
            port,
            username,
            password,
            key_prefix=prefix + KEY_LAYOUT.session,
            timeout=timeout,
            on_keys=on_keys,
        )

    return ReadCache(feed, ttl=ttl, size=size)


def forget(cache: ReadCache | None, ops: Ops, keys: Iterable[str] | None) -> None:
    """After a write: drop the store keys it touched from the read cache (``None``: all)."""
    if cache is None:
        return
    if keys is None:
        cache.clear()
    else:
        cache.evict([ops.skey(key) for key in keys])
