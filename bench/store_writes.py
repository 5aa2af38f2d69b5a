"""Store write cost: microseconds per ``update`` of one signed-in session (one data key set, as
a cart counter does), and per ``get`` of it right after, through each store's API.

    PYTHONPATH=src python -m bench.store_writes            # SQLite, and Redis if it answers
    PYTHONPATH=src python -m bench.store_writes --n 2000   # fewer calls

* SQLite: one ``BEGIN IMMEDIATE`` transaction per update (the live check, the merge, the UPDATE,
  the commit); the get after it is served from the connection's read cache, which the write
  refreshed.
* Redis (synchronous store): the update script sent as ``EVALSHA`` over the store's own
  connection (``stores/resp.py``) and, for comparison, through redis-py's client; the get after
  it is served from the read cache, which keeps the record the script answered with.

Each figure is the best of five rounds (the machine's other work only ever adds time).
"""

from __future__ import annotations

try:
    from bench import _path
except ImportError:  # run as a script: python bench/store_writes.py
    import _path  # type: ignore[no-redef]
_path.fix()

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from itertools import count  # noqa: E402
from typing import Any  # noqa: E402

from bench import common  # noqa: E402
from bench.store_reads import KEY, T0, URL, per_call, record  # noqa: E402
from sessionwarden.records import RecordUpdate  # noqa: E402


def _figures(label: str, store: Any, n: int) -> list[tuple[str, float]]:
    store.insert(record(), max_per_user=0, tombstone_until=T0)
    store.get(KEY)
    counter = count()

    def update() -> object:
        return store.update(KEY, RecordUpdate(set_data={"cart": next(counter)}))

    best_get = float("inf")
    for _ in range(5):
        spent = 0.0
        for _ in range(n):
            update()
            start = time.perf_counter()
            store.get(KEY)
            spent += time.perf_counter() - start
        best_get = min(best_get, spent / n * 1e6)
    return [
        (f"{label} update", per_call(update, n)),
        (f"{label} get right after its own update", best_get),
    ]


def sqlite_figures(n: int) -> list[tuple[str, float]]:
    from sessionwarden.stores.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(os.path.join(tmp, "s.db"))
        try:
            return _figures("SQLite", store, n)
        finally:
            store.close()


def redis_figures(n: int) -> list[tuple[str, float]]:
    if not common.redis_ok():
        return []
    from sessionwarden.stores.redis import RedisStore

    out: list[tuple[str, float]] = []
    for label, lean in (("hand-written RESP", True), ("redis-py client", False)):
        prefix = common.unique_prefix("writes")
        store = RedisStore(URL, prefix=prefix)
        try:
            assert store.read_cache is not None and store.read_cache.feed.wait_connected(5.0)
            if not lean:
                store._fast = None  # scripts through redis-py's client (reads too: no cache)
            out += _figures(f"Redis (sync), {label},", store, n)
        finally:
            store.close()
            common.drop_prefix(prefix)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5_000, help="calls per round")
    args = parser.parse_args()
    for label, micros in sqlite_figures(args.n) + redis_figures(args.n):
        print(f"{label:<60} {micros:8.2f} µs")


if __name__ == "__main__":
    main()
