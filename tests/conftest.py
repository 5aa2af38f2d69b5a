"""Shared fixtures: a manual clock, a policy, and every store against its real backend.

Redis tests talk to the real server on 127.0.0.1:6379 with a key prefix of their own per test. When
the server is absent they skip with the reason shown; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

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
from sessionwarden.policy import Policy
from sessionwarden.stores.base import SessionStore
from sessionwarden.stores.memory import MemoryStore

if TYPE_CHECKING:
    from tests.cluster_support import Cluster, SentinelSet

REDIS_URL = os.environ.get("SESSIONWARDEN_TEST_REDIS", "redis://127.0.0.1:6379/0")
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


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    """Each synchronous store against its real backend."""
    kind = request.param
    if kind == "memory":
        yield MemoryStore()
    elif kind == "sqlite":
        from sessionwarden.stores.sqlite import SQLiteStore

        s = SQLiteStore(tmp_path / "sessions.db")
        yield s
        s.close()
    else:
        url = redis_or_skip()
        from sessionwarden.stores.redis import RedisStore

        prefix = unique_prefix()
        r = RedisStore(url, prefix=prefix)
        yield r
        r.close()
        drop_prefix(prefix)
