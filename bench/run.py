"""The in-process comparison: sessionwarden against its peers, one command.

    PYTHONPATH=src python -m bench.run            # 5 rounds, writes bench/RESULTS.md
    PYTHONPATH=src python -m bench.run --smoke    # a few requests per row; CI

Each row's app is called directly through ASGI or WSGI (no HTTP client in between) with cookies
carried between requests, so sessions are *loaded*, not created. Rows are measured round-robin
(every row once per round) so slow drift of the machine spreads over all of them; the table shows
the median of the rounds and their spread (min-max).
"""

from __future__ import annotations

try:
    from bench import _path
except ImportError:  # run as a script: python bench/run.py
    import _path  # type: ignore[no-redef]
_path.fix()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from bench import common, ours  # noqa: E402
from bench.common import AsyncRow, NotInstalled, Row, Unavailable  # noqa: E402
from bench.peers import django_stack, flask_stack, starlette_stack  # noqa: E402

#: Reference figures of the peers (issue text), microseconds per request.
REFERENCE = {
    "bare Starlette GET": 7.0,
    "Starlette SessionMiddleware GET": 17.3,
    "starsessions+csrf+secure redis GET": 237.0,
    "starsessions+csrf+secure redis POST valid CSRF": 283.0,
    "Flask-Session+WTF+Login strong+secure redis GET": 339.0,
    "Django sessions(redis)+CSRF+Security GET writes": 603.0,
}

#: The peers' sign-in rows; sign-in goals compare with the fastest of them.
PEER_SIGN_INS = (
    "starsessions+csrf+secure redis sign-in",
    "Flask-Session+WTF+Login strong+secure redis sign-in",
    "Django sessions(redis)+CSRF+Security sign-in",
)

#: (goal, our row, peer row (or rows: the fastest of them), limit on ours / peer)
GOALS: tuple[tuple[str, str, str | tuple[str, ...], float], ...] = (
    (
        "1 memory GET <= 1.0x Starlette SessionMiddleware",
        "ours ASGI memory GET",
        "Starlette SessionMiddleware GET",
        1.0,
    ),
    (
        "1 SQLite GET <= 1.0x Starlette SessionMiddleware",
        "ours ASGI sqlite GET",
        "Starlette SessionMiddleware GET",
        1.0,
    ),
    (
        "2 Redis GET <= 0.2x starsessions stack GET",
        "ours ASGI redis GET",
        "starsessions+csrf+secure redis GET",
        0.2,
    ),
    (
        "2 Redis POST <= 0.2x starsessions stack POST",
        "ours ASGI redis POST valid CSRF",
        "starsessions+csrf+secure redis POST valid CSRF",
        0.2,
    ),
    (
        "4 Flask on our WSGI (Redis) <= 0.3x Flask stack",
        "ours WSGI Flask redis GET",
        "Flask-Session+WTF+Login strong+secure redis GET",
        0.3,
    ),
    # The same goals with the local read cache off: every read is a round trip to Redis.
    (
        "2 Redis GET, read cache off",
        "ours ASGI redis GET, read cache off",
        "starsessions+csrf+secure redis GET",
        0.2,
    ),
    (
        "2 Redis POST, read cache off",
        "ours ASGI redis POST valid CSRF, read cache off",
        "starsessions+csrf+secure redis POST valid CSRF",
        0.2,
    ),
    (
        "4 Flask on our WSGI (Redis), read cache off",
        "ours WSGI Flask redis GET, read cache off",
        "Flask-Session+WTF+Login strong+secure redis GET",
        0.3,
    ),
    # Requests that change the session (issue 18).
    (
        "18.1 Redis write <= 0.4x starsessions stack write",
        "ours ASGI redis write",
        "starsessions+csrf+secure redis write",
        0.4,
    ),
    (
        "18.1 Flask on Redis write <= 0.4x Flask stack write",
        "ours WSGI Flask redis write",
        "Flask-Session+WTF+Login strong+secure redis write",
        0.4,
    ),
    (
        "18.1 Redis write, read cache off",
        "ours ASGI redis write, read cache off",
        "starsessions+csrf+secure redis write",
        0.4,
    ),
    (
        "18.2 SQLite write <= 2.0x Starlette SessionMiddleware write",
        "ours ASGI sqlite write",
        "Starlette SessionMiddleware write",
        2.0,
    ),
    (
        "18.2 SQLite write through open_async_store (inline, a thread when the lock is taken)",
        "ours ASGI sqlite write, open_async_store",
        "Starlette SessionMiddleware write",
        2.0,
    ),
    (
        "18.4 Redis sign-in <= 0.5x fastest peer sign-in",
        "ours ASGI redis sign-in",
        PEER_SIGN_INS,
        0.5,
    ),
    (
        "18.4 SQLite sign-in <= 0.5x fastest peer sign-in",
        "ours ASGI sqlite sign-in",
        PEER_SIGN_INS,
        0.5,
    ),
    (
        "18.4 Flask on Redis sign-in <= 0.5x fastest peer sign-in",
        "ours WSGI Flask redis sign-in",
        PEER_SIGN_INS,
        0.5,
    ),
)


