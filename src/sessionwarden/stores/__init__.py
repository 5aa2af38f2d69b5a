"""Stores: where sessions live. ``open_store(url)`` picks one from a URL.

* ``memory://`` — :class:`~sessionwarden.stores.memory.MemoryStore`, one process, for tests.
* ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` — the embedded default.
* ``redis://host:port/db`` (``rediss://`` for TLS; ``?prefix=app:``) — many processes and hosts.
* ``postgresql://user@host:port/dbname`` (or ``postgres://``; ``?table=sessionwarden``, other
  parameters go to libpq) — several hosts sharing one PostgreSQL database.
* ``redis+cluster://host:port,host:port/`` (``rediss+cluster://`` for TLS; ``?prefix=app:``) —
  a Redis Cluster, sessions sharded over all its masters; the hosts are seed nodes.
* ``redis+sentinel://host:port,host:port/service[/db]`` (``rediss+sentinel://`` for TLS;
  ``?prefix=app:``) — Redis behind Sentinel; the hosts are the sentinels, ``service`` the name
  they monitor the master under.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import (
    SplitResult,
    parse_qs,
    parse_qsl,
    unquote,
    urlencode,
    urlsplit,
)

from .base import (
    AsyncSessionStore,
    InlineAsyncStore,
    SessionLimitReached,
    SessionStore,
    StoreStats,
    StoreUnavailable,
)
from .memory import MemoryStore

__all__ = [
    "AsyncSessionStore",
    "InlineAsyncStore",
    "MemoryStore",
    "SessionLimitReached",
    "SessionStore",
    "StoreStats",
    "StoreURL",
    "StoreUnavailable",
    "open_async_store",
    "open_store",
    "parse_store_url",
]


@dataclass(frozen=True, slots=True)
class StoreURL:
    kind: str  # "memory", "sqlite", "redis", "redis-cluster", "redis-sentinel" or "postgres"
    path: str = ""  # sqlite file
    url: str = ""  # redis or postgres URL without our own query options
    prefix: str = "sw:"  # redis key prefix; postgres: the table name
    hosts: tuple[tuple[str, int], ...] = ()  # cluster seed nodes, or sentinels
    service: str = ""  # the master's name at the sentinels
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False


def _memory(parts: SplitResult) -> StoreURL:
    return StoreURL("memory")


def _sqlite(parts: SplitResult) -> StoreURL:
    if parts.netloc:
        raise ValueError("store URL: use sqlite:///relative.db or sqlite:////absolute.db")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path or path.endswith("/") or "\x00" in path:
        raise ValueError("store URL: sqlite needs a file path")
    return StoreURL("sqlite", path=path)


def _redis(parts: SplitResult) -> StoreURL:
    try:
        parts.port  # noqa: B018 - validates the port
        host = parts.hostname
    except ValueError as exc:
        raise ValueError(f"store URL: {exc}") from None
    if not host:
        raise ValueError("store URL: redis needs a host")
    db = _db(parts.path.lstrip("/"))
    return StoreURL(
        "redis", url=f"{parts.scheme.lower()}://{parts.netloc}/{db}", prefix=_prefix(parts)
    )


def _db(text: str) -> int:
    text = text or "0"
    if not text.isdigit() or not text.isascii() or int(text) > 1_000_000:
        raise ValueError("store URL: redis database must be a number")
    return int(text)


def _prefix(parts: SplitResult) -> str:
    try:
        query = parse_qs(parts.query, strict_parsing=False, max_num_fields=8)
    except ValueError as exc:
        raise ValueError(f"store URL: {exc}") from None
    return query.get("prefix", ["sw:"])[-1]


def _hosts(parts: SplitResult) -> StoreURL:
    """``[user[:password]@]host:port,host:port,...`` (seed nodes or sentinels)."""
    credentials, _, listed = parts.netloc.rpartition("@")
    user, _, secret = credentials.partition(":")
    hosts: list[tuple[str, int]] = []
    for item in listed.split(","):
        host, _, port = item.strip().rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or not port.isascii() or not 0 < int(port) < 65536:
            raise ValueError(f"store URL: {parts.scheme} needs host:port, host:port, ...")
        hosts.append((host, int(port)))
    if len(hosts) > 64:
        raise ValueError("store URL: at most 64 hosts")
    return StoreURL(
        "",
        hosts=tuple(hosts),
        username=unquote(user) or None,
        password=unquote(secret) or None,
        tls=parts.scheme.lower().startswith("rediss"),
        prefix=_prefix(parts),
    )


def _postgres(parts: SplitResult) -> StoreURL:
    """``postgresql://...``: the libpq URI without ``table`` (ours), which names the table."""
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, max_num_fields=32)
    except ValueError as exc:
        raise ValueError(f"store URL: {exc}") from None
    tables = [v for k, v in query if k == "table"]
    table = tables[-1] if tables else "sessionwarden"
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", table):
        raise ValueError("store URL: table must be 1-41 characters of a-z, 0-9 and _")
    if re.search(r"%(?![0-9A-Fa-f]{2})", parts.netloc + parts.path):
        raise ValueError("store URL: a % must start a percent-encoded byte (%XX)")
    rest = urlencode([(k, v) for k, v in query if k != "table"])
    # Written out rather than by urlunsplit, which drops the "//" of an empty host: libpq reads
    # postgresql:///db (the local socket, the default host) but refuses postgresql:/db.
    url = f"postgresql://{parts.netloc}{parts.path}" + (f"?{rest}" if rest else "")
    return StoreURL("postgres", url=url, prefix=table)


