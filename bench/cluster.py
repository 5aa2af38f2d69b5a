"""Redis Cluster: how sessions spread over the masters, and throughput with 1 vs 3 masters.

    PYTHONPATH=src python -m bench.cluster [--sessions 100000] [--duration 8] [--rounds 2]
                                           [--workers 2] [--connections 64]

1. Sharding: ``--sessions`` anonymous sessions inserted through the async cluster store into a
   3-master cluster; keys per master counted with DBSIZE; the busiest master against the mean
   (goal: within 1.3x).
2. Throughput: the demo-style ASGI app (``bench.asgi_apps:ours_store``) under uvicorn with
   ``--workers`` worker processes, driven by wrk with a signed-in session's cookies (as
   ``bench.http``), on four stores in turn for ``--rounds`` rounds: one plain Redis
   (``redis://``, with its read cache and without), a 1-master cluster and a 3-master cluster
   (``redis+cluster://``; each master with a replica). Every server is started here on loopback
   ports (``tests/cluster_support.py``) and stopped by PID.
"""

from __future__ import annotations

try:
    from bench import _path
except ImportError:  # run as a script: python bench/cluster.py
    import _path  # type: ignore[no-redef]
_path.fix()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import hashlib  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from tests.cluster_support import Cluster, redis_cluster  # noqa: E402

from bench import common  # noqa: E402
from bench.http import Browser, Server, run_wrk, sign_in  # noqa: E402
from sessionwarden.records import SessionRecord  # noqa: E402
from sessionwarden.stores.redis_cluster import AsyncRedisClusterStore  # noqa: E402


def _record(i: int) -> SessionRecord:
    key = hashlib.sha256(f"bench-{i}".encode()).hexdigest()
    now = time.time()
    return SessionRecord(key, now, now, now + 3600, now, "c")


async def _fill(cluster: Cluster, sessions: int) -> float:
    store = AsyncRedisClusterStore(cluster.seeds, prefix="swbench:spread:", timeout=10)
    started = time.monotonic()
    try:
        for start in range(0, sessions, 200):
            await asyncio.gather(
                *(
                    store.insert(_record(i), max_per_user=0, tombstone_until=0)
                    for i in range(start, min(start + 200, sessions))
                )
            )
    finally:
        await store.close()
    return time.monotonic() - started


def sharding(sessions: int) -> list[str]:
    with redis_cluster() as cluster:
        elapsed = asyncio.run(_fill(cluster, sessions))
        counts = sorted(cluster.dbsize(m) for m in cluster.masters())
    mean = sum(counts) / len(counts)
    ratio = max(counts) / mean
    verdict = "met" if ratio <= 1.3 else "MISSED"
    return [
        f"{sessions:,} sessions into 3 masters ({sessions / elapsed:,.0f} inserts/s, async store, "
        "200 in flight): keys per master (DBSIZE) "
        + ", ".join(f"{c:,}" for c in counts)
        + f"; busiest {ratio:.3f}x the mean -> goal (<= 1.3x) {verdict}",
    ]


def throughput(args: argparse.Namespace) -> list[str]:
    rows: dict[str, list[tuple[float, float, float, int]]] = {}
    with contextlib.ExitStack() as stack:
        one = stack.enter_context(redis_cluster(masters=1))
        three = stack.enter_context(redis_cluster(masters=3))
        prefix = common.unique_prefix("cluster")
        stack.callback(common.drop_prefix, prefix)
        single = f"{common.REDIS_URL}?prefix={prefix}"
        stores = {
            "Redis, 1 server (`redis://`, read cache on)": single,
            "Redis, 1 server (`redis://`, read cache off)": single,
            "Redis Cluster, 1 master (`redis+cluster://`)": f"redis+cluster://{one.seed_list}/",
            "Redis Cluster, 3 masters (`redis+cluster://`)": f"redis+cluster://{three.seed_list}/",
        }
        running = []
        for label, url in stores.items():
            env = {"SWBENCH_STORE_URL": url}
            if "cache off" in label:
                env["SWBENCH_READ_CACHE_OFF"] = "1"
            server = Server("ours_store", env, workers=args.workers)
            stack.callback(server.stop)
            server.wait_ready()
            browser = Browser(server.port)
            sign_in("ours", browser)
            running.append((label, server, browser.jar.header()))
            rows[label] = []
        for n in range(args.rounds):
            for label, server, cookie in running:
                res = run_wrk(server.port, cookie, args)
                rows[label].append((res.rps, res.p50_ms, res.p99_ms, res.non2xx))
                print(f"round {n + 1} {label}: {res.rps:,.0f} req/s", file=sys.stderr)
    lines = [
        f"uvicorn --workers {args.workers}, `wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration}s`, signed-in GET; {args.rounds} rounds taken in turn, medians.",
        "",
        "| store | req/s | spread | p50 ms | p99 ms | non-2xx |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, rs in rows.items():
        rps = [r[0] for r in rs]
        lines.append(
            f"| {label} | {statistics.median(rps):,.0f} | {min(rps):,.0f}-{max(rps):,.0f} "
            f"| {statistics.median(r[1] for r in rs):.2f} "
            f"| {statistics.median(r[2] for r in rs):.2f} | {sum(r[3] for r in rs)} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None or shutil.which("redis-server") is None:
        print("needs wrk, redis-server and redis-cli (Debian: wrk redis-server redis-tools)")
        return 2
    lines = [*sharding(args.sessions), "", *throughput(args)]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        common.write_section(
            "cluster",
            "## Redis Cluster: sharding, and 1 vs 3 masters over HTTP "
            "(`python -m bench.cluster`)\n\n" + common.environment_block() + "\n\n" + text,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
