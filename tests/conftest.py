"""Shared fixtures: a manual clock, a policy, and every store against its real backend.

Redis tests talk to the real server on 127.0.0.1:6379 with a key prefix of their own per test. When
the server is absent they skip with the reason shown; under ``CI=true`` they fail instead.
PostgreSQL tests do the same with the server on 127.0.0.1:5432: the run creates a database of its
own (``swtest_<random>``), each test a table of its own in it, and the database is dropped at the
end of the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sessionwarden import tokens
from sessionwarden.clock import ManualClock
from sessionwarden.events import Event, EventKind
from sessionwarden.policy import Policy
from sessionwarden.stores.base import SessionStore
from sessionwarden.stores.memory import MemoryStore

if TYPE_CHECKING:
    from tests.cluster_support import Cluster, SentinelSet
    from tests.private_redis import PrivateRedis

REDIS_URL = os.environ.get("SESSIONWARDEN_TEST_REDIS", "redis://127.0.0.1:6379/0")
#: The server's maintenance database, through which the run's own database is created and dropped.
POSTGRES_ADMIN_URL = os.environ.get(
    "SESSIONWARDEN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SECRET = b"k" * 32


def redis_or_skip() -> str:
    """Return the Redis URL when the server answers; skip (or fail under CI) otherwise."""
    try:
        import redis
    except ImportError:  # pragma: no cover - the test extra installs it
        if IN_CI:
            pytest.fail("redis-py is not installed (CI=true: Redis tests must run)")
        pytest.skip("redis-py is not installed")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=3, socket_connect_timeout=3)
    error: Exception | None = None
    for _ in range(3):  # a busy server (another test's CLIENT PAUSE) is not an absent one
        try:
            client.ping()
            return REDIS_URL
        except Exception as exc:
            error = exc
            time.sleep(1)
    if IN_CI:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({error}); CI=true requires it")
    pytest.skip(f"Redis at {REDIS_URL} is not reachable: {error}")


def cluster_tools_or_skip() -> None:
    """Skip (or fail under CI) when ``redis-server``/``redis-cli`` are not installed: the Redis
    Cluster and Sentinel fixtures start their own servers from them."""
    from tests.cluster_support import missing_binaries

    missing = missing_binaries()
    if missing and IN_CI:
        pytest.fail(f"not installed: {', '.join(missing)} (CI=true: cluster tests must run)")
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (Debian: redis-server, redis-tools)")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A Redis Cluster of 3 masters + 3 replicas on loopback ports, started for this run and
    stopped (by PID) at its end. Tests that kill nodes start their own instead."""
    cluster_tools_or_skip()
    from tests.cluster_support import redis_cluster as start

    with start(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """A master, 2 replicas and 3 sentinels (quorum 2) on loopback ports, started for this run
    and stopped (by PID) at its end. Tests that kill servers start their own instead."""
    cluster_tools_or_skip()
    from tests.cluster_support import redis_sentinel as start

    with start(tmp_path_factory.mktemp("redis-sentinel")) as group:
        yield group


def postgres_or_skip() -> str:
    """Return the admin URL when PostgreSQL answers; skip (or fail under CI) otherwise."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the test extra installs it
        if IN_CI:
            pytest.fail("psycopg is not installed (CI=true: PostgreSQL tests must run)")
        pytest.skip("psycopg is not installed")
    error: Exception | None = None
    for _ in range(3):
        try:
            with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return POSTGRES_ADMIN_URL
        except Exception as exc:
            error = exc
            time.sleep(1)
    if IN_CI:
        pytest.fail(
            f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable ({error}); CI=true requires it"
        )
    pytest.skip(f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable: {error}")


_PG_DATABASE: dict[str, str] = {}


def postgres_database() -> str:
    """The URL of this run's own database (created on first use, dropped when the run ends)."""
    if "url" not in _PG_DATABASE:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        admin = postgres_or_skip()
        name = f"swtest_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        _PG_DATABASE["name"] = name
        params = conninfo_to_dict(admin)
        host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
        user = params.get("user", "postgres")
        _PG_DATABASE["url"] = f"postgresql://{user}@{host}:{port}/{name}"
    return _PG_DATABASE["url"]


def unique_table() -> str:
    return f"sw_{uuid.uuid4().hex[:12]}"


def postgres_table(table: str | None = None) -> tuple[str, str]:
    """``(database URL, table)``: a fresh table (schema created) in this run's database."""
    from sessionwarden.stores.postgres import init_schema

    url = postgres_database()
    name = table or unique_table()
    init_schema(url, table=name)
    return url, name


def postgres_store_url() -> str:
    """A ``postgresql://`` store URL naming a fresh table (schema created) in this run's
    database."""
    url, table = postgres_table()
    return f"{url}?table={table}"


def _drop_postgres_database() -> None:
    name = _PG_DATABASE.get("name")
    if name is None:
        return
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def unique_prefix() -> str:
    return f"swtest:{uuid.uuid4().hex[:12]}:"


def drop_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix.replace("{", "\\{").replace("}", "\\}") + "*"))
    if keys:
        client.delete(*keys)
    client.close()


