"""Over HTTP: uvicorn (one worker, httptools + uvloop) driven by wrk on loopback.

    PYTHONPATH=src python -m bench.http [--duration 10] [--connections 64] [--threads 2]
                                        [--rounds 3] [--mixed]

Bare Starlette vs sessionwarden on Redis vs starsessions + starlette-csrf + secure on Redis; a
signed-in session's cookies are sent with every request (wrk ``-H``); for ours the share of the
read cache's lookups that the cache answered is printed too (the server's own counters). The
three servers run side by side and wrk visits them in turn for ``--rounds`` rounds, so that a
change in the shared machine's load hits every stack alike; each round's ratio is ours over bare
Starlette of that round. Prints requests/s, p50/p99 latency, the server's CPU time per request
(from ``/proc``: steadier than requests/s when wrk and the server share two cores) and the
ratios, medians with their spread, and records the table in ``bench/RESULTS.md``. Every server
started is stopped (process group kill) whatever happens; only 127.0.0.1 is used.

``--mixed``: every tenth request of the session stacks is the "write" GET (reads one key, sets
another) and the rest the reading GET, i.e. 90 % reads and 10 % writes, all on one signed-in
session; bare Starlette (which has no session) serves its GET throughout. Recorded as its own
section.
"""

from __future__ import annotations

try:
    from bench import _path
except ImportError:  # run as a script: python bench/http.py
    import _path  # type: ignore[no-redef]
_path.fix()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from bench import common  # noqa: E402

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def uvicorn_command(factory: str, port: int, workers: int = 1) -> list[str]:
    """The server every HTTP comparison runs: one worker (unless told), uvloop and httptools,
    no access log."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        f"bench.asgi_apps:{factory}",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


class Server:
    """uvicorn in its own process group; ``stop`` kills the whole group."""

    def __init__(self, factory: str, env: dict[str, str], workers: int = 1) -> None:
        self.port = free_port()
        cmd = uvicorn_command(factory, self.port, workers)
        full_env = dict(os.environ)
        full_env.update(env)
        full_env["PYTHONPATH"] = os.pathsep.join([_path.SRC, _path.ROOT])
        self.proc = subprocess.Popen(cmd, env=full_env, cwd=_path.ROOT, start_new_session=True)

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


class Browser:
    """A tiny cookie-carrying HTTP client for the sign-in flow."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.jar = common.CookieJar()

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=5)
        hdrs = {"user-agent": common.UA, "accept-language": "en-GB,en;q=0.9"}
        hdrs.update(headers or {})
        if self.jar.values:
            hdrs["cookie"] = self.jar.header()
        conn.request(method, path, headers=hdrs)
        resp = conn.getresponse()
        body = resp.read().decode()
        for name, value in resp.getheaders():
            if name.lower() == "set-cookie":
                self.jar.update(value)
        conn.close()
        return resp.status, body


def sign_in(kind: str, b: Browser) -> None:
    if kind == "bare":
        return
    if kind == "ours":
        _, tok = b.request("GET", "/token")
        status, body = b.request(
            "POST", "/login", {"x-csrf-token": tok, "sec-fetch-site": "same-origin"}
        )
    else:
        b.request("GET", "/")
        tok = b.jar.values["csrftoken"]
        status, body = b.request("POST", "/login", {"x-csrftoken": tok})
    if status != 200:
        raise RuntimeError(f"{kind}: sign-in answered {status} {body[:80]!r}")
    status, body = b.request("GET", "/")
    if status != 200 or body != common.USER:
        raise RuntimeError(f"{kind}: session not loaded ({status} {body[:80]!r})")


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    errors: str


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        return float("nan")
    return float(m.group(1)) * _UNITS[m.group(2)]


#: wrk script for --mixed: every tenth request writes the session.
MIXED_LUA = """
local n = 0
request = function()
  n = n + 1
  if n % 10 == 0 then return wrk.format("GET", "/write") end
  return wrk.format("GET", "/")
end
"""