FLOOR = "floor: bare Starlette + one Redis round trip (raw INCR)"
FLASK_FLOOR = "floor: bare Flask + one Redis round trip (raw INCR)"
#: Each floor, and the rows whose difference is our session layer's own CPU for a write on that
#: framework (our memory write, the bare framework's GET).
FLOORS = {
    FLOOR: ("ours ASGI memory write", "bare Starlette GET"),
    FLASK_FLOOR: ("ours WSGI Flask memory write", "bare Flask GET"),
}

#: Redis goals whose limit is compared with a floor: (goal, peer row or rows, limit, floor).
FLOOR_GOALS: tuple[tuple[str, str | tuple[str, ...], float, str], ...] = (
    ("18.1 Redis write", "starsessions+csrf+secure redis write", 0.4, FLOOR),
    (
        "18.1 Flask on Redis write",
        "Flask-Session+WTF+Login strong+secure redis write",
        0.4,
        FLASK_FLOOR,
    ),
    ("18.4 Redis sign-in", PEER_SIGN_INS, 0.5, FLOOR),
    ("18.4 Flask on Redis sign-in", PEER_SIGN_INS, 0.5, FLASK_FLOOR),
)


def rows() -> list[Row]:
    return [
        starlette_stack.BareStarlette(),
        starlette_stack.StarletteSigned(),
        ours.OursAsgi("memory"),
        ours.OursAsgi("sqlite"),
        ours.OursAsgi("redis"),
        ours.OursAsgi("memory", fingerprint=False),
        ours.OursAsgi("redis", fingerprint=False),
        ours.OursAsgi("memory", post=True),
        ours.OursAsgi("redis", post=True),
        ours.OursAsgi("redis", read_cache=False),
        ours.OursAsgi("redis", post=True, read_cache=False),
        ours.OursAsgi("postgres"),
        ours.OursAsgi("postgres", post=True),
        ours.OursAsgiLogin("sqlite"),
        ours.OursAsgiLogin("redis"),
        ours.OursAsgiLogin("postgres"),
        starlette_stack.StarsessionsStack(),
        starlette_stack.StarsessionsStack(post=True),
        flask_stack.BareFlask(),
        flask_stack.FlaskStack(),
        ours.OursFlask("memory"),
        ours.OursFlask(),
        ours.OursFlask(read_cache=False),
        django_stack.BareDjango(),
        django_stack.DjangoStack(),
        # requests that change the session: a write (read one key, set another), a sign-in
        starlette_stack.StarletteSigned(mode="write"),
        ours.OursAsgi("memory", mode="write"),
        ours.OursAsgi("sqlite", mode="write"),
        ours.OursAsgi("sqlite", mode="write", offload_writes=True),
        ours.OursAsgi("redis", mode="write"),
        ours.OursAsgi("redis", mode="write", read_cache=False),
        ours.OursAsgi("postgres", mode="write"),
        starlette_stack.StarsessionsStack(mode="write"),
        starlette_stack.StarletteRedisFloor(),
        flask_stack.FlaskStack(mode="write"),
        flask_stack.FlaskRedisFloor(),
        ours.OursFlask("memory", mode="write"),
        ours.OursFlask(mode="write"),
        starlette_stack.StarletteSigned(mode="sign-in"),
        ours.OursAsgi("memory", mode="sign-in"),
        ours.OursAsgi("sqlite", mode="sign-in"),
        ours.OursAsgi("redis", mode="sign-in"),
        ours.OursAsgi("postgres", mode="sign-in"),
        starlette_stack.StarsessionsStack(mode="sign-in"),
        flask_stack.FlaskStack(mode="sign-in"),
        ours.OursFlask("memory", mode="sign-in"),
        ours.OursFlask(mode="sign-in"),
        django_stack.DjangoStack(sign_in=True),
    ]


