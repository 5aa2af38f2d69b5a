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
  members beyond the cap (or, with ``"evict-lru"``, the least recently seen, in the order the
  records read just before showed: a session touched in between may still go first) move to
  the pending evictions in one step, then each is tombstoned in its own slot and cleared from
  the pending evictions. Between those two steps (one round trip per evicted session) the cap
  is exceeded; if the process dies there, the next index operation for that user, or the next
  purge, finishes the evictions. Sessions that expired (by their deadline, not yet by Redis)
  are not counted.
* a sign-in under ``"reject"``: its record is written at the new key first (unreachable: its ID
  is not handed out yet), then one script on the user's slot indexes the new key only if the
  user has fewer than ``cap`` other members (not counting the session it moves from nor expired
  ones), so parallel sign-ins never pass the cap together; refused, the new record is deleted
  and the old key left untouched. Its limit: it counts index members, so a member a concurrent
  operation has not pruned yet (a session that ended a moment ago, or the old key of a
  concurrent rotation, which leaves the index a step after its new key joins it) still counts,
  and a sign-in racing such a step may be refused although a place was about to free up. It
  never lets the cap be exceeded.

Reads go to the master that owns the slot, never to a replica (a replica may lag behind a
revocation). The read cache (client-side tracking) is off on this store. Any failure, including
a master that is failing over, surfaces as :class:`~.base.StoreUnavailable` (a 503), within about
``timeout`` seconds; requests for the other masters' slots are served meanwhile (with
``cluster-require-full-coverage no`` on the servers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final, Generic, TypeVar, cast

import redis.asyncio.cluster as cluster_async
import redis.cluster as cluster_sync
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisClusterUnreachableError
from redis.retry import Retry

from ..records import JSON, Alias, Lookup, RecordUpdate, SessionRecord, Tombstone
from .base import CapAction, Ended, StoreStats, StoreUnavailable
from .redis_cluster_ops import SCRIPTS, Call, ClusterOps, Commands, Op, Script
from .redis_layout import Scalars, decode, flat_fields
from .redis_ops import FAILURES, client_options, unavailable
from .resp import BlockingReader, PipelinedReader, RespError

__all__ = ["AsyncRedisClusterStore", "RedisClusterStore"]

T = TypeVar("T")
R = TypeVar("R", BlockingReader, PipelinedReader)

#: Connections per node the async store may open (redis-py's default, 100, turns a burst of
#: concurrent requests into errors).
MAX_CONNECTIONS: Final = 10_000


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


def _where(seeds: list[tuple[str, int]]) -> str:
    return f"redis cluster {','.join(f'{h}:{p}' for h, p in seeds)}"


def _check_failed(where: str, exc: BaseException) -> StoreUnavailable:
    """The start-up check's message: the seed nodes (no password) and why, in the client's
    words, which name the node that could not be reached (a master that is down, or the last
    seed tried)."""
    why = " ".join(str(exc).split())
    if isinstance(exc, RedisClusterUnreachableError):
        # "Redis Cluster cannot be connected. Please provide at least one reachable node: ..."
        why = f"no node reachable ({why.rpartition('node: ')[2]})"
    return StoreUnavailable(f"{where}: {why[:200] or type(exc).__name__}")


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


class _LeanReads(Generic[R]):
    """The one command on a steady-state request's path, ``HGETALL`` of a session key, sent
    over a lean connection (:mod:`.resp`, as the single-server store does) to the master that
    redis-py's slot map names for the key. Anything else the reply can be (``MOVED`` after a
    failover or a resharding, a dropped connection) sends the read through redis-py instead,
    which follows the redirection and refreshes its map; a timeout is a timeout. Off with TLS
    (the lean connections are plain TCP)."""

    def __init__(self, client: Any, make: Callable[[str, int], R], on: bool) -> None:
        self._client = client
        self._make: Callable[[str, int], R] = make
        self._on = on
        self._readers: dict[str, R] = {}

    def reader(self, name: str) -> R | None:
        if not self._on:
            return None
        try:
            node = self._client.get_node_from_key(name)
        except _CLUSTER_FAILURES:
            return None  # no slot map yet: redis-py builds it on the way
        if node is None:
            return None
        reader = self._readers.get(node.name)
        if reader is None:
            reader = self._readers.setdefault(node.name, self._make(node.host, node.port))
        return reader

    def close(self) -> None:
        for reader in list(self._readers.values()):
            reader.close()
        self._readers.clear()


