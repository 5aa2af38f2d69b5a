"""The synchronous Redis store's read cache under threads: misses per write.

    PYTHONPATH=src python -m bench.redis_threads                 # 1, 2, 4 and 8 threads
    PYTHONPATH=src python -m bench.redis_threads --threads 8 --rounds 200

Every thread reads 50 signed-in sessions in turn, ``--rounds`` times, and writes some of them
(one in seven, every 50th round; which ones depends on the thread), as a thread-pool server does
when one user's requests land on any of its threads. Before the threads start, the main thread
reads every session once (its own connection then tracks them all). Printed: reads, writes, the
read cache's misses, and misses per write. Reads only (``--no-writes``) must miss nothing.
Counts, not times: they do not depend on the machine's load (the interleaving of the threads
does, so they vary somewhat between runs).
"""

from __future__ import annotations

try:
    from bench import _path
except ImportError:  # run as a script: python bench/redis_threads.py
    import _path  # type: ignore[no-redef]
_path.fix()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

from sessionwarden.records import RecordUpdate, SessionRecord  # noqa: E402
from sessionwarden.stores.redis import RedisStore  # noqa: E402

SESSIONS = 50


def _record(key: str, now: float) -> SessionRecord:
    return SessionRecord(
        key=key,
        created_at=now,
        last_seen=now,
        expires_at=now + 3600,
        rotated_at=now,
        csrf_secret="c" * 43,
        user_id="alice",
        auth_at=now,
        data={"n": 0},
    )


def run(url: str, threads: int, rounds: int, writes: bool) -> tuple[int, int, int]:
    """Reads, writes and read-cache misses of one run on a fresh prefix."""
    prefix = f"bench-threads-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(url, prefix=prefix)
    cache = store.read_cache
    if cache is None or not cache.feed.wait_connected(5.0):
        raise SystemExit("the read cache is off or its notice connection did not come up")
    now = time.time()
    keys = [hashlib.sha256(f"bench-{i}".encode()).hexdigest() for i in range(SESSIONS)]
    for key in keys:
        store.insert(_record(key, now), max_per_user=0, tombstone_until=now + 60)
        store.get(key)
    written = [0] * threads

    def work(tid: int) -> None:
        for r in range(rounds):
            for i, key in enumerate(keys):
                store.get(key)
                if writes and r % 50 == 0 and (i + tid) % 7 == 0:
                    store.update(key, RecordUpdate(set_data={"n": r}))
                    written[tid] += 1

    before = cache.stats()
    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    after = cache.stats()
    store.revoke_user("alice", reason="bench", at=now, until=now + 1)
    store.purge(now + 3600)
    store.close()
    return threads * rounds * SESSIONS, sum(written), after.misses - before.misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--no-writes", action="store_true")
    args = parser.parse_args()
    print(f"{'threads':>7} {'reads':>8} {'writes':>6} {'misses':>6} {'misses/write':>12}")
    for n in args.threads:
        reads, writes, misses = run(args.url, n, args.rounds, not args.no_writes)
        per = f"{misses / writes:.2f}" if writes else "-"
        print(f"{n:>7} {reads:>8} {writes:>6} {misses:>6} {per:>12}")


if __name__ == "__main__":
    main()
