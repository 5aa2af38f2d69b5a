"""Machine instructions per request, counted by valgrind's callgrind: a figure that does not move
with the load of a shared machine, for A/B comparisons of small changes.

    PYTHONPATH=src python -m bench.instructions [ROW ...] [--requests 1000]
    PYTHONPATH=src python -m bench.instructions --http [STACK ...] [--connections 64]

In-process rows (``bare``, ``memory``, ``sqlite``, ``redis``, ``redis-post``, ``memory-post``, and
the requests that change the session: ``memory-write``, ``sqlite-write``, ``redis-write``,
``memory-sign-in``, ``redis-sign-in``, ``sqlite-sign-in``, and the same with the per-user cap set
and a sink wanting every event: ``memory-sign-in-capped``, ``redis-sign-in-capped``,
``sqlite-sign-in-capped``): the app is called directly, as in ``bench/run.py``. ``flask-memory``,
``flask-redis`` (and their ``-write`` and ``-sign-in``): Flask behind the WSGI middleware, called
synchronously as ``bench/run.py``'s Flask rows are (memory: no I/O); ``flask-bare``: Flask
alone. ``memory-wrk``,
``sqlite-wrk``, ``redis-wrk``: the GET as ``bench/http.py``'s clients send it (plain HTTP from a
loopback peer to a loopback ``Host``, wrk's four headers), still in-process: the adapter's path over
HTTP, counted as steadily as the other rows. ``--http`` runs the uvicorn server of ``bench/http.py``
(``bare``, ``ours``) under callgrind, drives it from a small keep-alive client with that many
connections, and counts the server's instructions only. Counting starts after a warm-up (the program
turns callgrind's instrumentation on and off itself), so start-up is excluded. ``--main-thread``
counts the main thread alone: the SQLite store's checkpointer thread runs at least once a second, so
under valgrind (about 50 times slower) it runs about once per hundred requests instead of once per
thousand, and its share moves with the load; leave it out to compare two versions of the request's
own path.

Instructions are not time: system calls, cache misses and the garbage collector's dependence on
timing are not in them (under valgrind everything runs about 50 times slower, so anything that
depends on elapsed time behaves as it does on a slow machine). Use them to compare two versions
of the same path; use ``bench/run.py`` and ``bench/http.py`` for the figures the goals name.
Needs the Debian package ``valgrind``.
"""

from __future__ import annotations

try:
    from bench import _path
except ImportError:  # run as a script: python bench/instructions.py
    import _path  # type: ignore[no-redef]
_path.fix()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import glob  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from typing import Any  # noqa: E402

from bench import common  # noqa: E402

ROWS = (
    "bare",
    "memory",
    "sqlite",
    "redis",
    "redis-post",
    "memory-post",
    "memory-write",
    "sqlite-write",
    "redis-write",
    "memory-sign-in",
    "redis-sign-in",
    "sqlite-sign-in",
    "memory-sign-in-capped",
    "redis-sign-in-capped",
    "sqlite-sign-in-capped",
    "memory-wrk",
    "sqlite-wrk",
    "redis-wrk",
    "flask-bare",
    "flask-memory",
    "flask-memory-write",
    "flask-memory-sign-in",
    "flask-redis",
    "flask-redis-write",
    "flask-redis-sign-in",
)
STACKS = {"bare": ("bare", "bare"), "ours": ("ours_redis", "ours")}


def _toggle(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=False)


def _dumped_instructions(out_prefix: str, *, main_thread: bool = False) -> int:
    """The instruction total of the dump taken on request (not the one at program exit);
    ``main_thread``: of the main thread's part of it (the run counted threads apart)."""
    for path in glob.glob(out_prefix + ".*"):  # "cg-redis.*" is not "cg-redis-write.*"
        if main_thread and not path.endswith("-01"):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if "Trigger: dump" in text:
            for line in text.splitlines():
                if line.startswith("summary:"):
                    return int(line.split()[1])
    raise RuntimeError("callgrind wrote no dump")


# -- in-process ---------------------------------------------------------------------------------
def _inner(row_name: str, n: int) -> None:
    """Runs inside valgrind: warm up, count ``n`` requests, dump."""
    if row_name.startswith("flask-"):
        _inner_flask(row_name, n)
        return
    from bench import ours
    from bench.peers.starlette_stack import BareStarlette

    async def go() -> None:
        row: Any
        if row_name == "bare":
            row = BareStarlette()
        elif row_name == "redis-post":
            row = ours.OursAsgi("redis", post=True)
        else:  # a store, or store-mode (write, sign-in, wrk)
            store, _, mode = row_name.partition("-")
            row = ours.OursAsgi(store, mode="get" if mode == "wrk" else mode or "get")
        await row.asetup()
        if row_name.endswith("-wrk"):
            _as_over_http(row)
        for _ in range(300):
            await row.one()
        _toggle(os.getpid(), "-i", "on")
        for _ in range(n):
            await row.one()
        _toggle(os.getpid(), "-d")
        _toggle(os.getpid(), "-i", "off")
        close = getattr(row, "aclose", None)
        if close is not None:
            await close()

    asyncio.run(go())