@dataclass
class Result:
    row: Row
    status: str = "ok"  # ok | not installed | unavailable | error
    detail: str = ""
    samples: list[float] = field(default_factory=list)  # µs per request, one per round
    n: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")


def measure(row: Row, n: int) -> float:
    gc.collect()
    t0 = time.perf_counter()
    row.run(n)
    return (time.perf_counter() - t0) / n * 1e6


def calibrate(row: Row, seconds: float) -> int:
    """Warm up, then pick the request count that takes about ``seconds`` per round."""
    per = measure(row, 50)
    per = min(per, measure(row, 200))
    return max(50, int(seconds * 1e6 / per))


def fmt(us: float) -> str:
    return f"{us:,.1f}" if us < 100 else f"{us:,.0f}"


def table(results: list[Result], *, smoke: bool) -> str:
    by_name = {r.row.name: r for r in results}
    head = "| stack | µs/request (median) | spread (min-max) | x framework | issue ref µs |"
    goal_head = "| goal | ours µs | peer µs (the fastest, for sign-in) | ratio | limit | verdict |"
    lines = [head, "|---|---:|---:|---:|---:|"]
    for r in results:
        ref = REFERENCE.get(r.row.name)
        ref_s = fmt(ref) if ref else ""
        if r.status != "ok":
            lines.append(f"| {r.row.name} | {r.status} | {r.detail[:60]} | | {ref_s} |")
            continue
        base = by_name.get(r.row.base)
        ratio = f"{r.median / base.median:.1f}" if base is not None and base.status == "ok" else ""
        spread = f"{fmt(min(r.samples))}-{fmt(max(r.samples))}"
        lines.append(f"| {r.row.name} | {fmt(r.median)} | {spread} | {ratio} | {ref_s} |")
    lines.append("")
    lines.append(goal_head)
    lines.append("|---|---:|---:|---:|---:|---|")
    for goal, mine, peer, limit in GOALS:
        a, b = by_name.get(mine), fastest(by_name, peer)
        if a is None or b is None or a.status != "ok":
            lines.append(f"| {goal} | | | | {limit} | not measured |")
            continue
        ratio = a.median / b.median
        verdict = "met" if ratio <= limit else f"MISSED by {ratio / limit:.2f}x"
        if smoke:
            verdict = "(smoke: not meaningful)"
        lines.append(
            f"| {goal} | {fmt(a.median)} | {fmt(b.median)} | {ratio:.2f} | {limit} | {verdict} |"
        )
    lines.extend(floor_table(by_name))
    fp_on, fp_off = (
        by_name.get("ours ASGI memory GET"),
        by_name.get("ours ASGI memory GET, fingerprint off"),
    )
    if fp_on and fp_off and fp_on.status == fp_off.status == "ok":
        lines.append("")
        lines.append(
            f"Fingerprint check cost (memory): {fp_on.median - fp_off.median:+.1f} µs/request."
        )
    return "\n".join(lines)


def fastest(by_name: dict[str, Result], names: str | tuple[str, ...]) -> Result | None:
    """The fastest of the rows ``names``, or None unless every one of them was measured."""
    found = [by_name.get(n) for n in ((names,) if isinstance(names, str) else names)]
    measured = [r for r in found if r is not None and r.status == "ok"]
    if not measured or len(measured) < len(found):
        return None
    return min(measured, key=lambda r: r.median)


