"""Candidate SQLite layouts for the session store, compared on what a commit writes.

    PYTHONPATH=src python -m bench.sqlite_layouts               # every layout, op and scenario
    valgrind --tool=callgrind --instr-atstart=no python -m bench.sqlite_layouts \\
        --layout trail-apart --scenario many --op rotate --count   # instructions of one

The store's statements, in raw SQL on a file of its own (WAL, ``synchronous=NORMAL``, no
checkpoint during a run), for each layout: a sign-in's rotation (the live check, the old row
becoming a tombstone, the new record with the trail carried over and one entry appended, the
per-user cap's query), a touch (the trail's entry, last-seen and expiry) and a data write,
each in its own ``BEGIN IMMEDIATE`` transaction. Rows have the sizes measured in
``bench.run``'s sign-in row: a meta of 439 bytes, data of 52, a full trail of 20 entries
(2,071 bytes), tombstones of 50. Reported: WAL frames per operation (each a ``pwrite`` of its
header and one of its page) and µs per operation; ``--count`` turns callgrind's
instrumentation on around the measured operations only (``callgrind_control``), for
instruction counts. Scenarios: ``bench`` (one live session and 300 tombstones, as the sign-in
row) and ``many`` (20,000 live sessions of 5,000 users with full trails, 20,000 tombstones).

Layouts: ``current`` (one table, the trail in the record's row); ``trail-apart`` (the trail
in a table of its own, one row per session, its id carried by rotation; the append read and
written back); ``trail-apart-sql`` (the same, the append done by one UPDATE in SQL);
``trail-rows`` (one row per trail entry, ``(trail, seq)`` WITHOUT ROWID); ``markers-apart``
(``trail-apart``, and tombstones in a WITHOUT ROWID table of their own).
"""

from __future__ import annotations

try:
    from bench import _path
except ImportError:  # run as a script: python bench/sqlite_layouts.py
    import _path  # type: ignore[no-redef]
_path.fix()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

T0 = 1_796_529_600.0
_STAMP = 1_796_529_600.1234567
META = json.dumps(
    {
        "created_at": _STAMP,
        "last_seen": _STAMP,
        "expires_at": _STAMP,
        "rotated_at": _STAMP,
        "csrf_secret": "x" * 43,
        "user_id": "alice",
        "auth_at": _STAMP,
        "client_ip": "127.0.0.1",
        "user_agent": "Firefox 128 on Linux",
        "fingerprint": {"ua": "y" * 43, "lang": "z" * 43},
        "flags": {"lineage": "q" * 22},
        "dbsc": None,
    },
    separators=(",", ":"),
).ljust(439)
DATA = '{"user":"alice","theme":"dark","lang":"en","cart":%d}'
ENTRY = json.dumps(
    {"at": _STAMP, "ip": "127.0.0.1", "ua": "Firefox 128 on Linux", "path": "/", "method": "GET"},
    separators=(",", ":"),
)
TRAIL_MAX = 20
TOMBSTONE = '{"reason":"login-rotation","at":1796529600.1234567}'
_TABLE = """CREATE TABLE items (key TEXT PRIMARY KEY NOT NULL, kind INTEGER NOT NULL, user_id TEXT,
    created_at REAL, expires REAL NOT NULL, meta TEXT NOT NULL, data TEXT, {last})"""
_INDEXES = (
    "CREATE INDEX items_user ON items (user_id, created_at) WHERE kind = 0",
    "CREATE INDEX items_expires ON items (expires)",
)
_CAP = (
    "SELECT created_at, coalesce(json_extract(meta, '$.last_seen'), created_at), key FROM items"
    " WHERE user_id = ? AND kind = 0 AND (expires > ? OR key = ?)"
)
_MARK = """INSERT INTO items (rowid, key, kind, user_id, created_at, expires, meta, data, {last})
    VALUES (?, ?, 2, ?, NULL, ?, ?, NULL, NULL) ON CONFLICT (key) DO UPDATE SET kind = 2,
    user_id = excluded.user_id, created_at = NULL, expires = excluded.expires,
    meta = excluded.meta, data = NULL, {last} = NULL"""