def run_wrk(
    port: int, cookie: str, args: argparse.Namespace, script: str | None = None
) -> WrkResult:
    cmd = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        "--latency",
        "-H",
        f"User-Agent: {common.UA}",
        "-H",
        "Accept-Language: en-GB,en;q=0.9",
    ]
    if cookie:
        cmd += ["-H", f"Cookie: {cookie}"]
    if script is not None:
        cmd += ["-s", script]
    cmd.append(f"http://{LOOPBACK}:{port}/")
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, timeout=args.duration + 60
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return WrkResult(
        rps=rps,
        p50_ms=_ms(p50.group(1)) if p50 else float("nan"),
        p99_ms=_ms(p99.group(1)) if p99 else float("nan"),
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        errors=errors.group(0) if errors else "",
    )


STACKS = (
    ("bare Starlette", "bare", "bare"),
    ("ours (Redis, full stack)", "ours_redis", "ours"),
    ("starsessions+csrf+secure (Redis)", "starsessions", "peer"),
)
OURS = STACKS[1][0]


def server_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the server process has used (Linux ``/proc``), else ``None``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Round:
    wrk: WrkResult
    cpu_us: float | None  # the server's CPU time per request served
    #: Share of the read cache's lookups it answered in this round (ours only), else ``None``.
    cache_hits: float | None = None


def cache_counters(port: int) -> tuple[int, int] | None:
    """(hits, misses) of the read cache of a server of ``asgi_apps.ours_redis``, else ``None``."""
    from bench.asgi_apps import CACHE_STATS

    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    try:
        conn.request("GET", CACHE_STATS)
        resp = conn.getresponse()
        data = json.loads(resp.read()) if resp.status == 200 else {}
    except (OSError, ValueError):
        return None
    finally:
        conn.close()
    return (int(data["hits"]), int(data["misses"])) if "hits" in data else None


