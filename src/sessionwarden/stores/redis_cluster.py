"""Redis Cluster store: sessions sharded over every slot of a Redis Cluster (redis-py's cluster
clients, sync and async).

Key layout (``P`` is the prefix, ``sw:`` by default; no braces in it):

====================  =====  ==================================================================
key                   type   holds
====================  =====  ==================================================================
``P s:{<key>}``       HASH   one session key: a live record, an alias or a tombstone (the same
                             fields as :mod:`.redis_layout`)
``P a:{<key>}``       LIST   its activity trail
``P u:{<user>}``      ZSET   the user's keys, scored by ``created_at`` (the index)
``P v:{<user>}``      HASH   the user's pending evictions: key -> JSON ``[at, until, user]``
====================  =====  ==================================================================

A session key's hash and trail share a slot through the hash tag ``{<key>}`` (the keyed hash of
the session ID, as the core makes it); a user's index and pending evictions share the slot of
``{<user>}``. A key or user ID that could not stand in a hash tag as is (empty, or with a brace)
is tagged by ``#`` and its SHA-256 instead. So sessions spread over all 16384 slots, and every
script touches exactly one slot.

What is atomic, and how the steps that span slots are ordered so that no interleaving revives a
session (see ``docs/architecture.md``, "Redis Cluster"):

* reads, updates, revocations, deletions of one session key: one script each, atomic;
* a rotation (old key and new key sit in different slots): (1) read the live record, its trail
  and a digest of both; (2) write the record, with the update applied, at the new key — nobody
  can reach it yet: the new ID has not been handed out and no alias points to it; (3) commit:
  the old key becomes the alias or tombstone only if its digest is unchanged (any write since
  step 1, say a concurrent update, makes the rotation read again; a revocation makes it delete
  the new record and report ``None``); (4) index the new key, then drop the old key from the
  index. A revocation is a write to the old key, so it either lands before the commit (the
  rotation fails, the new record goes) or after (it tombstones the alias: the new session is
  reached through it by :meth:`revoke_user`, see below);
* the per-user index is kept beside the records, in the user's own slot: a new key is indexed
  after its record exists and before the operation returns, a key leaves the index only after
  it stopped being a live record. Index readers (``user_sessions``, ``revoke_user``, the cap)
  prune members whose record is gone or a tombstone and replace an alias by its live target, so
  what a crashed process left half-done is repaired by the next reader;
* the per-user cap is decided atomically on the index (scored by ``created_at``): the oldest
  members beyond the cap move to the pending evictions in one step, then each is tombstoned in
  its own slot and cleared from the pending evictions. Between those two steps (one round trip
  per evicted session) the cap is exceeded; if the process dies there, the next index operation
  for that user, or the next purge, finishes the evictions.

Reads go to the master that owns the slot, never to a replica (a replica may lag behind a
revocation). The read cache (client-side tracking) is off on this store. Any failure, including
a master that is failing over, surfaces as :class:`~.base.StoreUnavailable` (a 503), within about
``timeout`` seconds; requests for the other masters' slots are served meanwhile (with
``cluster-require-full-coverage no`` on the servers).
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Final, TypeAlias, TypeVar, cast

import redis.asyncio.cluster as cluster_async
import redis.cluster as cluster_sync
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from ..records import JSON, Alias, Lookup, RecordUpdate, SessionRecord, Tombstone, dumps, loads
from .base import StoreStats, StoreUnavailable
from .redis_layout import (
    KEY_LAYOUT,
    decode,
    marker_fields,
    pairs,
    record_fields,
    text,
    update_fields,
)
from .redis_ops import FAILURES, client_options, unavailable

__all__ = ["AsyncRedisClusterStore", "RedisClusterStore", "parse_seeds"]

T = TypeVar("T")

#: How often a rotation reads again when the old key was written between its read and commit.
ROTATE_ATTEMPTS: Final = 5
#: Aliases followed, at most, from an index member to the live record it became.
ALIAS_HOPS: Final = 8

_CLUSTER_SCRIPTS: Final = ("put", "read", "commit", "mark", "update", "cap", "purge")


def _load_scripts() -> dict[str, str]:
    lua = files(__package__).joinpath("lua")
    prelude = lua.joinpath("prelude.lua").read_text(encoding="utf-8")
    own = lua.joinpath("cluster_prelude.lua").read_text(encoding="utf-8")
    return {
        name: "\n".join(
            (prelude, own, lua.joinpath(f"cluster_{name}.lua").read_text(encoding="utf-8"))
        )
        for name in _CLUSTER_SCRIPTS
    }


SCRIPTS: Final[dict[str, str]] = _load_scripts()

# -- what an operation asks the store to do --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Script:
    name: str
    keys: tuple[str, ...]
    args: tuple[str | bytes | int, ...]


@dataclass(frozen=True, slots=True)
class _Commands:
    """Plain commands, each on its own key (any slots): one pipeline, replies in order."""

    commands: tuple[tuple[str | bytes | int, ...], ...]


@dataclass(frozen=True, slots=True)
class _Scan:
    """One SCAN step on one master (``node`` is None: the list of masters is asked for)."""

    node: str | None
    cursor: int = 0
    match: str = ""
    count: int = 1000


_Call: TypeAlias = _Script | _Commands | _Scan
_Op: TypeAlias = Generator[_Call, Any, T]


def _one(*command: str | bytes | int) -> _Commands:
    return _Commands((command,))


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

    def _script(self, name: str, keys: Sequence[str], *args: str | bytes | int) -> _Script:
        return _Script(name, tuple(keys), (*self.head, *args))

    # -- one session key --

    def get(self, key: str) -> _Op[Lookup]:
        (reply,) = yield _one("HGETALL", self.skey(key))
        return decode(key, pairs(reply))

    def _put(
        self,
        key: str,
        fields: Sequence[str | bytes],
        trail: Sequence[bytes] = (),
        entry: str = "",
        activity_max: int = 0,
    ) -> _Op[str | None]:
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

    def _index_add(self, user_id: str, key: str, created_at: float) -> _Op[None]:
        yield _one("ZADD", self.ukey(user_id), repr(float(created_at)), _member(key))

    def _index_rem(self, user_id: str | None, key: str) -> _Op[None]:
        if user_id is not None:
            yield _one("ZREM", self.ukey(user_id), _member(key))

    def insert(
        self, record: SessionRecord, max_per_user: int, tombstone_until: float
    ) -> _Op[list[str]]:
        previous = yield from self._put(record.key, record_fields(record))
        if previous != record.user_id:
            yield from self._index_rem(previous, record.key)
        if record.user_id is None:
            return []
        yield from self._index_add(record.user_id, record.key, record.created_at)
        return (
            yield from self._cap(
                record.user_id, record.key, max_per_user, record.last_seen, tombstone_until
            )
        )

    def update(self, key: str, update: RecordUpdate, activity_max: int) -> _Op[bool]:
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

    def revoke(self, key: str, tombstone: Tombstone) -> _Op[bool]:
        done, user = yield from self._mark(key, "revoke", tombstone)
        if done == 1:
            yield from self._index_rem(user, key)
        return done == 1

    def delete(self, key: str) -> _Op[None]:
        _, user = yield from self._mark(key, "delete", None)
        yield from self._index_rem(user, key)
        return None

    def _mark(
        self, key: str, mode: str, tombstone: Tombstone | None
    ) -> _Op[tuple[int, str | None]]:
        """``(1, user)`` written, ``(2, target)`` an alias to follow, ``(0, None)`` nothing."""
        if tombstone is None:
            args: tuple[str | bytes, ...] = ("0",)
        else:
            stone = Tombstone(
                key, tombstone.reason, tombstone.at, tombstone.until, tombstone.user_id
            )
            args = (dumps(stone.until), *marker_fields(stone))
        reply = yield self._script("mark", self._session(key), mode, *args)
        done = int(reply[0])
        return done, _user_of(reply[1]) if done else None

    def activity(self, key: str) -> _Op[list[dict[str, JSON]]]:
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
    ) -> _Op[list[str] | None]:
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
            done = yield self._script("commit", self._session(old_key), digest, *marker)
            if int(done) == 1:
                break
            yield _one("DEL", *self._session(new_key))
            if int(done) == 0:
                return None
        else:
            raise StoreUnavailable("redis: the rotated session kept changing")
        record = cast(SessionRecord, decode(new_key, fields))
        if previous not in (None, record.user_id):
            yield from self._index_rem(previous, new_key)
        if record.user_id is not None:
            yield from self._index_add(record.user_id, new_key, record.created_at)
        yield from self._index_rem(old_user, old_key)
        if record.user_id is None:
            return []
        return (
            yield from self._cap(
                record.user_id, new_key, max_per_user, record.last_seen, tombstone_until
            )
        )

    # -- the user index --

    def _drain(self, user_id: str) -> _Op[None]:
        """Tombstone what a cap step moved to the pending evictions and clear it there."""
        (pending,) = yield _one("HGETALL", self.vkey(user_id))
        for raw_key, value in pairs(pending).items():
            at, until, user = loads(value)
            yield from self._evict_chain(str(raw_key), Tombstone("", "evicted", at, until, user))
            yield _one("HDEL", self.vkey(user_id), raw_key)

    def _evict_chain(
        self, key: str, tombstone: Tombstone, keep: str | None = None
    ) -> _Op[list[str]]:
        """Tombstone ``key``, following aliases to the live record they lead to (never
        ``keep``). Returns the keys that were live records and are tombstones now."""
        done: list[str] = []
        for _ in range(ALIAS_HOPS):
            if key == keep:
                break
            status, found = yield from self._mark(key, "member", tombstone)
            if status == 1:
                done.append(key)
            if status != 2 or found is None:
                break
            key = found
        return done

    def _members(self, user_id: str) -> _Op[list[SessionRecord]]:
        """The user's live records (index order not kept), after pruning and repairing the
        index: members that are gone or tombstones leave it, an alias is replaced by the live
        record it leads to."""
        yield from self._drain(user_id)
        idx = self.ukey(user_id)
        (flat,) = yield _one("ZRANGE", idx, 0, -1)
        keys = list(dict.fromkeys(_key_of(m) for m in flat))
        found = yield _Commands(tuple(("HGETALL", self.skey(k)) for k in keys))
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

    def _cap(self, user_id: str, keep: str, cap: int, at: float, until: float) -> _Op[list[str]]:
        if cap <= 0:
            return []
        (count,) = yield _one("ZCARD", self.ukey(user_id))
        if int(count) <= cap:
            return []
        yield from self._members(user_id)
        value = dumps([at, until, user_id])
        moved = yield self._script(
            "cap", (self.ukey(user_id), self.vkey(user_id)), str(int(cap)), keep, value
        )
        evicted: list[str] = []
        stone = Tombstone("", "evicted", at, until, user_id)
        for raw in moved:
            key = text(raw)
            evicted += yield from self._evict_chain(key, stone, keep)
            yield _one("HDEL", self.vkey(user_id), key)
        return evicted

    def user_sessions(self, user_id: str) -> _Op[list[SessionRecord]]:
        records = yield from self._members(user_id)
        return sorted(records, key=lambda r: (r.created_at, r.key))

    def revoke_user(
        self, user_id: str, reason: str, at: float, until: float, keep: str | None
    ) -> _Op[list[str]]:
        stone = Tombstone("", reason, at, until, user_id)
        revoked: list[str] = []
        for record in (yield from self._members(user_id)):
            if record.key == keep:
                continue
            revoked += yield from self._evict_chain(record.key, stone, keep)
            yield _one("ZREM", self.ukey(user_id), _member(record.key))
        return sorted(revoked)

    # -- whole-store passes --

    def _keys(self, match: str, count: int = 1000) -> _Op[list[list[str]]]:
        """Every key matching ``match`` on every master, in SCAN-sized batches."""
        masters = yield _Scan(None)
        batches: list[list[str]] = []
        for node in masters:
            cursor = 0
            while True:
                cursor, found = yield _Scan(node, cursor, match, count)
                if found:
                    batches.append([text(k) for k in found])
                if int(cursor) == 0:
                    break
        return batches

    def purge(self, now: float, batch: int) -> _Op[int]:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        removed = 0
        users: set[str] = set()
        for keys in (yield from self._keys(_glob(self.prefix) + "*", batch)):
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

    def stats(self, now: float) -> _Op[StoreStats]:
        live = tombs = aliases = 0
        users: set[str] = set()
        for keys in (yield from self._keys(_glob(self.prefix) + "s:*")):
            replies = yield _Commands(tuple(("HGETALL", k) for k in keys))
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


def _glob(text_: str) -> str:
    return "".join("\\" + c if c in "\\*?[]{}" else c for c in text_)


def _split(prefix: str, name: str) -> tuple[str, str]:
    """``P s:{tag}`` -> ``("s", "tag")``; anything else -> ``("", "")``."""
    rest = name[len(prefix) :]
    if len(rest) >= 4 and rest[1:3] == ":{" and rest.endswith("}"):
        return rest[0], rest[3:-1]
    return "", ""


def parse_seeds(netloc: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """``user:password@host:port,host:port`` -> seed nodes, username, password."""
    credentials, _, hosts = netloc.rpartition("@")
    username = password = None
    if credentials:
        user, _, secret = credentials.partition(":")
        username, password = (user or None), (secret or None)
    seeds: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("store URL: redis+cluster needs host:port seed nodes")
        seeds.append((host, int(port)))
    if not seeds or len(seeds) > 64:
        raise ValueError("store URL: redis+cluster needs 1 to 64 seed nodes")
    return seeds, username, password


def _scan_reply(reply: Any) -> tuple[int, list[Any]]:
    """One node's SCAN reply (redis-py keys a cursor, or the whole reply, by node)."""
    if isinstance(reply, dict):
        (reply,) = reply.values()
    cursor, keys = reply
    if isinstance(cursor, dict):
        (cursor,) = cursor.values()
    return int(cursor), list(keys)


