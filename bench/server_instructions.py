"""Redis' own instructions per request of an in-process row: what the store's scripts cost inside
the server, counted by valgrind's callgrind (a figure that does not move with the load).

    PYTHONPATH=src python -m bench.server_instructions redis-write redis-sign-in [--requests 300]

Starts a redis-server of its own under callgrind on a free loopback port (nothing else talks to it:
``INFO commandstats`` on a shared server also counts other clients' scripts), runs the rows of
``bench.instructions`` against it (``redis``, ``redis-post``, ``redis-write``, ``redis-sign-in``,
``redis-sign-in-capped``), counts the server's instructions over ``--requests`` requests after a
warm-up, and stops the server by its PID. The client's own instructions are ``bench.instructions``'.
Needs ``redis-server`` and the Debian package ``valgrind``. """

from __future__ import annotations

try:
    from bench import _path
except ImportError:  # run as a script: python bench/server_instructions.py
    import _path  # type: ignore[no-redef]
_path.fix()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import glob  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROWS = {
    "redis": "get",
    "redis-post": "post",
    "redis-write": "write",
    "redis-sign-in": "sign-in",
    "redis-sign-in-capped": "sign-in-capped",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=False)


def _dumped(out_dir: str, pid: int, before: set[str]) -> int:
    """The instruction total of the dump taken on request since ``before`` was listed."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for path in set(glob.glob(os.path.join(out_dir, f"cg.{pid}.*"))) - before:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("summary:"):
                        return int(line.split()[1])
        time.sleep(0.2)
    raise RuntimeError("callgrind wrote no dump")


async def _count(row_name: str, n: int, pid: int, out_dir: str) -> float:
    from bench import ours

    row = ours.OursAsgi("redis", mode=ROWS[row_name])
    await row.asetup()
    try:
        for _ in range(100):
            await row.one()
        _control(pid, "-i", "on")
        _control(pid, "-z")
        for _ in range(n):
            await row.one()
        before = set(glob.glob(os.path.join(out_dir, f"cg.{pid}.*")))
        _control(pid, "-d")
        total = _dumped(out_dir, pid, before)
        _control(pid, "-i", "off")
        return total / n
    finally:
        await row.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", default=["redis-write", "redis-sign-in"])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in ROWS]
    if unknown:
        print(f"unknown: {', '.join(unknown)} (choose from {', '.join(ROWS)})", file=sys.stderr)
        return 2
    server = shutil.which("redis-server")
    if server is None or shutil.which("valgrind") is None:
        print("needs redis-server and valgrind", file=sys.stderr)
        return 2
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="swbench-srv-") as tmp:
        cmd = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={tmp}/cg.%p",
            server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", tmp,
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            import redis

            deadline = time.monotonic() + 60
            while True:
                try:
                    redis.Redis(port=port, socket_timeout=5).ping()
                    break
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            # (read when bench.common is first imported, which _count does)
            os.environ["SESSIONWARDEN_BENCH_REDIS"] = f"redis://127.0.0.1:{port}/0"
            for name in args.names:
                count = asyncio.run(_count(name, args.requests, proc.pid, tmp))
                print(f"redis-server, {name}: {count:,.0f} instructions/request", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
