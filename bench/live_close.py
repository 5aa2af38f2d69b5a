"""Open connections: how soon a session ended in one process closes them in another, and what
the middleware costs per WebSocket message.

    PYTHONPATH=src python -m bench.live_close               # 100 runs per store and kind
    PYTHONPATH=src python -m bench.live_close --runs 20 --messages 5000

* **Close latency.** Two uvicorn processes (``tests/live_servers.py``) share a Redis store (a key
  prefix of its own, deleted afterwards) or a SQLite file. Each run signs a new user in on
  process A, opens a WebSocket (or an event stream) on A, and ends every session of the user
  through process B; the time from B's request to the close (code 1008) or the end of the
  stream arriving at the client. Goal: the worst of 100 runs under 2 s.
* **Messages per second** over one open WebSocket, echoed by the app: the bare Starlette app
  and the same app behind the middleware (memory store, a signed-in session), 3 rounds taken
  in turn, the median of each. The middleware does nothing per message, so the two should be
  equal within the noise.
"""

from __future__ import annotations

try:
    from bench import _path
except ImportError:  # run as a script: python bench/live_close.py
    import _path  # type: ignore[no-redef]
_path.fix()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import redis  # noqa: E402
from tests.live_servers import echo_rate, measure, servers, signed_in_cookie  # noqa: E402

from bench.common import REDIS_URL  # noqa: E402


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _drop(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


def close_latency(runs: int, workdir: Path) -> None:
    stores: list[tuple[str, str]] = [("sqlite", f"sqlite:///{workdir}/live.db")]
    prefix = f"swbench:{uuid.uuid4().hex[:8]}:"
    if _redis_up():
        stores.insert(0, ("redis", f"{REDIS_URL}?prefix={prefix}"))
    else:
        print("redis: unavailable (skipped)")
    print("| store | connection | runs | p50 | p95 | worst | goal (worst < 2 s) |")
    print("|---|---|---|---|---|---|---|")
    try:
        for name, url in stores:
            with servers(url, 2, workdir) as pair:
                for kind in ("websocket", "event-stream"):
                    lat = sorted(asyncio.run(measure(pair, kind, runs)))
                    p50 = statistics.median(lat) * 1000
                    p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))] * 1000
                    worst = lat[-1] * 1000
                    verdict = "met" if worst < 2000 else "MISSED"
                    print(
                        f"| {name} | {kind} | {runs} | {p50:.0f} ms | {p95:.0f} ms "
                        f"| {worst:.0f} ms | {verdict} |"
                    )
    finally:
        _drop(prefix)


def message_rate(messages: int, rounds: int, workdir: Path) -> None:
    with (
        servers("memory://", 1, workdir, "bare") as (bare,),
        servers("memory://", 1, workdir) as (ours,),
    ):
        cookie = asyncio.run(signed_in_cookie(ours, "alice"))
        asyncio.run(echo_rate(bare, messages // 10))  # warm both up (imports, first frames)
        asyncio.run(echo_rate(ours, messages // 10, cookie))
        rates: dict[str, list[float]] = {"bare Starlette": [], "with the middleware": []}
        for _ in range(rounds):
            rates["bare Starlette"].append(asyncio.run(echo_rate(bare, messages)))
            rates["with the middleware"].append(asyncio.run(echo_rate(ours, messages, cookie)))
    print()
    print(
        f"| WebSocket echo ({messages} messages of 64 bytes, {rounds} rounds) | median msgs/s "
        "| spread |"
    )
    print("|---|---|---|")
    for name, values in rates.items():
        print(
            f"| {name} | {statistics.median(values):,.0f} "
            f"| {min(values):,.0f} to {max(values):,.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="swlive-") as tmp:
        close_latency(args.runs, Path(tmp))
        message_rate(args.messages, args.rounds, Path(tmp))


if __name__ == "__main__":
    main()