def floor_table(by_name: dict[str, Result]) -> list[str]:
    """What the Redis goals' limits allow against what one round trip costs on this machine."""
    lines = [""]
    layers: dict[str, float | None] = {}
    for name, (mine_name, bare_name) in FLOORS.items():
        floor, mine, bare = (by_name.get(n) for n in (name, mine_name, bare_name))
        if floor is None or floor.status != "ok":
            continue
        layer = None
        if bare is not None and mine is not None and bare.status == mine.status == "ok":
            layer = mine.median - bare.median
        layers[name] = layer
        layer_text = "not measured" if layer is None else f"{fmt(layer)} µs"
        lines.append(
            f"The floor of a Redis write here: {fmt(floor.median)} µs ({name}); our session "
            f"layer's own CPU for a write ({mine_name} - {bare_name}): {layer_text}."
        )
    if not layers:
        return []
    lines += [
        "",
        "| goal | limit µs (limit x peer) | floor µs | floor / peer | floor + our layer / peer |",
        "|---|---:|---:|---:|---:|",
    ]
    for goal, peer, limit, floor_name in FLOOR_GOALS:
        b = fastest(by_name, peer)
        if b is None or floor_name not in layers:
            continue
        floor_us = by_name[floor_name].median
        layer = layers[floor_name]
        with_layer = f"{(floor_us + layer) / b.median:.2f}" if layer is not None else ""
        lines.append(
            f"| {goal} <= {limit}x | {fmt(limit * b.median)} | {fmt(floor_us)} "
            f"| {floor_us / b.median:.2f} | {with_layer} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few requests per row, no file")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.4, help="target time per round")
    parser.add_argument(
        "--only", default="", help="substring filter on row names (several: comma-separated)"
    )
    args = parser.parse_args(argv)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    have_redis = common.redis_ok()
    results: list[Result] = []
    for row in rows():
        if args.only and not any(
            part.strip().lower() in row.name.lower() for part in args.only.split(",")
        ):
            continue
        if isinstance(row, AsyncRow):
            row.loop = loop
        res = Result(row)
        results.append(res)
        if row.redis and not have_redis:
            res.status, res.detail = "unavailable", f"Redis at {common.REDIS_URL} unreachable"
            continue
        try:
            row.setup()
            res.n = 5 if args.smoke else calibrate(row, args.seconds)
        except NotInstalled as exc:
            res.status, res.detail = "not installed", str(exc)
        except Unavailable as exc:
            res.status, res.detail = "unavailable", str(exc)
        except Exception as exc:
            res.status, res.detail = "error", f"{type(exc).__name__}: {exc}"
            traceback.print_exc()

    rounds = 1 if args.smoke else args.rounds
    for i in range(rounds):
        for res in results:
            if res.status != "ok":
                continue
            try:
                res.samples.append(measure(res.row, res.n))
            except Exception as exc:
                res.status, res.detail = "error", f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
        if not args.smoke:
            print(f"round {i + 1}/{rounds} done", file=sys.stderr)

    for res in results:
        if res.status in ("ok", "error"):
            try:
                res.row.close()
            except Exception as exc:
                print(f"close {res.row.name}: {exc!r}", file=sys.stderr)
    loop.close()

    text = table(results, smoke=args.smoke)
    print(text)
    failed = [r for r in results if r.status == "error"]
    if not args.smoke and not args.only:
        body = (
            "## In-process: sessionwarden vs peers (`python -m bench.run`)\n\n"
            + common.environment_block()
            + f"\n- method: {rounds} rounds round-robin, ~{args.seconds}s per row per round; "
            "app called directly (ASGI/WSGI), cookies carried, signed-in session loaded.\n\n" + text
        )
        common.write_section("inprocess", body)
        print(f"\nwritten: {common.RESULTS}", file=sys.stderr)
    if failed:
        print(f"\n{len(failed)} stack(s) failed: " + ", ".join(r.row.name for r in failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