def _lean_failed(exc: RespError) -> None:
    """After a lean read failed: a timeout is the answer (503); anything else is retried
    through redis-py."""
    if str(exc) == "timeout":
        raise StoreUnavailable("redis unreachable: timeout") from None


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
        seeds = list(seeds)
        self._where = _where(seeds)
        try:
            self._client = cluster_sync.RedisCluster(
                startup_nodes=[cast(Any, cluster_sync.ClusterNode)(h, p) for h, p in seeds],
                retry=Retry(NoBackoff(), 1),
                **_options(timeout, username, password, tls),
            )
        except _CLUSTER_FAILURES as exc:  # it connects here: the start-up check's message
            raise _check_failed(self._where, exc) from None
        self._scripts = {name: self._client.register_script(src) for name, src in SCRIPTS.items()}
        self._scalars = Scalars()
        self._lean = _LeanReads(
            self._client,
            lambda host, port: BlockingReader(host, port, 0, username, password, timeout=timeout),
            on=not tls,
        )

    @property
    def prefix(self) -> str:
        return self._ops.prefix

    def _call(self, call: Call) -> Any:
        client = cast(Any, self._client)
        try:
            if isinstance(call, Script):
                return self._scripts[call.name](keys=list(call.keys), args=list(call.args))
            if isinstance(call, Commands):
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

    def _run(self, op: Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(self._call(call))
        except StopIteration as stop:
            return cast(T, stop.value)

    def get(self, key: str) -> Lookup:
        name = self._ops.skey(key)
        reader = self._lean.reader(name)
        if reader is not None:
            try:
                return decode(key, flat_fields(reader.hgetall(name)), self._scalars)
            except RespError as exc:
                _lean_failed(exc)
        return self._run(self._ops.get(key))

    def insert(
        self,
        record: SessionRecord,
        *,
        max_per_user: int,
        tombstone_until: float,
        on_limit: CapAction = "evict-oldest",
    ) -> Ended:
        return self._run(self._ops.insert(record, max_per_user, tombstone_until, on_limit))

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
            self._ops.rotate(
                old_key,
                new_key,
                update,
                old_becomes,
                max_per_user,
                tombstone_until,
                activity_max,
                on_limit,
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

    def all_sessions(
        self, after: str | None, limit: int
    ) -> tuple[list[SessionRecord], str | None]:
        return self._run(self._ops.all_sessions(after, limit))

    def revoke_user(
        self, user_id: str, *, reason: str, at: float, until: float, keep: str | None = None
    ) -> Ended:
        return self._run(self._ops.revoke_user(user_id, reason, at, until, keep))

    def activity(self, key: str) -> list[dict[str, JSON]]:
        return self._run(self._ops.activity(key))

    def purge(self, now: float, batch: int = 1000) -> int:
        return self._run(self._ops.purge(now, batch))

    def stats(self, now: float) -> StoreStats:
        return self._run(self._ops.stats(now))

    def check(self) -> None:
        """A start-up check: :class:`StoreUnavailable` naming the seed nodes and the cause
        (the node that could not be reached, a refused login) unless every master answers."""
        try:
            self._client.ping(target_nodes=cluster_sync.RedisCluster.PRIMARIES)
        except _CLUSTER_FAILURES as exc:
            raise _check_failed(self._where, exc) from None

    def close(self) -> None:
        self._lean.close()
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
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._ops = ClusterOps(prefix)
        self.read_cache = None
        options = _options(timeout, username, password, tls)
        # redis-py's async cluster client refuses (rather than queues) a command beyond
        # max_connections per node, 100 by default: allow as many as the event loop has
        # requests in flight
        options["max_connections"] = max_connections
        seeds = list(seeds)
        self._where = _where(seeds)
        self._client = cluster_async.RedisCluster(
            startup_nodes=[cast(Any, cluster_async.ClusterNode)(h, p) for h, p in seeds],
            retry=AsyncRetry(NoBackoff(), 1),
            **options,
        )
        self._scripts = {name: self._client.register_script(src) for name, src in SCRIPTS.items()}
        self._scalars = Scalars()
        self._lean = _LeanReads(
            self._client,
            lambda host, port: PipelinedReader(host, port, 0, username, password, timeout=timeout),
            on=not tls,
        )

    @property
    def prefix(self) -> str:
        return self._ops.prefix

    async def _call(self, call: Call) -> Any:
        client = cast(Any, self._client)
        try:
            if isinstance(call, Script):
                return await self._scripts[call.name](keys=list(call.keys), args=list(call.args))
            if isinstance(call, Commands):
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

    async def _run(self, op: Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(await self._call(call))
        except StopIteration as stop:
            return cast(T, stop.value)

    async def get(self, key: str) -> Lookup:
        name = self._ops.skey(key)
        reader = self._lean.reader(name)
        if reader is not None:
            try:
                return decode(key, flat_fields(await reader.hgetall(name)), self._scalars)
            except RespError as exc:
                _lean_failed(exc)
        return await self._run(self._ops.get(key))

    async def insert(
        self,
        record: SessionRecord,
        *,
        max_per_user: int,
        tombstone_until: float,
        on_limit: CapAction = "evict-oldest",
    ) -> Ended:
        return await self._run(self._ops.insert(record, max_per_user, tombstone_until, on_limit))

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
            self._ops.rotate(
                old_key,
                new_key,
                update,
                old_becomes,
                max_per_user,
                tombstone_until,
                activity_max,
                on_limit,
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

    async def all_sessions(
        self, after: str | None, limit: int
    ) -> tuple[list[SessionRecord], str | None]:
        return await self._run(self._ops.all_sessions(after, limit))

    async def revoke_user(
        self, user_id: str, *, reason: str, at: float, until: float, keep: str | None = None
    ) -> Ended:
        return await self._run(self._ops.revoke_user(user_id, reason, at, until, keep))

    async def activity(self, key: str) -> list[dict[str, JSON]]:
        return await self._run(self._ops.activity(key))

    async def purge(self, now: float, batch: int = 1000) -> int:
        return await self._run(self._ops.purge(now, batch))

    async def stats(self, now: float) -> StoreStats:
        return await self._run(self._ops.stats(now))

    async def check(self) -> None:
        """As :meth:`RedisClusterStore.check`, for the event loop."""
        try:
            await self._client.ping(target_nodes=cluster_async.RedisCluster.PRIMARIES)
        except _CLUSTER_FAILURES as exc:
            raise _check_failed(self._where, exc) from None

    async def close(self) -> None:
        self._lean.close()
        await self._client.aclose()