# -- the stores ---------------------------------------------------------------------------------

_CLUSTER_FAILURES: Final = (*FAILURES, RedisClusterException)


def _options(
    timeout: float, username: str | None, password: str | None, tls: bool
) -> dict[str, Any]:
    options = client_options(timeout)
    options.update(
        username=username,
        password=password,
        ssl=tls,
        require_full_coverage=False,  # the slots of masters that are up stay served
        # reads go to masters only (the default): a replica may lag behind a revocation
    )
    return options


class RedisClusterStore:
    """Synchronous Redis Cluster store (``redis.cluster.RedisCluster``). Thread-safe."""

    def __init__(
        self,
        seeds: Iterable[tuple[str, int]],
        *,
        prefix: str = "sw:",
        timeout: float = 1.0,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
    ) -> None:
        self._ops = ClusterOps(prefix)
        self.read_cache = None
        try:
            self._client = cluster_sync.RedisCluster(
                startup_nodes=[cluster_sync.ClusterNode(h, p) for h, p in seeds],
                retry=Retry(NoBackoff(), 1),
                **_options(timeout, username, password, tls),
            )
        except _CLUSTER_FAILURES as exc:
            raise unavailable(exc) from exc
        self._scripts = {name: self._client.register_script(src) for name, src in SCRIPTS.items()}

    @property
    def prefix(self) -> str:
        return self._ops.prefix

    def _call(self, call: _Call) -> Any:
        client = cast(Any, self._client)
        try:
            if isinstance(call, _Script):
                return self._scripts[call.name](keys=list(call.keys), args=list(call.args))
            if isinstance(call, _Commands):
                if len(call.commands) == 1:
                    return [client.execute_command(*call.commands[0])]
                pipe = client.pipeline()
                for command in call.commands:
                    pipe.execute_command(*command)
                return pipe.execute()
            if call.node is None:
                return [node.name for node in client.get_primaries()]
            node = client.get_node(node_name=call.node)
            return _scan_reply(
                client.execute_command(
                    "SCAN",
                    call.cursor,
                    "MATCH",
                    call.match,
                    "COUNT",
                    call.count,
                    target_nodes=node,
                )
            )
        except _CLUSTER_FAILURES as exc:
            raise unavailable(exc) from exc

    def _run(self, op: _Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(self._call(call))
        except StopIteration as stop:
            return cast(T, stop.value)

    def get(self, key: str) -> Lookup:
        return self._run(self._ops.get(key))

    def insert(
        self, record: SessionRecord, *, max_per_user: int, tombstone_until: float
    ) -> list[str]:
        return self._run(self._ops.insert(record, max_per_user, tombstone_until))

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
    ) -> list[str] | None:
        return self._run(
            self._ops.rotate(
                old_key,
                new_key,
                update,
                old_becomes,
                max_per_user,
                tombstone_until,
                activity_max,
            )
        )

    def update(self, key: str, update: RecordUpdate, *, activity_max: int = 0) -> bool:
        return self._run(self._ops.update(key, update, activity_max))

    def revoke(self, key: str, tombstone: Tombstone) -> bool:
        return self._run(self._ops.revoke(key, tombstone))

    def delete(self, key: str) -> None:
        self._run(self._ops.delete(key))

    def user_sessions(self, user_id: str) -> list[SessionRecord]:
        return self._run(self._ops.user_sessions(user_id))

    def revoke_user(
        self, user_id: str, *, reason: str, at: float, until: float, keep: str | None = None
    ) -> list[str]:
        return self._run(self._ops.revoke_user(user_id, reason, at, until, keep))

    def activity(self, key: str) -> list[dict[str, JSON]]:
        return self._run(self._ops.activity(key))

    def purge(self, now: float, batch: int = 1000) -> int:
        return self._run(self._ops.purge(now, batch))

    def stats(self, now: float) -> StoreStats:
        return self._run(self._ops.stats(now))

    def close(self) -> None:
        self._client.close()


