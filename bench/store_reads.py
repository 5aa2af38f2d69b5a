"""Store read cost: microseconds per ``get`` of one signed-in session, through each store's API.

    PYTHONPATH=src python -m bench.store_reads            # SQLite, and Redis if it answers
    PYTHONPATH=src python -m bench.store_reads --n 20000  # fewer calls

* SQLite: a cached get (the same session read again, nothing committed in between; the cache
  checks ``PRAGMA data_version`` and the store's write generation), and an uncached one
  (``read_cache=0``: every get reads and decodes its row).
* Redis: one session read (HGETALL and decoding) with the read cache off, through the store's
  own connection code and through redis-py's client; and a read served by the CLIENT TRACKING
  read cache.

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
    from sessionwarden.stores.redis import RedisStore

    out: list[tuple[str, float]] = []
    prefix = common.unique_prefix("reads")
    try:
        for label, cache in (("no read cache", 0), ("read cache hit", 10_000)):
            store = RedisStore("redis://127.0.0.1:6379/0", prefix=prefix, read_cache=cache)
            try:
                store.insert(record(), max_per_user=0, tombstone_until=T0)
                store.get(KEY)

                def get(store: RedisStore = store) -> object:
                    return store.get(KEY)

                out.append((f"Redis get, {label}", per_call(get, n)))
            finally:
                store.close()
        out.extend(_redis_py_figures(prefix, n))
    finally:
        common.drop_prefix(prefix)
    return out


def _redis_py_figures(prefix: str, n: int) -> list[tuple[str, float]]:
    """The same read (one HGETALL of the session's hash, then the store's decoding) through
    redis-py's own client and connection classes instead of the store's protocol code."""
    import redis

    from sessionwarden.stores import redis as redis_store

    client = redis.Redis(host="127.0.0.1", port=6379)
    skey = prefix + "s:" + KEY
    try:

        def raw_hgetall() -> object:
            return client.execute_command("HGETALL", skey)

        def decoded() -> object:
            return redis_store.decode_hash(KEY, client.execute_command("HGETALL", skey))

        return [
            ("redis-py HGETALL (reply only)", per_call(raw_hgetall, n)),
            ("redis-py HGETALL + decoding", per_call(decoded, n)),
        ]
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="calls per round")
    args = parser.parse_args()
    for label, micros in sqlite_figures(args.n) + redis_figures(args.n // 5):
        print(f"{label:<40} {micros:8.2f} µs")


if __name__ == "__main__":
    main()
