"""Redis store: many processes and hosts share sessions through one Redis (6.2 or later).

Layout: :mod:`sessionwarden.stores.redis_layout` (one table of key kinds, which the Lua
scripts receive, and one table of the hash fields). Each session key is one HASH, so
:meth:`RedisStore.get` is one HGETALL; a user's live keys are a sorted set; the activity trail
is a list moved on rotation and deleted with the record. A process running an earlier version
cannot read what this layout writes, so upgrade every process sharing a Redis before new ones
write to it; ``sessionwarden migrate`` then rewrites what earlier versions left (see
:meth:`RedisStore.migrate`).

Every key expires with its deadline (PEXPIREAT at ``expires_at``, or ``until`` for aliases and
tombstones; a user index no earlier than its latest member), so Redis does most of the purging.
Deadlines come from the core's clock, which may differ from Redis' own (clock skew between hosts,
an injected clock): an expiry is therefore never set sooner than :data:`MIN_RETENTION_MS` after
Redis' current time, so an already-due item is still reported (as expired, as revoked) for a
while instead of vanishing mid-request. :meth:`~RedisStore.purge` removes items by their stored
deadline, exactly like the other stores.

Every multi-key step (insert with cap eviction, update, rotate, revoke, ...) is one Lua script,
hence atomic. Scripts derive some key names (a user's index, an evicted session) from stored
data. That is fine on a single Redis or with replicas; on Redis Cluster pass
``cluster_hash_tag=True``, which wraps the prefix in a hash tag (``{sw}:``) so all keys of a store
live in one slot: the scripts stay atomic, at the price of not sharding sessions across the
cluster (one slot, hence one primary, holds them all).

Any Redis failure surfaces as :class:`~sessionwarden.stores.base.StoreUnavailable` within about
``timeout`` seconds: socket and connect timeouts are ``timeout``, and a command is retried only
once, immediately, and only after a connection error (a dropped connection), never after a timeout.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Final, TypeVar, cast

import redis as redis_sync
import redis.asyncio as redis_async
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from ..records import JSON, Alias, Lookup, RecordUpdate, SessionRecord, Tombstone
from .base import CapAction, Ended, StoreStats, StoreUnavailable
from .redis_layout import MIN_RETENTION_MS, SCRIPTS, decode, flat_fields
from .redis_ops import (
    FAILURES,
    Call,
    Op,
    Ops,
    ScriptCommands,
    client_options,
    forget,
    read_cache,
    unavailable,
)
from .resp import BlockingReader, PipelinedReader, RespError, fast_path_target
from .tracking import MISS

__all__ = ["MIN_RETENTION_MS", "AsyncRedisStore", "RedisStore"]

T = TypeVar("T")

#: Seconds a session read stays in the local read cache by default (see :mod:`.tracking`).
READ_CACHE_TTL: Final = 2.0
#: Session reads the local read cache holds by default.
READ_CACHE_SIZE: Final = 10_000
#: The scripts that change nothing. After any other, the store sends Redis a ``PING`` on the
#: same connection and waits for its answer before the write returns (a *fence*). Redis sends a
#: script's answer and the invalidation notices it caused to the other processes' read caches
#: in one pass over its clients, answer first; when Redis is preempted between the two (a
#: loaded host), the writer could answer its request, and the client reach another process,
#: before that process's notice left Redis: the other process served what it had cached from
#: before the write (seen behind gunicorn and uvicorn workers: a value written through one
#: worker missing in the next request's answer from another). Redis reads the ``PING`` only
#: after finishing that pass, so once it is answered every notice of the write is on its way
#: to the other processes' sockets; the write costs one round trip more.
READ_ONLY_SCRIPTS: Final = frozenset({"stats", "user_sessions"})

# -- the stores ---------------------------------------------------------------------------------


def _check_failed(client: Any, exc: BaseException) -> StoreUnavailable:
    """The start-up check's message: where (no password) and why, in the client's words."""
    kw = client.connection_pool.connection_kwargs
    where = f"redis at {kw.get('host', '?')}:{kw.get('port', '?')} db {kw.get('db', 0)}"
    why = " ".join(str(exc).split())[:200] or type(exc).__name__
    if "DB index" in why:
        why = f"{why} (the server has fewer databases; see its 'databases' setting)"
    return StoreUnavailable(f"{where}: {why}")


class RedisStore:
    """Synchronous Redis store (redis-py). Thread-safe: one client and pool per store."""

    def __init__(
        self,
        url_or_client: str | redis_sync.Redis,
        *,
        prefix: str = "sw:",
        timeout: float = 1.0,
        cluster_hash_tag: bool = False,
        read_cache_ttl: float = READ_CACHE_TTL,
        read_cache_size: int = READ_CACHE_SIZE,
    ) -> None:
        self._ops = Ops(prefix, cluster_hash_tag)
        if isinstance(url_or_client, str):
            retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
            self._client: redis_sync.Redis = redis_sync.Redis.from_url(
                url_or_client, retry=retry, **client_options(timeout)
            )
            self._owned = True
            target = fast_path_target(url_or_client)
        else:
            self._client = url_or_client
            self._owned = False
            target = None
        self._scalars = self._ops.scalars
        # The hot read (one HGETALL per request) goes over a lean connection per thread.
        self._fast = BlockingReader(*target, timeout=timeout) if target is not None else None
        #: The local read cache (``None`` when off); see :mod:`sessionwarden.stores.tracking`.
        self.read_cache = read_cache(
            target, self._ops.prefix, timeout, read_cache_ttl, read_cache_size
        )
        if self._fast is not None:
            self._fast.tracker = self.read_cache  # NOLOOP registration (see .tracking)
        self._scripts = {name: self._client.register_script(src) for name, src in SCRIPTS.items()}
        self._script_command = ScriptCommands()
        self._closed = threading.Event()

    @property
    def prefix(self) -> str:
        """The prefix every key of this store starts with (hash tag included)."""
        return self._ops.prefix

    def _call(self, call: Call) -> Any:
        fast = self._fast
        if fast is not None and call.script is not None:
            try:
                try:
                    return fast.call(*self._script_command(call))
                except RespError as exc:
                    if "NOSCRIPT" not in str(exc):
                        raise
                return fast.call(*self._script_command.by_source(call))
            except RespError as exc:
                raise StoreUnavailable(f"redis unreachable: {exc}") from None
        try:
            if call.script is None:
                return cast(Any, self._client).execute_command(*call.args)
            return self._scripts[call.script](keys=list(call.keys), args=list(call.args))
        except FAILURES as exc:
            raise unavailable(exc) from exc

    def _run(self, op: Op[T], *, keep: str | None = None) -> T:
        """Run ``op``; then forget the keys its scripts wrote, but ``keep`` (whose result the
        caller hands to :meth:`ReadCache.written`)."""
        written: list[str] = []
        wrote = False
        try:
            call = next(op)
            while True:
                if call.script is not None:
                    written += [k for k in call.keys if k != keep]
                    wrote = wrote or call.script not in READ_ONLY_SCRIPTS
                call = op.send(self._call(call))
        except StopIteration as stop:
            if wrote:
                self._fence()
            return cast(T, stop.value)
        finally:
            if written and self.read_cache is not None:
                self.read_cache.evict(written)

    def _fence(self) -> None:
        """After a write, wait until Redis has sent its invalidation notices (see
        :data:`READ_ONLY_SCRIPTS`)."""
        if self.read_cache is None or self._fast is None:
            return
        try:
            self._fast.call(b"PING")
        except RespError as exc:
            raise StoreUnavailable(f"redis unreachable: {exc}") from None

    def get(self, key: str) -> Lookup:
        cache = self.read_cache
        if cache is None:
            return self._read(key)
        name = self._ops.skey(key)
        hit = cache.lookup(name)
        if hit is not MISS:
            return cast(Lookup, hit)
        ticket = cache.begin(name, threading.get_ident())
        found: Lookup = None
        try:
            found = self._read(key)
        finally:
            cache.complete(name, ticket, found)  # a failed read keeps nothing
        return found

    def insert(
        self,
        record: SessionRecord,
        *,
        max_per_user: int,
        tombstone_until: float,
        on_limit: CapAction = "evict-oldest",
    ) -> Ended:
        op = self._ops.insert(record, max_per_user, tombstone_until, on_limit)
        evicted = self._run(op)
        forget(self.read_cache, self._ops, evicted)
        return evicted

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
        op = self._ops.rotate(
            old_key,
            new_key,
            update,
            old_becomes,
            max_per_user,
            tombstone_until,
            activity_max,
            on_limit,
        )
        cache = self.read_cache
        if cache is None:
            return (self._run(op))[0]
        name = self._ops.skey(new_key)
        ticket = cache.begin(name, threading.get_ident())
        evicted: Ended | None = None
        written: Lookup = None
        try:
            evicted, written = self._run(op, keep=name)
        finally:
            cache.written(name, ticket, written)  # keeps the new record as written
        forget(cache, self._ops, evicted or [])
        return evicted

    def update(self, key: str, update: RecordUpdate, *, activity_max: int = 0) -> bool:
        op = self._ops.update(key, update, activity_max)
        cache = self.read_cache
        if cache is None:
            return self._run(op) is not None
        name = self._ops.skey(key)
        ticket = cache.begin(name, threading.get_ident())
        written: Lookup = None
        try:
            written = self._run(op, keep=name)
        finally:
            cache.written(name, ticket, written)  # keeps the record as written (see .tracking)
        return written is not None

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
        revoked = self._run(self._ops.revoke_user(user_id, reason, at, until, keep))
        forget(self.read_cache, self._ops, revoked)
        return revoked

    def activity(self, key: str) -> list[dict[str, JSON]]:
        return self._run(self._ops.activity(key))

    def purge(self, now: float, batch: int = 1000) -> int:
        removed = self._run(self._ops.purge(now, batch))
        forget(self.read_cache, self._ops, None)
        return removed

    def stats(self, now: float) -> StoreStats:
        return self._run(self._ops.stats(now))

    def migrate(self, batch: int = 1000) -> int:
        """Bring what earlier versions wrote to this layout: user indexes holding keys as is
        get their packed members, records holding fingerprint traits under their old names
        (``f:ua``...) get them under their one-digit fields. Idempotent, safe while the store
        is in use (each step is one script); run it once every process has been upgraded.
        Returns how many keys changed (0 once done)."""
        changed = self._run(self._ops.migrate(batch))
        forget(self.read_cache, self._ops, None)
        return changed

    def _read(self, key: str) -> Lookup:
        fast = self._fast
        if fast is None:
            return self._run(self._ops.get(key))
        try:
            reply = fast.hgetall(self._ops.skey(key))
        except RespError as exc:
            raise StoreUnavailable(f"redis unreachable: {exc}") from None
        return decode(key, flat_fields(reply), self._scalars)

    def check(self) -> None:
        """A start-up check: :class:`StoreUnavailable` naming the server and the cause (refused
        connection, no such database, authentication) unless the server answers."""
        try:
            self._client.ping()
        except FAILURES as exc:
            raise _check_failed(self._client, exc) from None

    def close(self) -> None:
        if self.read_cache is not None:
            self.read_cache.close()
        if self._fast is not None:
            self._fast.close()
        if self._owned and not self._closed.is_set():
            self._closed.set()
            self._client.close()


class AsyncRedisStore:
    """Asynchronous Redis store (``redis.asyncio``) for the ASGI middleware."""

    def __init__(
        self,
        url_or_client: str | redis_async.Redis,
        *,
        prefix: str = "sw:",
        timeout: float = 1.0,
        cluster_hash_tag: bool = False,
        read_cache_ttl: float = READ_CACHE_TTL,
        read_cache_size: int = READ_CACHE_SIZE,
    ) -> None:
        self._ops = Ops(prefix, cluster_hash_tag)
        if isinstance(url_or_client, str):
            retry = AsyncRetry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
            self._client: redis_async.Redis = redis_async.Redis.from_url(
                url_or_client, retry=retry, **client_options(timeout)
            )
            self._owned = True
            target = fast_path_target(url_or_client)
        else:
            self._client = url_or_client
            self._owned = False
            target = None
        self._scalars = self._ops.scalars
        # The hot read (one HGETALL per request) goes over a lean pipelined connection.
        self._fast = PipelinedReader(*target, timeout=timeout) if target is not None else None
        #: The local read cache (``None`` when off); see :mod:`sessionwarden.stores.tracking`.
        self.read_cache = read_cache(
            target, self._ops.prefix, timeout, read_cache_ttl, read_cache_size
        )
        if self._fast is not None:
            self._fast.tracker = self.read_cache  # NOLOOP registration (see .tracking)
        self._scripts = {name: self._client.register_script(src) for name, src in SCRIPTS.items()}
        self._script_command = ScriptCommands()
        self._closed = False

    @property
    def prefix(self) -> str:
        """The prefix every key of this store starts with (hash tag included)."""
        return self._ops.prefix

    async def _call(self, call: Call) -> Any:
        fast = self._fast
        if fast is not None and call.script is not None:
            try:
                try:
                    return await fast.call(*self._script_command(call))
                except RespError as exc:
                    if "NOSCRIPT" not in str(exc):
                        raise
                return await fast.call(*self._script_command.by_source(call))
            except RespError as exc:
                raise StoreUnavailable(f"redis unreachable: {exc}") from None
        try:
            if call.script is None:
                return await cast(Any, self._client).execute_command(*call.args)
            return await self._scripts[call.script](keys=list(call.keys), args=list(call.args))
        except FAILURES as exc:
            raise unavailable(exc) from exc

    async def _run(self, op: Op[T], *, keep: str | None = None) -> T:
        """Run ``op``; then forget the keys its scripts wrote, but ``keep`` (whose result the
        caller hands to :meth:`ReadCache.written`)."""
        written: list[str] = []
        wrote = False
        try:
            call = next(op)
            while True:
                if call.script is not None:
                    written += [k for k in call.keys if k != keep]
                    wrote = wrote or call.script not in READ_ONLY_SCRIPTS
                call = op.send(await self._call(call))
        except StopIteration as stop:
            if wrote:
                await self._fence()
            return cast(T, stop.value)
        finally:
            if written and self.read_cache is not None:
                self.read_cache.evict(written)

    async def _fence(self) -> None:
        """After a write, wait until Redis has sent its invalidation notices (see
        :data:`READ_ONLY_SCRIPTS`)."""
        if self.read_cache is None or self._fast is None:
            return
        try:
            await self._fast.call(b"PING")
        except RespError as exc:
            raise StoreUnavailable(f"redis unreachable: {exc}") from None

    async def get(self, key: str) -> Lookup:
        cache = self.read_cache
        if cache is None:
            return await self._read(key)
        name = self._ops.skey(key)
        hit = cache.lookup(name)
        if hit is not MISS:
            return cast(Lookup, hit)
        ticket = cache.begin(name, asyncio.get_running_loop())
        found: Lookup = None
        try:
            found = await self._read(key)
        finally:
            cache.complete(name, ticket, found)  # a failed read keeps nothing
        return found

    async def _read(self, key: str) -> Lookup:
        fast = self._fast
        if fast is None:
            return await self._run(self._ops.get(key))
        try:
            reply = await fast.hgetall(self._ops.skey(key))
        except RespError as exc:
            raise StoreUnavailable(f"redis unreachable: {exc}") from None
        return decode(key, flat_fields(reply), self._scalars)

    async def insert(
        self,
        record: SessionRecord,
        *,
        max_per_user: int,
        tombstone_until: float,
        on_limit: CapAction = "evict-oldest",
    ) -> Ended:
        op = self._ops.insert(record, max_per_user, tombstone_until, on_limit)
        evicted = await self._run(op)
        forget(self.read_cache, self._ops, evicted)
        return evicted

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
        op = self._ops.rotate(
            old_key,
            new_key,
            update,
            old_becomes,
            max_per_user,
            tombstone_until,
            activity_max,
            on_limit,
        )
        cache = self.read_cache
        if cache is None:
            return (await self._run(op))[0]
        name = self._ops.skey(new_key)
        ticket = cache.begin(name, asyncio.get_running_loop())
        evicted: Ended | None = None
        written: Lookup = None
        try:
            evicted, written = await self._run(op, keep=name)
        finally:
            cache.written(name, ticket, written)  # keeps the new record as written
        forget(cache, self._ops, evicted or [])
        return evicted

    async def update(self, key: str, update: RecordUpdate, *, activity_max: int = 0) -> bool:
        op = self._ops.update(key, update, activity_max)
        cache = self.read_cache
        if cache is None:
            return await self._run(op) is not None
        name = self._ops.skey(key)
        ticket = cache.begin(name, asyncio.get_running_loop())
        written: Lookup = None
        try:
            written = await self._run(op, keep=name)
        finally:
            cache.written(name, ticket, written)  # keeps the record as written (see .tracking)
        return written is not None

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
        revoked = await self._run(self._ops.revoke_user(user_id, reason, at, until, keep))
        forget(self.read_cache, self._ops, revoked)
        return revoked

    async def activity(self, key: str) -> list[dict[str, JSON]]:
        return await self._run(self._ops.activity(key))

    async def purge(self, now: float, batch: int = 1000) -> int:
        removed = await self._run(self._ops.purge(now, batch))
        forget(self.read_cache, self._ops, None)
        return removed

    async def stats(self, now: float) -> StoreStats:
        return await self._run(self._ops.stats(now))

    async def check(self) -> None:
        """As :meth:`RedisStore.check`, for the event loop (``await store.check()``)."""
        try:
            await self._client.ping()
        except FAILURES as exc:
            raise _check_failed(self._client, exc) from None

    async def close(self) -> None:
        if self.read_cache is not None:
            self.read_cache.close()
        if self._fast is not None:
            self._fast.close()
        if self._owned and not self._closed:
            self._closed = True
            await self._client.aclose()