def _redis_cluster(parts: SplitResult) -> StoreURL:
    spec = _hosts(parts)
    if parts.path.strip("/"):
        raise ValueError("store URL: redis+cluster takes no database (a cluster has only 0)")
    if "{" in spec.prefix or "}" in spec.prefix:
        raise ValueError("store URL: no braces in a Redis Cluster prefix")
    return replace(spec, kind="redis-cluster")


def _redis_sentinel(parts: SplitResult) -> StoreURL:
    spec = _hosts(parts)
    service, _, db = parts.path.strip("/").partition("/")
    service = unquote(service)
    if not service or "/" in db:
        raise ValueError("store URL: use redis+sentinel://host:port,.../service[/db]")
    return replace(spec, kind="redis-sentinel", service=service, db=_db(db))


#: URL scheme -> the function that checks the rest of the URL and names the store. Adding a
#: store is one entry here (and its opening in open_store / open_async_store).
SCHEMES: Final[dict[str, Callable[[SplitResult], StoreURL]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "redis": _redis,
    "rediss": _redis,
    "postgresql": _postgres,
    "postgres": _postgres,
    "redis+cluster": _redis_cluster,
    "rediss+cluster": _redis_cluster,
    "redis+sentinel": _redis_sentinel,
    "rediss+sentinel": _redis_sentinel,
}


def parse_store_url(url: str) -> StoreURL:
    """Validate a store URL; ``ValueError`` with a plain reason for anything else."""
    if not isinstance(url, str) or not url or len(url) > 4096:
        raise ValueError("store URL: empty or too long")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise ValueError("store URL: control characters are not allowed")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"store URL: {exc}") from None
    parse = SCHEMES.get(parts.scheme.lower())
    if parse is None:
        known = ", ".join(SCHEMES)
        raise ValueError(f"store URL: unsupported scheme {parts.scheme!r} ({known})")
    return parse(parts)


def open_store(url: str) -> SessionStore:
    """A synchronous store for a URL (the WSGI adapter, the CLI)."""
    spec = parse_store_url(url)
    if spec.kind == "memory":
        return MemoryStore()
    if spec.kind == "sqlite":
        from .sqlite import SQLiteStore

        return SQLiteStore(spec.path)
    if spec.kind == "postgres":
        from .postgres import PostgresStore

        return PostgresStore(spec.url, table=spec.prefix)
    if spec.kind == "redis-cluster":
        from .redis_cluster import RedisClusterStore

        return RedisClusterStore(spec.hosts, prefix=spec.prefix, **_auth(spec))
    if spec.kind == "redis-sentinel":
        from .redis_sentinel import SentinelRedisStore

        return SentinelRedisStore(
            spec.hosts, spec.service, db=spec.db, prefix=spec.prefix, **_auth(spec)
        )
    from .redis import RedisStore

    return RedisStore(spec.url, prefix=spec.prefix)


def _auth(spec: StoreURL) -> dict[str, Any]:
    return {"username": spec.username, "password": spec.password, "tls": spec.tls}


def open_async_store(url: str) -> AsyncSessionStore:
    """An asynchronous store for a URL (the ASGI middleware)."""
    spec = parse_store_url(url)
    if spec.kind == "redis":
        from .redis import AsyncRedisStore

        return AsyncRedisStore(spec.url, prefix=spec.prefix)
    if spec.kind == "postgres":
        from .postgres import AsyncPostgresStore

        return AsyncPostgresStore(spec.url, table=spec.prefix)
    if spec.kind == "redis-cluster":
        from .redis_cluster import AsyncRedisClusterStore

        return AsyncRedisClusterStore(spec.hosts, prefix=spec.prefix, **_auth(spec))
    if spec.kind == "redis-sentinel":
        from .redis_sentinel import AsyncSentinelRedisStore

        return AsyncSentinelRedisStore(
            spec.hosts, spec.service, db=spec.db, prefix=spec.prefix, **_auth(spec)
        )
    return InlineAsyncStore(open_store(url), offload_writes=spec.kind == "sqlite")