# -- a whole-run check: no session ID or CSRF token ever reaches a log line ------------------------
_ISSUED: set[str] = set()
_LOG_LINES: list[str] = []


class _Capture(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _LOG_LINES.append(record.getMessage())


def pytest_configure(config: pytest.Config) -> None:
    """Record every session ID and masked CSRF token the library issues during the run, and
    every line it logs, so the run can prove that none of the former is in the latter."""
    real_id, real_mask = tokens.new_session_id, tokens.mask_token

    def issued_id() -> str:
        value = real_id()
        _ISSUED.add(value)
        return value

    def issued_token(secret_b64: str) -> str:
        value = real_mask(secret_b64)
        _ISSUED.add(value)
        _ISSUED.add(secret_b64)
        return value

    tokens.new_session_id = issued_id  # type: ignore[assignment]
    tokens.mask_token = issued_token  # type: ignore[assignment]
    logger = logging.getLogger("sessionwarden")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(_Capture())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _drop_postgres_database()
    leaked = sorted({v[:6] + "…" for v in _ISSUED for line in _LOG_LINES if v in line})
    if leaked:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nLOG LEAK: {len(leaked)} session IDs or CSRF tokens appear in log lines")
    elif _LOG_LINES:
        print(
            f"\nlog check: {len(_LOG_LINES)} log lines, {len(_ISSUED)} issued IDs and tokens,"
            " none of them logged"
        )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
def policy() -> Policy:
    return Policy(secret_keys=(SECRET,))


#: The stores every suite that takes ``store`` runs against; the store contract adds the
#: Redis Cluster and Sentinel stores (:data:`DISTRIBUTED_KINDS`), which start their own servers.
STORE_KINDS = ["memory", "sqlite", "redis", "postgres"]
DISTRIBUTED_KINDS = ["redis-cluster", "redis-sentinel"]


@contextlib.contextmanager
def open_test_store(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[SessionStore]:
    """A synchronous store of ``kind`` against its real backend, with keys of its own."""
    if kind == "memory":
        yield MemoryStore()
    elif kind == "sqlite":
        from sessionwarden.stores.sqlite import SQLiteStore

        s = SQLiteStore(tmp_path / "sessions.db")
        yield s
        s.close()
    elif kind == "postgres":
        from sessionwarden.stores.postgres import PostgresStore

        url, table = postgres_table()
        p = PostgresStore(url, table=table)
        yield p
        p.close()
    elif kind == "redis":
        url = redis_or_skip()
        from sessionwarden.stores.redis import RedisStore

        prefix = unique_prefix()
        r = RedisStore(url, prefix=prefix)
        yield r
        r.close()
        drop_prefix(prefix)
    elif kind == "redis-cluster":
        cluster = request.getfixturevalue("redis_cluster")
        from sessionwarden.stores.redis_cluster import RedisClusterStore

        prefix = unique_prefix()
        c = RedisClusterStore(cluster.seeds, prefix=prefix)
        yield c
        c.close()
        cluster.drop_prefix(prefix)
    else:
        group = request.getfixturevalue("redis_sentinel")
        from sessionwarden.stores.redis_sentinel import SentinelRedisStore

        prefix = unique_prefix()
        r = SentinelRedisStore(group.sentinel_addresses, group.name, prefix=prefix)
        yield r
        r.close()
        group.drop_prefix(prefix)


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    """Each synchronous store against its real backend."""
    with open_test_store(request.param, request, tmp_path) as s:
        yield s


class Recorder:
    """An event sink that keeps every event (the tests' one recorder)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def count(self, kind: EventKind) -> int:
        return len(self.of(kind))

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own on a free loopback port (the tests that stop, pause or
    kill the server), killed at the end."""
    from tests.private_redis import PrivateRedis

    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()