class AsyncRedisClusterStore:
    """Asynchronous Redis Cluster store (``redis.asyncio.cluster.RedisCluster``)."""

    def __init__(
        self,
        seeds: Iterable[tuple[str, int]],
        *,
        prefix: str = "sw:",
        timeout: float = 1.0,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
    ) -> None:
        self._ops = ClusterOps(prefix)
        self.read_cache = None
        options = _options(timeout, username, password, tls)
        options.pop("health_check_interval", None)
        self._client = cluster_async.RedisCluster(
            startup_nodes=[cast(Any, cluster_async.ClusterNode)(h, p) for h, p in seeds],
            retry=AsyncRetry(NoBackoff(), 1),
            **options,
        )
        self._scripts = {name: self._client.register_script(src) for name, src in SCRIPTS.items()}

    @property
    def prefix(self) -> str:
        return self._ops.prefix

    async def _call(self, call: _Call) -> Any:
        client = cast(Any, self._client)
        try:
            if isinstance(call, _Script):
                return await self._scripts[call.name](keys=list(call.keys), args=list(call.args))
            if isinstance(call, _Commands):
                if len(call.commands) == 1:
                    return [await client.execute_command(*call.commands[0])]
                pipe = client.pipeline()
                for command in call.commands:
                    pipe.execute_command(*command)
                return await pipe.execute()
            if call.node is None:
                await client.initialize()
                return [node.name for node in client.get_primaries()]
            node = client.get_node(node_name=call.node)
            return _scan_reply(
                await client.execute_command(
                    "SCAN",
                    call.cursor,
                    "MATCH",
                    call.match,
                    "COUNT",
                    call.count,
                    target_nodes=node,
                )
            )
        except _CLUSTER_FAILURES as exc:
            raise unavailable(exc) from exc

    async def _run(self, op: _Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(await self._call(call))
        except StopIteration as stop:
            return cast(T, stop.value)

    async def get(self, key: str) -> Lookup:
        return await self._run(self._ops.get(key))

    async def insert(
        self, record: SessionRecord, *, max_per_user: int, tombstone_until: float
    ) -> list[str]:
        return await self._run(self._ops.insert(record, max_per_user, tombstone_until))

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
    ) -> list[str] | None:
        return await self._run(
            self._ops.rotate(
                old_key,
                new_key,
                update,
                old_becomes,
                max_per_user,
                tombstone_until,
                activity_max,
            )
        )

    async def update(self, key: str, update: RecordUpdate, *, activity_max: int = 0) -> bool:
        return await self._run(self._ops.update(key, update, activity_max))

    async def revoke(self, key: str, tombstone: Tombstone) -> bool:
        return await self._run(self._ops.revoke(key, tombstone))

    async def delete(self, key: str) -> None:
        await self._run(self._ops.delete(key))

    async def user_sessions(self, user_id: str) -> list[SessionRecord]:
        return await self._run(self._ops.user_sessions(user_id))

    async def revoke_user(
        self, user_id: str, *, reason: str, at: float, until: float, keep: str | None = None
    ) -> list[str]:
        return await self._run(self._ops.revoke_user(user_id, reason, at, until, keep))

    async def activity(self, key: str) -> list[dict[str, JSON]]:
        return await self._run(self._ops.activity(key))

    async def purge(self, now: float, batch: int = 1000) -> int:
        return await self._run(self._ops.purge(now, batch))

    async def stats(self, now: float) -> StoreStats:
        return await self._run(self._ops.stats(now))

    async def close(self) -> None:
        await self._client.aclose()