_RECORD = """INSERT INTO items (rowid, key, kind, user_id, created_at, expires, meta, data, {last})
    VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET kind = 0,
    user_id = excluded.user_id, created_at = excluded.created_at, expires = excluded.expires,
    meta = excluded.meta, data = excluded.data, {last} = coalesce(excluded.{last}, items.{last})"""


def row_id(key: str) -> int:
    return int(key[:16], 16) - (1 << 63)


def appended(trail: str) -> str:
    """The trail (a JSON array, one entry a line) with ENTRY appended, the newest 20 kept."""
    lines = [*trail[2:-2].split(",\n")[-(TRAIL_MAX - 1) :], ENTRY]
    return "[\n" + ",\n".join(lines) + "\n]"


FULL_TRAIL = "[\n" + ",\n".join([ENTRY] * TRAIL_MAX) + "\n]"


class Current:
    """One table; the trail is the record row's ``activity`` column."""

    def schema(self, db: sqlite3.Connection) -> None:
        db.execute(_TABLE.format(last="activity TEXT"))
        for index in _INDEXES:
            db.execute(index)

    def add(self, db: sqlite3.Connection, key: str, user: str, t: float) -> None:
        db.execute(
            _RECORD.format(last="activity"),
            (row_id(key), key, user, t, t + 3600, META, DATA % 3, FULL_TRAIL),
        )

    def tombstone(self, db: sqlite3.Connection, key: str, t: float) -> None:
        db.execute(_MARK.format(last="activity"), (row_id(key), key, "u", t + 3600, TOMBSTONE))

    def rotate(self, db: sqlite3.Connection, old: str, new: str, user: str, t: float) -> None:
        _, _, _, trail = db.execute(
            "SELECT kind, meta, data, activity FROM items WHERE key = ?", (old,)
        ).fetchone()
        db.execute(_MARK.format(last="activity"), (row_id(old), old, user, t + 7200, TOMBSTONE))
        db.execute(
            _RECORD.format(last="activity"),
            (row_id(new), new, user, t, t + 3600, META, DATA % 3, appended(trail)),
        )
        db.execute(_CAP, (user, t, new)).fetchall()

    def touch(self, db: sqlite3.Connection, key: str, t: float) -> None:
        _, _, _, trail = db.execute(
            "SELECT kind, meta, data, activity FROM items WHERE key = ?", (key,)
        ).fetchone()
        db.execute(
            "UPDATE items SET meta = ?, expires = ?, activity = ? WHERE key = ? AND kind = 0",
            (META, t + 3600, appended(trail), key),
        )

    def write(self, db: sqlite3.Connection, key: str, t: float) -> None:
        db.execute(
            "UPDATE items SET data = ? WHERE key = ? AND kind = 0", (DATA % round(t * 100), key)
        )


