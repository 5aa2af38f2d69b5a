"""Shared fixtures: a manual clock, a policy, and every store against its real backend.

Redis tests talk to the real server on 127.0.0.1:6379 with a key prefix of their own per test. When
the server is absent they skip with the reason shown; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionwarden.clock import ManualClock
from sessionwarden.policy import Policy
from sessionwarden.stores.base import SessionStore
from sessionwarden.stores.memory import MemoryStore

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
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001
        if IN_CI:
            pytest.fail(f"Redis at {REDIS_URL} is not reachable ({exc}); CI=true requires it")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable: {exc}")
    return REDIS_URL


def unique_prefix() -> str:
    return f"swtest:{uuid.uuid4().hex[:12]}:"


def drop_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix.replace("{", "\\{").replace("}", "\\}") + "*"))
    if keys:
        client.delete(*keys)
    client.close()


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
