"""A sign-in's store work alone: a ``get`` of the session, then the ``rotate`` the core sends at
sign-in (new ID, every meta field, one data key set, a trail entry on a full 20-entry trail,
the old ID tombstoned), on the SQLite store (checkpointer off) or the memory store.

    PYTHONPATH=src python -m bench.store_rotations                # µs per get + rotate
    PYTHONPATH=src python -m bench.store_rotations --count        # instructions (callgrind)
    PYTHONPATH=src python -m bench.store_rotations --statements   # µs per SQLite statement
    ... --memory        the memory store instead (what the SQLite store adds is the difference)
    ... --no-data       a rotation that sets no data key (a periodic rotation)

Keys and values are drawn from a seeded generator, so ``--count`` gives the same figure for the
same tree (the B-tree pages each row lands on depend on its key). ``--count`` runs itself under
valgrind's callgrind and counts the main thread only, after 300 warm-up rotations, as
``bench.instructions --main-thread`` does. Needs the Debian package ``valgrind`` for it.
"""

from __future__ import annotations

try:
    from bench import _path
except ImportError:  # run as a script: python bench/store_rotations.py
    import _path  # type: ignore[no-redef]
_path.fix()

import argparse  # noqa: E402
import glob  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from typing import Any  # noqa: E402

from sessionwarden.records import RecordUpdate, SessionRecord, Tombstone  # noqa: E402

T0 = 1_796_542_772.8620982
WARM_UP = 300


class Rotations:
    """One signed-in session, signed in again and again: each step a get and a rotate."""

    def __init__(self, store: Any, *, set_data: bool = True) -> None:
        self.store = store
        self.set_data = set_data
        self.rng = random.Random(1234)
        self.key = self.new_key()
        self.i = 0
        data = {"user": "alice", "theme": "dark", "lang": "en", "cart": 3}
        store.insert(
            SessionRecord(self.key, T0, T0, T0 + 1800, T0, "x" * 43, "alice", data=data),
            max_per_user=0,
            tombstone_until=T0 + 43_200,
        )

    def new_key(self) -> str:
        return f"{self.rng.getrandbits(256):064x}"

    def step(self) -> None:
        self.i += 1
        t = T0 + self.i * 0.001
        meta: dict[str, Any] = {
            "flags": {"lineage": "UjQfZhELO_D583aJ3K20LA"},
            "last_seen": t,
            "rotated_at": t,
            "expires_at": t + 1800,
            "client_ip": "127.0.0.1",
            "user_agent": "Chrome 124 on Linux",
            "created_at": t,
            "user_id": "alice",
            "auth_at": t,
            "csrf_secret": self.new_key()[:43],
            "fingerprint": {"ip": "127.0.0.1", "net": "127.0.0.0/24", "ua": "Chrome"},
        }
        entry = {"at": t, "ip": "127.0.0.1", "ua": "Chrome 124 on Linux", "path": "/signin"}
        update = RecordUpdate(
            meta=meta, set_data={"user": "alice"} if self.set_data else {}, activity=entry
        )
        old, new = self.key, self.new_key()
        self.store.get(old)
        evicted = self.store.rotate(
            old,
            new,
            update,
            old_becomes=Tombstone(old, "rotated:login", t, t + 43_200, "alice"),
            max_per_user=0,
            tombstone_until=t + 43_200,
            activity_max=20,
        )
        assert evicted is not None, "the session must still be live"
        self.key = new


def open_store(memory: bool, tmp: str) -> Any:
    if memory:
        from sessionwarden.stores import MemoryStore

        return MemoryStore()
    from sessionwarden.stores import sqlite_file
    from sessionwarden.stores.sqlite import SQLiteStore

    # No checkpoint thread: its share moves with the machine's load (see bench.instructions).
    sqlite_file.Checkpointer.wrote = lambda self, fork: None  # type: ignore[method-assign]
    return SQLiteStore(os.path.join(tmp, "rotations.db"))


def timed(rows: Rotations, n: int) -> None:
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            rows.step()
        rounds.append((time.perf_counter() - started) / n * 1e6)
    print("µs per get + rotate, five rounds:", " ".join(f"{r:.1f}" for r in rounds))


def statements(rows: Rotations, n: int) -> None:
    """Median µs of each statement the SQLite store runs (its connection's kept cursor)."""
    handle = rows.store._handle()
    real = handle.cursor
    spent: defaultdict[str, list[int]] = defaultdict(list)

    class Timed:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def execute(self, sql: str, params: Any = ()) -> Any:
            started = time.perf_counter_ns()
            real.execute(sql, params)
            spent[" ".join(sql.split())[:48]].append(time.perf_counter_ns() - started)
            return real

    handle.cursor = Timed()
    for _ in range(n):
        rows.step()
    for sql, times in spent.items():
        times.sort()
        print(f"{times[len(times) // 2] / 1000:7.1f} µs  x{len(times) / n:.2f}  {sql}")


def counted(args: argparse.Namespace, tmp: str) -> None:
    out = os.path.join(tmp, "cg")
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--separate-threads=yes",
        f"--callgrind-out-file={out}.%p",
        sys.executable,
        "-m",
        "bench.store_rotations",
        "--inner",
        "--n",
        str(args.n),
        *(["--memory"] if args.memory else []),
        *(["--no-data"] if args.no_data else []),
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([_path.SRC, _path.ROOT]))
    subprocess.run(cmd, env=env, cwd=_path.ROOT, check=True, capture_output=True)
    for path in glob.glob(out + ".*-01"):  # the main thread's part of the dump on request
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if "Trigger: dump" in text:
            total = next(int(x.split()[1]) for x in text.splitlines() if x.startswith("summary:"))
            print(f"{total / args.n:,.0f} instructions per get + rotate (main thread)")
            return
    raise RuntimeError("callgrind wrote no dump")


def inner(rows: Rotations, n: int) -> None:
    pid = str(os.getpid())
    for switch in (["-i", "on"], None, ["-d"], ["-i", "off"]):
        if switch is None:
            for _ in range(n):
                rows.step()
        else:
            subprocess.run(["callgrind_control", *switch, pid], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, help="rotations per round (2,000; counted: 500)")
    parser.add_argument("--count", action="store_true")
    parser.add_argument("--statements", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--no-data", action="store_true")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.n is None:
        args.n = 500 if args.count else 2000
    with tempfile.TemporaryDirectory(prefix="swrot-") as tmp:
        if args.count:
            counted(args, tmp)
            return
        store = open_store(args.memory, tmp)
        rows = Rotations(store, set_data=not args.no_data)
        for _ in range(WARM_UP):
            rows.step()
        if args.inner:
            inner(rows, args.n)
        elif args.statements:
            statements(rows, args.n)
        else:
            timed(rows, args.n)
        close = getattr(store, "close", None)
        if close is not None:
            close()


if __name__ == "__main__":
    main()
