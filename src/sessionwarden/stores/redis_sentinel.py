"""Redis behind Sentinel: the sentinels name the master, and the ordinary Redis store
(:class:`~.redis.RedisStore`, :class:`~.redis.AsyncRedisStore`) runs on a connection to it.

Every new connection asks the sentinels for the master's address (redis-py's
``SentinelConnectionPool``), so after a failover the store reaches the promoted replica by
itself. While the master is down and not yet replaced, each request fails within about
``timeout`` seconds with :class:`~.base.StoreUnavailable` (a 503): connections to the old master
are refused or time out, and a connection that finds its server demoted to a replica
(``READONLY``) is dropped and asks the sentinels again. Reads and writes all go to the master,
never to a replica that may lag behind a revocation.

The store reads through redis-py here (a client object, not a plain URL), so the lean reader
and the local read cache of a plain ``redis://`` store are off.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis.asyncio.sentinel as sentinel_async
import redis.sentinel as sentinel_sync
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError

from .base import StoreUnavailable
from .redis import AsyncRedisStore, RedisStore
from .redis_ops import FAILURES, client_options

__all__ = ["AsyncSentinelRedisStore", "SentinelRedisStore"]


def _connection_options(
    timeout: float, db: int, username: str | None, password: str | None, tls: bool
) -> dict[str, Any]:
    options = client_options(timeout)
    options.update(db=db, username=username, password=password, ssl=tls)
    return options


def _sentinel_options(timeout: float) -> dict[str, Any]:
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout}


def _where(sentinels: list[tuple[str, int]], service: str) -> str:
    return f"redis sentinels {','.join(f'{h}:{p}' for h, p in sentinels)} service {service!r}"


def _check_failed(where: str, exc: BaseException) -> StoreUnavailable:
    """The start-up check's message: the sentinels and the service (no password), and why."""
    if isinstance(exc, MasterNotFoundError | sentinel_async.MasterNotFoundError):
        # The error's own text holds the whole client's repr.
        why = "no master known (the sentinels are unreachable, or monitor no such service)"
    else:
        why = " ".join(str(exc).split())[:200] or type(exc).__name__
    return StoreUnavailable(f"{where}: {why}")


class SentinelRedisStore(RedisStore):
    """:class:`~.redis.RedisStore` on the master the sentinels name for ``service``."""

    def __init__(
        self,
        sentinels: Iterable[tuple[str, int]],
        service: str,
        *,
        db: int = 0,
        prefix: str = "sw:",
        timeout: float = 1.0,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
    ) -> None:
        addresses = list(sentinels)
        self._where = _where(addresses, service)
        self.sentinel = sentinel_sync.Sentinel(
            addresses, sentinel_kwargs=_sentinel_options(timeout)
        )
        self._master = self.sentinel.master_for(
            service,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            **_connection_options(timeout, db, username, password, tls),
        )
        super().__init__(self._master, prefix=prefix, timeout=timeout)

    def check(self) -> None:
        """A start-up check: :class:`StoreUnavailable` naming the sentinels, the service and
        the cause unless the master they name answers."""
        try:
            self._master.ping()
        except FAILURES as exc:
            raise _check_failed(self._where, exc) from None

    def close(self) -> None:
        super().close()
        self._master.close()
        for client in self.sentinel.sentinels:
            client.close()


class AsyncSentinelRedisStore(AsyncRedisStore):
    """:class:`~.redis.AsyncRedisStore` on the master the sentinels name for ``service``."""

    def __init__(
        self,
        sentinels: Iterable[tuple[str, int]],
        service: str,
        *,
        db: int = 0,
        prefix: str = "sw:",
        timeout: float = 1.0,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
    ) -> None:
        addresses = list(sentinels)
        self._where = _where(addresses, service)
        self.sentinel = sentinel_async.Sentinel(
            addresses, sentinel_kwargs=_sentinel_options(timeout)
        )
        self._master = self.sentinel.master_for(
            service,
            retry=AsyncRetry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            **_connection_options(timeout, db, username, password, tls),
        )
        super().__init__(self._master, prefix=prefix, timeout=timeout)

    async def check(self) -> None:
        """As :meth:`SentinelRedisStore.check`, for the event loop."""
        try:
            await self._master.ping()
        except FAILURES as exc:
            raise _check_failed(self._where, exc) from None

    async def close(self) -> None:
        await super().close()
        await self._master.aclose()
        for client in self.sentinel.sentinels:
            await client.aclose()