class TrailApart(Current):
    """The trail in ``trails`` (one row a session), the record row holds its id (``trail``),
    which a rotation carries to the new row; the append reads the trail and writes it back."""

    def schema(self, db: sqlite3.Connection) -> None:
        db.execute(_TABLE.format(last="trail INTEGER"))
        for index in _INDEXES:
            db.execute(index)
        db.execute("CREATE TABLE trails (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")

    def new_trail(self, db: sqlite3.Connection) -> int:
        return int(db.execute("INSERT INTO trails (body) VALUES (?)", (FULL_TRAIL,)).lastrowid or 0)

    def append(self, db: sqlite3.Connection, trail: int) -> None:
        (body,) = db.execute("SELECT body FROM trails WHERE id = ?", (trail,)).fetchone()
        db.execute("UPDATE trails SET body = ? WHERE id = ?", (appended(body), trail))

    def add(self, db: sqlite3.Connection, key: str, user: str, t: float) -> None:
        db.execute(
            _RECORD.format(last="trail"),
            (row_id(key), key, user, t, t + 3600, META, DATA % 3, self.new_trail(db)),
        )

    def tombstone(self, db: sqlite3.Connection, key: str, t: float) -> None:
        db.execute(_MARK.format(last="trail"), (row_id(key), key, "u", t + 3600, TOMBSTONE))

    def rotate(self, db: sqlite3.Connection, old: str, new: str, user: str, t: float) -> None:
        _, _, _, trail = db.execute(
            "SELECT kind, meta, data, trail FROM items WHERE key = ?", (old,)
        ).fetchone()
        self.mark(db, old, user, t)
        db.execute(
            _RECORD.format(last="trail"),
            (row_id(new), new, user, t, t + 3600, META, DATA % 3, trail),
        )
        self.append(db, trail)
        db.execute(_CAP, (user, t, new)).fetchall()

    def mark(self, db: sqlite3.Connection, old: str, user: str, t: float) -> None:
        db.execute(_MARK.format(last="trail"), (row_id(old), old, user, t + 7200, TOMBSTONE))

    def touch(self, db: sqlite3.Connection, key: str, t: float) -> None:
        _, _, _, trail = db.execute(
            "SELECT kind, meta, data, trail FROM items WHERE key = ?", (key,)
        ).fetchone()
        self.append(db, trail)
        db.execute(
            "UPDATE items SET meta = ?, expires = ? WHERE key = ? AND kind = 0",
            (META, t + 3600, key),
        )


class TrailApartSql(TrailApart):
    """``TrailApart`` with the entries one a line and their count kept: the append is one
    UPDATE computed by SQLite (the trail never reaches Python)."""

    def schema(self, db: sqlite3.Connection) -> None:
        super().schema(db)
        db.execute("DROP TABLE trails")
        db.execute("CREATE TABLE trails (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, body TEXT)")

    def new_trail(self, db: sqlite3.Connection) -> int:
        body = "\n".join([ENTRY] * TRAIL_MAX)
        cursor = db.execute("INSERT INTO trails (n, body) VALUES (?, ?)", (TRAIL_MAX, body))
        return int(cursor.lastrowid or 0)

    def append(self, db: sqlite3.Connection, trail: int) -> None:
        db.execute(
            "UPDATE trails SET body = CASE WHEN n = 0 THEN ?1"
            " WHEN n >= ?2 THEN substr(body, instr(body, char(10)) + 1) || char(10) || ?1"
            " ELSE body || char(10) || ?1 END, n = min(n + 1, ?2) WHERE id = ?3",
            (ENTRY, TRAIL_MAX, trail),
        )


class TrailRows(TrailApart):
    """One row per trail entry: ``(trail, seq)`` WITHOUT ROWID; the append inserts the entry
    and deletes the ones past the newest 20."""

    def schema(self, db: sqlite3.Connection) -> None:
        super().schema(db)
        db.execute("DROP TABLE trails")
        db.execute(
            "CREATE TABLE trails (trail INTEGER NOT NULL, seq INTEGER NOT NULL, entry TEXT NOT"
            " NULL, PRIMARY KEY (trail, seq)) WITHOUT ROWID"
        )
        self.next_id = 1

    def new_trail(self, db: sqlite3.Connection) -> int:
        trail, self.next_id = self.next_id, self.next_id + 1
        rows = [(trail, seq, ENTRY) for seq in range(TRAIL_MAX)]
        db.executemany("INSERT INTO trails VALUES (?, ?, ?)", rows)
        return trail

    def append(self, db: sqlite3.Connection, trail: int) -> None:
        (seq,) = db.execute(
            "INSERT INTO trails SELECT ?1, coalesce(max(seq), 0) + 1, ?2 FROM trails"
            " WHERE trail = ?1 RETURNING seq",
            (trail, ENTRY),
        ).fetchone()
        db.execute("DELETE FROM trails WHERE trail = ? AND seq <= ?", (trail, seq - TRAIL_MAX))


