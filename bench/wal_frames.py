"""WAL frames per request of the in-process SQLite rows, and the B-trees their pages belong to.

    PYTHONPATH=src python -m bench.wal_frames [write] [sign-in] [--requests 300]

Each row (``bench/ours.py``'s ASGI stack on SQLite: ``write`` is the GET that sets one key,
``sign-in`` the signed-in session signing in again) runs 300 requests to warm up; then the WAL
is checkpointed and emptied, the row runs ``--requests`` more, and the frames the WAL holds are
read from their 24-byte headers (page number, commit marker) and named by SQLite's ``dbstat``
table. The store's checkpointer is off for the run (the WAL must keep every frame), which is
also why this is a script of its own and not a row of ``bench.run``. A frame is one page
written at a commit: its header and its page are two ``pwrite`` calls, and the commit's time
grows with their number.
"""

from __future__ import annotations

try:
    from bench import _path
except ImportError:  # run as a script: python bench/wal_frames.py
    import _path  # type: ignore[no-redef]
_path.fix()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import sqlite3  # noqa: E402
import struct  # noqa: E402
from collections import Counter  # noqa: E402
from contextlib import closing  # noqa: E402

_WAL_HEADER = 32
_FRAME_HEADER = 24


def frames(wal_path: str) -> list[tuple[int, bool]]:
    """The WAL's frames: (page number, whether the frame ends a commit)."""
    with open(wal_path, "rb") as f:
        wal = f.read()
    if len(wal) < _WAL_HEADER:
        return []
    page_size = struct.unpack(">I", wal[8:12])[0]
    found = []
    at = _WAL_HEADER
    while at + _FRAME_HEADER + page_size <= len(wal):
        page, size_after_commit = struct.unpack(">II", wal[at : at + 8])
        found.append((page, size_after_commit != 0))
        at += _FRAME_HEADER + page_size
    return found


def page_names(db_path: str) -> dict[int, str]:
    """Page number -> the table or index it belongs to (``dbstat``)."""
    with closing(sqlite3.connect(db_path)) as db:
        return {
            int(page): str(name) for name, page in db.execute("SELECT name, pageno FROM dbstat")
        }


async def measure(mode: str, n: int) -> None:
    from bench import ours
    from sessionwarden.stores import sqlite_file

    sqlite_file.Checkpointer.wrote = lambda self, fork: None  # type: ignore[method-assign]
    row = ours.OursAsgi("sqlite", mode=mode)
    await row.asetup()
    try:
        path = os.path.join(row._tmp.name, "bench.db")
        for _ in range(300):
            await row.one()
        with closing(sqlite3.connect(path)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        for _ in range(n):
            await row.one()
        written = frames(path + "-wal")
        names = page_names(path)
        commits = sum(1 for _, ends in written if ends)
        print(f"sqlite {mode}: {len(written) / n:.2f} WAL frames a request ({commits} commits)")
        counts = Counter(names.get(page, "(free or new page)") for page, _ in written)
        for name, count in counts.most_common():
            print(f"  {count / n:6.2f}  {name}")
    finally:
        await row.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modes", nargs="*", default=["write", "sign-in"])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    for mode in args.modes:
        asyncio.run(measure(mode, args.requests))


if __name__ == "__main__":
    main()
