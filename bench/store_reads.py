"""Store read cost: microseconds per ``get`` of one signed-in session, through each store's API.

    PYTHONPATH=src python -m bench.store_reads            # SQLite, and Redis if it answers
    PYTHONPATH=src python -m bench.store_reads --n 20000  # fewer calls

* SQLite: a cached get (the same session read again, nothing committed in between; the cache
  checks ``PRAGMA data_version`` and the store's write generation), and an uncached one
  (``read_cache=0``: every get reads and decodes its row).
* Redis: one session read (HGETALL and decoding) with the read cache off, through the store's
  own connection code (``stores/resp.py``) and through redis-py's client; the HGETALL alone over
  a bare redis-py connection (no client, pool or retry: the least redis-py can do); a read
  served by the CLIENT TRACKING read cache; and a hit of redis-py's own client-side cache
  (RESP3, Redis 7.4 or later; reported as not available on an older server).

Each figure is the best of five rounds (the machine's other work only ever adds time).
"""

from __future__ import annotations

try:
    from bench import _path
except ImportError:  # run as a script: python bench/store_reads.py
    import _path  # type: ignore[no-redef]
_path.fix()

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

from bench import common  # noqa: E402
from sessionwarden.records import SessionRecord  # noqa: E402

T0 = 1_700_000_000.0
KEY = "ab" * 32


def record(key: str = KEY) -> SessionRecord:
    return SessionRecord(
        key=key,
        created_at=T0,
        last_seen=T0,
        expires_at=T0 + 10 * 365 * 86400,
        rotated_at=T0,
        csrf_secret="c" * 43,
        user_id="alice",
        fingerprint={"ua": "Firefox", "uav": 128, "lang": "en"},
        data={"theme": "dark", "cart": [1, 2, 3]},
    )


def per_call(fn: Callable[[], object], n: int) -> float:
    """Microseconds per call: the best of five rounds of ``n`` calls."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def sqlite_figures(n: int) -> list[tuple[str, float]]:
    from sessionwarden.stores.sqlite import SQLiteStore

    out: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.db")
        for label, size in (("cached", 4096), ("read_cache=0", 0)):
            store = SQLiteStore(path, read_cache=size)
            try:
                store.insert(record(), max_per_user=0, tombstone_until=T0)
                store.get(KEY)

                def get(store: SQLiteStore = store) -> object:
                    return store.get(KEY)

                out.append((f"SQLite get, {label}", per_call(get, n)))
            finally:
                store.close()
    return out


def redis_figures(n: int) -> list[tuple[str, float]]:
    if not common.redis_ok():
        return []
    prefix = common.unique_prefix("reads")
    try:
        return (
            _redis_sync_figures(prefix, n)
            + _redis_async_figures(prefix, n)
            + _redis_py_cache_figures(prefix, n)
        )
    finally:
        common.drop_prefix(prefix)


def _redis_sync_figures(prefix: str, n: int) -> list[tuple[str, float]]:
    from sessionwarden.stores.redis import RedisStore

    out: list[tuple[str, float]] = []
    for label, cache, lean in (
        ("no read cache, hand-written RESP", 0, True),
        ("no read cache, redis-py client", 0, False),
        ("CLIENT TRACKING read cache hit", 10_000, True),
    ):
        store = RedisStore(URL, prefix=prefix, read_cache_ttl=2.0 if cache else 0)
        try:
            if not lean:
                store._fast = None  # every read through redis-py's client and pool
            store.insert(record(), max_per_user=0, tombstone_until=T0)
            store.get(KEY)

            def get(store: RedisStore = store) -> object:
                return store.get(KEY)

            out.append((f"Redis get (sync), {label}", per_call(get, n)))
        finally:
            store.close()
    out.append(("redis-py bare Connection HGETALL (sync)", _bare_sync(prefix, n)))
    return out


def _redis_async_figures(prefix: str, n: int) -> list[tuple[str, float]]:
    import asyncio

    from sessionwarden.stores.redis import AsyncRedisStore

    async def measure(lean: bool) -> float:
        store = AsyncRedisStore(URL, prefix=prefix, read_cache_ttl=0)
        try:
            if not lean:
                store._fast = None
            await store.get(KEY)
            best = float("inf")
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(n):
                    await store.get(KEY)
                best = min(best, time.perf_counter() - start)
            return best / n * 1e6
        finally:
            await store.close()

    return [
        ("Redis get (async), no read cache, hand-written RESP", asyncio.run(measure(True))),
        ("Redis get (async), no read cache, redis.asyncio client", asyncio.run(measure(False))),
        ("redis.asyncio bare Connection HGETALL", asyncio.run(_bare_async(prefix, n))),
    ]


def _bare_sync(prefix: str, n: int) -> float:
    """The HGETALL alone over one of redis-py's own connections (no client, pool or retry),
    the least redis-py can do per read; the store's hand-written reader does the same."""
    from redis.connection import Connection

    conn = Connection(host="127.0.0.1", port=6379)
    skey = prefix + "s:" + KEY
    try:

        def read() -> object:
            conn.send_command("HGETALL", skey)
            return conn.read_response()

        return per_call(read, n)
    finally:
        conn.disconnect()


async def _bare_async(prefix: str, n: int) -> float:
    from redis.asyncio.connection import Connection

    conn = Connection(host="127.0.0.1", port=6379)
    skey = prefix + "s:" + KEY
    try:
        await conn.connect()
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(n):
                await conn.send_command("HGETALL", skey)
                await conn.read_response()
            best = min(best, time.perf_counter() - start)
        return best / n * 1e6
    finally:
        await conn.disconnect()


def _redis_py_cache_figures(prefix: str, n: int) -> list[tuple[str, float]]:
    """redis-py's own client-side cache (RESP3, ``cache_config``): a hit of the same HGETALL,
    decoded by the store's decoder."""
    import redis
    from redis.cache import CacheConfig

    from sessionwarden.stores import redis_layout

    client = redis.Redis.from_url(URL, protocol=3, cache_config=CacheConfig())
    skey = prefix + "s:" + KEY
    try:
        try:
            client.hgetall(skey)
        except redis.ConnectionError as exc:  # it needs Redis 7.4 or later
            print(f"redis-py client-side cache: not available ({exc})")
            return []

        def get() -> object:
            return redis_layout.decode(KEY, redis_layout.pairs(client.hgetall(skey)))

        return [("redis-py client-side cache hit (sync)", per_call(get, n))]
    finally:
        client.close()


URL = "redis://127.0.0.1:6379/0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="calls per round")
    args = parser.parse_args()
    for label, micros in sqlite_figures(args.n) + redis_figures(args.n // 5):
        print(f"{label:<56} {micros:8.2f} µs")


if __name__ == "__main__":
    main()