class MarkersApart(TrailApart):
    """``TrailApart``, and tombstones in ``markers`` (WITHOUT ROWID, by key): a rotation
    deletes the old record row and inserts the tombstone there."""

    def schema(self, db: sqlite3.Connection) -> None:
        super().schema(db)
        db.execute(
            "CREATE TABLE markers (key TEXT PRIMARY KEY NOT NULL, kind INTEGER NOT NULL,"
            " user_id TEXT, expires REAL NOT NULL, meta TEXT NOT NULL) WITHOUT ROWID"
        )
        db.execute("CREATE INDEX markers_expires ON markers (expires)")

    def tombstone(self, db: sqlite3.Connection, key: str, t: float) -> None:
        db.execute("INSERT INTO markers VALUES (?, 2, 'u', ?, ?)", (key, t + 3600, TOMBSTONE))

    def mark(self, db: sqlite3.Connection, old: str, user: str, t: float) -> None:
        db.execute("DELETE FROM items WHERE key = ?", (old,))
        db.execute(
            "INSERT INTO markers VALUES (?, 2, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
            " kind = 2, user_id = excluded.user_id, expires = excluded.expires,"
            " meta = excluded.meta",
            (old, user, t + 7200, TOMBSTONE),
        )


LAYOUTS: dict[str, type[Current]] = {
    "current": Current,
    "trail-apart": TrailApart,
    "trail-apart-sql": TrailApartSql,
    "trail-rows": TrailRows,
    "markers-apart": MarkersApart,
}
#: live sessions, users, tombstones
SCENARIOS = {"bench": (1, 1, 300), "many": (20_000, 5_000, 20_000)}
OPS = ("rotate", "touch", "write")


def _toggle(*args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(os.getpid())], capture_output=True, check=False)


def run(
    layout: Current, scenario: str, op: str, n: int, *, count: bool = False
) -> tuple[float, float]:
    """WAL frames and µs per ``op`` (after 100 unmeasured ones) on a new file."""
    live, users, tombstones = SCENARIOS[scenario]
    rng = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="swbench-layout-") as tmp:
        path = os.path.join(tmp, "layout.db")
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA wal_autocheckpoint = 0")
            layout.schema(db)
            keys = [os.urandom(32).hex() for _ in range(live)]
            owner = {key: f"user{i % users}" for i, key in enumerate(keys)}
            db.execute("BEGIN")
            for i, key in enumerate(keys):
                layout.add(db, key, owner[key], T0 + i * 0.001)
            for _ in range(tombstones):
                layout.tombstone(db, os.urandom(32).hex(), T0)
            db.execute("COMMIT")
            t = T0
            spent = 0.0
            size = 0
            for i in range(100 + n):
                if i == 100:
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                    spent = 0.0
                    if count:
                        _toggle("-i", "on")
                t += 0.01
                at = rng.randrange(live)
                key = keys[at]
                start = time.perf_counter()
                db.execute("BEGIN IMMEDIATE")
                if op == "rotate":
                    new = os.urandom(32).hex()
                    layout.rotate(db, key, new, owner[key], t)
                    keys[at] = new
                    owner[new] = owner.pop(key)
                else:
                    getattr(layout, op)(db, key, t)
                db.execute("COMMIT")
                spent += time.perf_counter() - start
            if count:
                _toggle("-d")
                _toggle("-i", "off")
            size = os.path.getsize(path + "-wal")
            page = int(db.execute("PRAGMA page_size").fetchone()[0])
        finally:
            db.close()
    return max(0, size - 32) / (24 + page) / n, spent / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layout", choices=list(LAYOUTS), action="append")
    parser.add_argument("--scenario", choices=list(SCENARIOS), action="append")
    parser.add_argument("--op", choices=OPS, action="append")
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--count", action="store_true", help="toggle callgrind (see above)")
    args = parser.parse_args()
    for scenario in args.scenario or list(SCENARIOS):
        for op in args.op or list(OPS):
            for name in args.layout or list(LAYOUTS):
                frames, micros = run(LAYOUTS[name](), scenario, op, args.n, count=args.count)
                print(f"{scenario:5} {op:6} {name:16} {frames:6.2f} frames {micros:7.1f} µs")


if __name__ == "__main__":
    main()