def _inner_flask(row_name: str, n: int) -> None:
    """A Flask row (``flask-<store>[-<mode>]``): the WSGI middleware, called synchronously."""
    from bench import ours
    from bench.peers.flask_stack import BareFlask

    store, _, mode = row_name.removeprefix("flask-").partition("-")
    row: Any = BareFlask() if store == "bare" else ours.OursFlask(store, mode=mode or "get")
    row.setup()
    row.run(300)
    _toggle(os.getpid(), "-i", "on")
    row.run(n)
    _toggle(os.getpid(), "-d")
    _toggle(os.getpid(), "-i", "off")
    row.close()


def _as_over_http(row: Any) -> None:
    """Send the row's requests as ``bench/http.py``'s clients do: plain HTTP from a loopback
    peer to a loopback ``Host``, with wrk's four headers (no ``Accept``, no ``Sec-Fetch-*``).
    The reshaping itself is counted too (the same in every version compared)."""
    app = row.client.app

    async def shaped(scope: Any, receive: Any, send: Any) -> None:
        sent = dict(scope["headers"])
        scope["scheme"] = "http"
        scope["server"] = ("127.0.0.1", 8000)
        scope["headers"] = [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", sent[b"user-agent"]),
            (b"accept-language", sent[b"accept-language"]),
            (b"cookie", sent[b"cookie"]),
        ]
        await app(scope, receive, send)

    row.client.app = shaped


def _callgrind(out: str, *, threads_apart: bool = False) -> list[str]:
    """valgrind's callgrind, counting nothing until told to (by ``callgrind_control -i on``);
    ``threads_apart``: a dump per thread."""
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p"]
    return [*cmd, "--separate-threads=yes"] if threads_apart else cmd


def in_process(row_name: str, n: int, tmp: str, *, main_thread: bool = False) -> float:
    out = os.path.join(tmp, f"cg-{row_name}")
    cmd = [
        *_callgrind(out, threads_apart=main_thread),
        sys.executable,
        "-m",
        "bench.instructions",
        "--inner",
        row_name,
        "--requests",
        str(n),
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([_path.SRC, _path.ROOT]))
    subprocess.run(cmd, env=env, cwd=_path.ROOT, check=True, capture_output=True)
    return _dumped_instructions(out, main_thread=main_thread) / n


# -- over HTTP ----------------------------------------------------------------------------------
def over_http(stack: str, n: int, connections: int, tmp: str) -> float:
    from bench.http import Browser, Server, free_port, sign_in, uvicorn_command

    factory, kind = STACKS[stack]
    port = free_port()
    out = os.path.join(tmp, f"cg-http-{stack}")
    prefix = common.unique_prefix("instr")
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([_path.SRC, _path.ROOT]),
        SWBENCH_PREFIX=prefix,
        SWBENCH_PREFIX_FILE=os.path.join(tmp, "prefix"),
    )
    cmd = [*_callgrind(out), *uvicorn_command(factory, port)]
    proc = subprocess.Popen(
        cmd, env=env, cwd=_path.ROOT, start_new_session=True, stderr=subprocess.DEVNULL
    )
    server = Server.__new__(Server)  # the helpers of bench/http.py, on this process
    server.port, server.proc = port, proc
    try:
        server.wait_ready(timeout=300)
        browser = Browser(port)
        sign_in(kind, browser)
        cookie = browser.jar.header()
        request = (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: {common.UA}\r\n"
            "Accept-Language: en-GB,en;q=0.9\r\n"
            + (f"Cookie: {cookie}\r\n" if cookie else "")
            + "\r\n"
        ).encode()
        asyncio.run(_load(port, request, 400, connections))
        _toggle(proc.pid, "-i", "on")
        asyncio.run(_load(port, request, n, connections))
        _toggle(proc.pid, "-d")
        return _dumped_instructions(out) / n
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        common.drop_prefix(prefix)


async def _load(port: int, request: bytes, n: int, connections: int) -> None:
    async def one_connection(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(count):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"server answered {head[:40]!r}")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
        finally:
            writer.close()

    per = max(1, n // connections)
    await asyncio.gather(*(one_connection(per) for _ in range(connections)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--main-thread",
        action="store_true",
        help="in-process rows: count the main thread only (not, e.g., the SQLite checkpointer's)",
    )
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner:
        _inner(args.inner, args.requests)
        return 0
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (apt-get install -y valgrind)", file=sys.stderr)
        return 2
    names = args.names or (list(STACKS) if args.http else list(ROWS))
    known = STACKS if args.http else ROWS
    unknown = [name for name in names if name not in known]
    if unknown:
        print(f"unknown: {', '.join(unknown)} (choose from {', '.join(known)})", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="swbench-instr-") as tmp:
        for name in names:
            if args.http:
                n = args.requests - args.requests % args.connections or args.connections
                count = over_http(name, n, args.connections, tmp)
                label = f"http {name} ({args.connections} connections)"
            else:
                count = in_process(name, args.requests, tmp, main_thread=args.main_thread)
                label = f"in-process {name}" + (" (main thread)" if args.main_thread else "")
            print(f"{label}: {count:,.0f} instructions/request", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