def _hit_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None:
        return None
    hits, misses = after[0] - before[0], after[1] - before[1]
    return hits / (hits + misses) if hits + misses else None


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _spread(values: list[float], fmt: str) -> str:
    return f"{min(values):{fmt}}-{max(values):{fmt}}" if len(values) > 1 else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="wrk runs per stack, taken in turn (bare, ours, peer, bare, ...), so that a change "
        "in the machine's load hits every stack alike",
    )
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    parser.add_argument("--mixed", action="store_true", help="90%% reads, 10%% writes")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    if not common.redis_ok():
        print(f"Redis at {common.REDIS_URL} is unreachable", file=sys.stderr)
        return 2

    rounds: dict[str, list[Round]] = {label: [] for label, _, _ in STACKS}
    with (
        tempfile.TemporaryDirectory(prefix="swbench-http-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        mixed_script = os.path.join(tmp, "mixed.lua")
        with open(mixed_script, "w", encoding="utf-8") as f:
            f.write(MIXED_LUA)
        running: list[tuple[str, Server, str]] = []
        for n, (label, factory, kind) in enumerate(STACKS):
            prefix = common.unique_prefix("http")
            prefix_file = os.path.join(tmp, f"prefix{n}")
            server = Server(factory, {"SWBENCH_PREFIX": prefix, "SWBENCH_PREFIX_FILE": prefix_file})
            stack.callback(_drop_prefixes, prefix, prefix_file)
            stack.callback(server.stop)
            server.wait_ready()
            browser = Browser(server.port)
            sign_in(kind, browser)
            running.append((label, server, browser.jar.header()))
        for n in range(args.rounds):
            for label, server, cookie in running:
                is_ours = label == OURS
                counted = cache_counters(server.port) if is_ours else None
                before = server_cpu_seconds(server.proc.pid)
                mixed = args.mixed and label != STACKS[0][0]
                res = run_wrk(server.port, cookie, args, mixed_script if mixed else None)
                after = server_cpu_seconds(server.proc.pid)
                hit_share = _hit_share(counted, cache_counters(server.port) if is_ours else None)
                served = res.rps * args.duration
                cpu = (
                    None
                    if before is None or after is None or not served
                    else (after - before) / served * 1e6
                )
                rounds[label].append(Round(res, cpu, hit_share))
                print(
                    f"round {n + 1} {label}: {res.rps:,.0f} req/s, p50 {res.p50_ms:.2f} ms, "
                    f"p99 {res.p99_ms:.2f} ms"
                    + (f", server CPU {cpu:.1f} µs/request" if cpu is not None else "")
                    + (f", read cache {hit_share:.0%} hits" if hit_share is not None else ""),
                    file=sys.stderr,
                )

    bare_label = STACKS[0][0]
    ratios = {
        label: [r.wrk.rps / b.wrk.rps for r, b in zip(rs, rounds[bare_label], strict=True)]
        for label, rs in rounds.items()
    }
    lines = [
        f"{args.rounds} rounds; medians, with the spread over the rounds.",
        "",
        "| stack | req/s | spread | p50 ms | p99 ms | server CPU µs/request | x bare req/s "
        "(same round) | spread | non-2xx | socket errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, rs in rounds.items():
        rps = [r.wrk.rps for r in rs]
        cpus = [r.cpu_us for r in rs if r.cpu_us is not None]
        errors = sorted({r.wrk.errors.replace("Socket errors: ", "") for r in rs} - {""})
        lines.append(
            f"| {label} | {_median(rps):,.0f} | {_spread(rps, ',.0f')} "
            f"| {_median([r.wrk.p50_ms for r in rs]):.2f} "
            f"| {_median([r.wrk.p99_ms for r in rs]):.2f} "
            f"| {_median(cpus):.1f} "
            f"| {_median(ratios[label]):.2f} | {_spread(ratios[label], '.2f')} "
            f"| {sum(r.wrk.non2xx for r in rs)} | {'; '.join(errors) or '-'} |"
        )
    shares = [r.cache_hits for r in rounds[OURS] if r.cache_hits is not None]
    if shares:
        lines.append("")
        lines.append(
            f"Ours: the read cache answered {_median(shares):.0%} of its lookups (median; "
            f"rounds: {', '.join(f'{x:.0%}' for x in shares)})."
        )
    ours = ratios.get(OURS)
    if ours:
        ratio = _median(ours)
        verdict = "met" if ratio >= 0.5 else f"MISSED (needs {0.5 / ratio:.2f}x more throughput)"
        goal = (
            "Goal 18.5 (90 % reads + 10 % writes, ours on Redis >= 0.5x bare Starlette req/s)"
            if args.mixed
            else "Goal 3 (ours on Redis >= 0.5x bare Starlette req/s)"
        )
        lines.append("")
        lines.append(
            f"{goal}: median {ratio:.2f} "
            f"(rounds: {', '.join(f'{x:.2f}' for x in ours)}) -> {verdict}"
        )
    text = "\n".join(lines)
    print(text)
    bad = [label for label, rs in rounds.items() if any(r.wrk.non2xx for r in rs)]
    if not args.no_write:
        mix = ", 90 % reads + 10 % writes" if args.mixed else ""
        common.write_section(
            "http-mixed" if args.mixed else "http",
            "## Over HTTP" + mix + ": uvicorn 1 worker (httptools + uvloop), "
            f"`wrk -t{args.threads} -c{args.connections} -d{args.duration}s` on 127.0.0.1 "
            f"(`python -m bench.http{' --mixed' if args.mixed else ''}`)\n\n"
            + common.environment_block()
            + "\n\n"
            + text,
        )
    if bad:
        print("non-2xx responses from: " + ", ".join(bad), file=sys.stderr)
        return 1
    return 0


def _drop_prefixes(prefix: str, prefix_file: str) -> None:
    common.drop_prefix(prefix)
    if os.path.exists(prefix_file):
        with open(prefix_file, encoding="utf-8") as f:
            common.drop_prefix(f.read().strip())


if __name__ == "__main__":
    sys.exit(main())
