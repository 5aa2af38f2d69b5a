"""Faults: the store goes away, hangs, refuses writes or fills up; a process dies mid-write; the
clock jumps. The promise under test is the same every time: a clean 503 within the store timeout
(never a traceback, never a hang), the outage reported once and its end once, and when the store
returns, every session is intact.

Destructive Redis faults run against a PRIVATE redis-server on a free loopback port, never the
shared one. Filesystem faults use a small tmpfs mounted for the test when the test runs as root
with mount rights, else the store's own read-only mode and a failing connection wrapper.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionwarden.asgi import SessionWardenMiddleware
from sessionwarden.clock import ManualClock, SystemClock
from sessionwarden.core import Engine, run_sync
from sessionwarden.events import EventKind
from sessionwarden.facts import RequestFacts
from sessionwarden.policy import Policy
from sessionwarden.records import Alias, SessionRecord
from sessionwarden.stores import InlineAsyncStore
from sessionwarden.stores.sqlite import SQLiteStore

from .attacks.conftest import Browser, Recorder, attacked_app, drop_keys
from .conftest import SECRET, redis_or_skip, unique_prefix
from .private_redis import PrivateRedis

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_BOUND = 2.0  # seconds a refused request may take (the store timeout is 1 s)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (nor reads)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            held.append(conn)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    yield int(listener.getsockname()[1])
    stop.set()
    t.join(timeout=2)
    for conn in held:
        conn.close()
    listener.close()


def _rig(store: Any, recorder: Recorder) -> tuple[SessionWardenMiddleware, Any]:
    mw = SessionWardenMiddleware(
        attacked_app(),
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store=store,
        sink=recorder,
    )

    def browser(peer: str = "198.51.100.7") -> Browser:
        transport = httpx.ASGITransport(app=mw, client=(peer, 50000))
        return Browser(
            httpx.AsyncClient(
                transport=transport,
                base_url="https://app.test",
                headers={"user-agent": "Mozilla/5.0 Firefox/128.0"},
            )
        )

    return mw, browser


async def _refused_quickly(b: Browser, path: str = "/whoami", **kw: Any) -> None:
    started = time.monotonic()
    r = await b.request("GET" if path != "/transfer" else "POST", path, **kw)
    elapsed = time.monotonic() - started
    assert r.status_code == 503, (r.status_code, r.text)
    assert elapsed < TIMEOUT_BOUND, f"503 took {elapsed:.2f}s"
    assert r.headers["retry-after"] == "1"
    assert "Traceback" not in r.text and "redis" not in r.text.lower()
    assert "temporarily unavailable" in r.text


async def _sign_in_many(browser: Any, n: int) -> list[Browser]:
    users = []
    for i in range(n):
        b = browser(peer=f"198.51.100.{i + 10}")
        await b.login(f"user{i}")
        t = await b.token()
        r = await b.post("/transfer", data={"to": "bob", "amount": str(i), "csrf_token": t})
        assert r.status_code == 200
        users.append(b)
    return users


async def _write_again(b: Browser) -> None:
    t = await b.token()
    r = await b.post("/transfer", data={"to": "carol", "amount": "1", "csrf_token": t})
    assert r.status_code == 200, r.text


async def _all_intact(users: list[Browser]) -> None:
    for i, b in enumerate(users):
        r = await b.get("/whoami")
        assert r.status_code == 200
        assert r.json() == {"user": f"user{i}", "transfers": [{"to": "bob", "amount": str(i)}]}


# -- Redis --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_redis_stopped_then_restarted(private_redis: PrivateRedis) -> None:
    rec = Recorder()
    mw, browser = _rig(f"redis://127.0.0.1:{private_redis.port}/0", rec)
    users = await _sign_in_many(browser, 5)
    # Each session's last write left it in the local read cache, which is dropped once the
    # notice connection's end is read; here every request must reach Redis at once.
    assert mw.store.read_cache is not None
    mw.store.read_cache.clear()
    private_redis.kill()
    for b in users[:3]:
        await _refused_quickly(b)
    await _refused_quickly(
        users[3], "/transfer", data={"to": "x", "amount": "1", "csrf_token": "x"}
    )
    assert rec.count(EventKind.STORE_UNAVAILABLE) == 1, "one event per outage, not per request"
    private_redis.start()  # same port, same data directory
    await _all_intact(users)
    assert rec.count(EventKind.STORE_RECOVERED) == 1
    assert rec.count(EventKind.STORE_UNAVAILABLE) == 1
    await mw.store.close()
    for b in users:
        await b.client.aclose()


@pytest.mark.anyio
async def test_redis_client_pause_gives_503_then_recovers(private_redis: PrivateRedis) -> None:
    rec = Recorder()
    mw, browser = _rig(f"redis://127.0.0.1:{private_redis.port}/0", rec)
    users = await _sign_in_many(browser, 3)
    # Each session's last write left it in the local read cache (served from memory while
    # Redis is paused: the next test); here every request must reach Redis.
    assert mw.store.read_cache is not None
    mw.store.read_cache.clear()
    paused_at = time.monotonic()
    private_redis.command("CLIENT", "PAUSE", "3000", "ALL")
    for b in users[:2]:
        await _refused_quickly(b)
    assert rec.count(EventKind.STORE_UNAVAILABLE) == 1
    remaining = 3.2 - (time.monotonic() - paused_at)
    if remaining > 0:
        await asyncio.sleep(remaining)
    await _all_intact(users)
    assert rec.count(EventKind.STORE_RECOVERED) == 1
    assert rec.count(EventKind.STORE_UNAVAILABLE) == 1
    await mw.store.close()


@pytest.mark.anyio
async def test_redis_paused_cached_session_is_served_for_a_bounded_time(
    private_redis: PrivateRedis,
) -> None:
    """With the local read cache, a session read just before Redis stops answering may still be
    served from memory (no write can land while Redis is paused, so it is exact), but only until
    the heartbeat on the notice connection goes unanswered: then every request is a 503."""
    from sessionwarden.stores.tracking import HEARTBEAT

    rec = Recorder()
    mw, browser = _rig(f"redis://127.0.0.1:{private_redis.port}/0", rec)
    cache = mw.store.read_cache
    assert cache is not None and cache.feed.wait_connected(5.0)
    (b,) = await _sign_in_many(browser, 1)
    for _ in range(2):  # read (kept), then served from the cache
        r = await b.get("/whoami")
        assert r.status_code == 200 and r.json()["user"] == "user0"
    assert cache.hits >= 1
    paused_at = time.monotonic()
    private_redis.command("CLIENT", "PAUSE", "6000", "ALL")
    refused_after = None
    served = 0
    while refused_after is None:
        r = await b.get("/whoami")
        waited = time.monotonic() - paused_at
        if r.status_code == 503:
            refused_after = waited
        else:  # never anything but the right answer
            assert r.status_code == 200 and r.json()["user"] == "user0"
            assert waited < HEARTBEAT + 1.0 + 0.5, "served from the cache for too long"
            served += 1
            await asyncio.sleep(0.05)
    assert served >= 1  # the cache did serve while Redis was paused
    assert refused_after < HEARTBEAT + 1.0 + TIMEOUT_BOUND
    await mw.store.close()


@pytest.mark.anyio
async def test_redis_that_accepts_and_never_answers(black_hole: int) -> None:
    rec = Recorder()
    mw, browser = _rig(f"redis://127.0.0.1:{black_hole}/0", rec)
    from sessionwarden import tokens

    b = browser()
    await _refused_quickly(b, "/token")  # no cookie: nothing to look up; the token page writes
    b.cookie = tokens.new_session_id()
    for _ in range(3):
        await _refused_quickly(b)
    assert rec.count(EventKind.STORE_UNAVAILABLE) == 1
    with contextlib.suppress(Exception):
        await mw.store.close()


def test_wsgi_redis_stopped_gives_503_once_reported(private_redis: PrivateRedis) -> None:
    from sessionwarden.wsgi import SessionWardenWSGI

    from .test_concurrency import _wsgi_app, wsgi_call, wsgi_login

    rec = Recorder()
    mw = SessionWardenWSGI(
        _wsgi_app,
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store=f"redis://127.0.0.1:{private_redis.port}/0",
        sink=rec,
    )
    cookie = wsgi_login(mw)
    private_redis.kill()
    for _ in range(3):
        started = time.monotonic()
        status, _, _ = wsgi_call(mw, "/data", cookie=cookie)
        assert status == 503 and time.monotonic() - started < TIMEOUT_BOUND
    assert rec.count(EventKind.STORE_UNAVAILABLE) == 1
    private_redis.start()
    assert wsgi_call(mw, "/data", cookie=cookie)[1] == {"user": "alice", "keys": []}
    assert rec.count(EventKind.STORE_RECOVERED) == 1
    mw.store.close()


# -- SQLite ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def tiny_fs(where: Path, size: str) -> Iterator[Path | None]:
    """A tmpfs of ``size`` mounted at ``where`` (None when mounting is not possible here)."""
    where.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        yield None
        return
    if done.returncode != 0:
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10)


@pytest.mark.anyio
async def test_sqlite_read_only_gives_503(tmp_path: Path) -> None:
    """The file can be read but not written (the store's ``read_only=True``: root ignores chmod,
    and a filesystem cannot be remounted read-only under open WAL files)."""
    path = tmp_path / "s.db"
    rec = Recorder()
    rw = SQLiteStore(path)
    mw, browser = _rig(InlineAsyncStore(rw), rec)
    users = await _sign_in_many(browser, 2)
    rw.close()
    store = SQLiteStore(path, read_only=True)
    mw.store = InlineAsyncStore(store)
    # reading works: a signed-in user browsing (no touch due) is still served
    r = await users[1].get("/whoami")
    assert r.status_code == 200 and r.json()["user"] == "user1"
    # anything that writes (a new session, a login, a transfer) is a clean 503
    fresh = browser(peer="198.51.100.99")
    await _refused_quickly(fresh, "/token")
    t = users[0].tokens[-1]
    await _refused_quickly(users[0], "/transfer", data={"to": "x", "amount": "1", "csrf_token": t})
    assert rec.count(EventKind.STORE_UNAVAILABLE) == 1
    store.close()
    mw.store = InlineAsyncStore(SQLiteStore(path))
    await _all_intact(users)
    await _write_again(users[0])  # only a successful write ends a write outage
    assert rec.count(EventKind.STORE_RECOVERED) == 1
    assert rec.count(EventKind.STORE_UNAVAILABLE) == 1
    await mw.store.close()


@pytest.mark.anyio
async def test_sqlite_locked_by_another_connection_gives_503(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    rec = Recorder()
    store = SQLiteStore(path, timeout=0.5)
    mw, browser = _rig(InlineAsyncStore(store), rec)
    users = await _sign_in_many(browser, 2)
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN EXCLUSIVE")
    try:
        t = users[0].tokens[-1]
        for _ in range(2):
            await _refused_quickly(
                users[0], "/transfer", data={"to": "x", "amount": "1", "csrf_token": t}
            )
        await _refused_quickly(browser(peer="198.51.100.99"), "/token")
        assert rec.count(EventKind.STORE_UNAVAILABLE) == 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    await _all_intact(users)
    await _write_again(users[0])
    assert rec.count(EventKind.STORE_RECOVERED) == 1
    assert rec.count(EventKind.STORE_UNAVAILABLE) == 1
    await mw.store.close()


@pytest.mark.anyio
async def test_sqlite_lock_does_not_stall_the_other_requests_of_the_worker(tmp_path: Path) -> None:
    """The default store URL (the default busy timeout); a lock held elsewhere (a backup, an
    operator's sqlite3 shell, another process's long transaction)."""
    import asyncio

    rec = Recorder()
    mw, browser = _rig(f"sqlite:///{tmp_path}/s.db", rec)
    writer = browser()
    await writer.token()
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None, timeout=0)
    other.execute("BEGIN EXCLUSIVE")
    bystander = browser(peer="198.51.100.99")
    started = time.monotonic()

    async def write() -> float:
        r = await writer.get("/count")  # needs the write lock
        assert r.status_code == 503
        return time.monotonic() - started

    async def read() -> float:
        await asyncio.sleep(0.1)
        r = await bystander.get("/whoami")  # no cookie: never touches the store
        assert r.status_code == 200
        return time.monotonic() - started - 0.1

    try:
        wrote, read_took = await asyncio.gather(write(), read())
    finally:
        other.execute("ROLLBACK")
        other.close()
        await mw.store.close()
    assert read_took < 1.0, f"a request that needs no store waited {read_took:.2f}s"
    assert wrote < TIMEOUT_BOUND, f"the 503 took {wrote:.2f}s"


class _FullDisk:
    """A connection (or cursor) stand-in whose writes fail like a full disk (when no tmpfs can
    be mounted)."""

    def __init__(self, real: sqlite3.Connection | sqlite3.Cursor) -> None:
        self._real = real

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")
        return self._real.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.mark.anyio
async def test_sqlite_full_disk_gives_503_then_recovers(tmp_path: Path) -> None:
    with tiny_fs(tmp_path / "tiny", "1m") as mnt:
        base = mnt if mnt is not None else tmp_path
        path = base / "s.db"
        rec = Recorder()
        store = SQLiteStore(path)
        mw, browser = _rig(InlineAsyncStore(store), rec)
        users = await _sign_in_many(browser, 2)
        filler = base / "filler"
        if mnt is not None:
            with contextlib.suppress(OSError), open(filler, "wb") as f:
                for _ in range(4096):  # fill the filesystem to the last block
                    f.write(b"\0" * 4096)
                    f.flush()
                    os.fsync(f.fileno())
        else:
            handle = store._local.handle
            handle.db = _FullDisk(handle.db)  # type: ignore[assignment]
            handle.cursor = _FullDisk(handle.cursor)  # type: ignore[assignment]
        big = "z" * 3000
        t = users[0].tokens[-1]
        refused = 0
        for i in range(40):  # writes until the disk is really full (pages may be free in WAL)
            started = time.monotonic()
            r = await users[0].post(
                "/transfer", data={"to": big + str(i), "amount": "1", "csrf_token": t}
            )
            assert time.monotonic() - started < TIMEOUT_BOUND
            assert r.status_code in (200, 503) and "Traceback" not in r.text
            if r.status_code == 503:
                refused += 1
                if refused >= 2:
                    break
        assert refused >= 2, "a full disk must end in 503"
        assert rec.count(EventKind.STORE_UNAVAILABLE) == 1
        if mnt is not None:
            filler.unlink()
        else:
            handle.db = handle.db._real  # type: ignore[attr-defined]
            handle.cursor = handle.cursor._real  # type: ignore[attr-defined]
        b = users[1]
        r = await b.get("/whoami")
        assert r.status_code == 200 and r.json()["user"] == "user1"
        await _write_again(b)
        assert rec.count(EventKind.STORE_RECOVERED) == 1
        assert rec.count(EventKind.STORE_UNAVAILABLE) == 1
        await mw.store.close()


@pytest.mark.anyio
async def test_write_only_outage_is_reported_once(tmp_path: Path) -> None:
    """Reads work, writes fail (here a read-only file): one STORE_UNAVAILABLE for the whole
    outage, no STORE_RECOVERED from a request whose read succeeded, one when a write succeeds
    again. Regression test for bug 2 in docs/reliability.md (fixed in 06121da)."""
    path = tmp_path / "s.db"
    rec = Recorder()
    rw = SQLiteStore(path)
    mw, browser = _rig(InlineAsyncStore(rw), rec)
    users = await _sign_in_many(browser, 2)
    rw.close()
    mw.store = InlineAsyncStore(SQLiteStore(path, read_only=True))
    t = users[0].tokens[-1]
    for _ in range(4):
        await _refused_quickly(
            users[0], "/transfer", data={"to": "x", "amount": "1", "csrf_token": t}
        )
    await mw.store.close()
    assert (rec.count(EventKind.STORE_UNAVAILABLE), rec.count(EventKind.STORE_RECOVERED)) == (1, 0)


# -- a process killed in the middle of a rotation or a login -------------------------------------

_ROTATOR = textwrap.dedent(
    """
    import random, sys, time
    from sessionwarden import tokens
    from sessionwarden.core import Engine, run_sync
    from sessionwarden.facts import RequestFacts
    from sessionwarden.policy import Policy
    from sessionwarden.stores.sqlite import SQLiteStore

    db, idfile, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    log = open(idfile, "a", buffering=1)
    current_user = [""]
    real_new = tokens.new_session_id

    def logged_new():
        value = real_new()
        log.write(f"{current_user[0]} {value}\\n")  # reaches the OS before the ID is used
        log.flush()
        return value

    tokens.new_session_id = logged_new
    engine = Engine(Policy(secret_keys=(b"k" * 32,), rotation_grace=0, rotate_every=0))
    store = SQLiteStore(db)
    current = {}
    for line in open(idfile):
        user, sid = line.split()
        current[user] = sid
    users = sorted(current)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline and n < 200000:
        n += 1
        user = random.choice(users)
        current_user[0] = user
        facts = RequestFacts(method="POST", scheme="https", host="app.test", path="/",
                             client_ip="198.51.100.7", user_agent="Mozilla/5.0 Firefox/128.0",
                             cookie_header="__Host-id=" + current[user])
        loaded = run_sync(engine.load(facts), store)
        session = loaded.session
        assert session.user_id == user, (user, n)
        if n % 3 == 0:
            session.login(user)  # a login: rotates with a tombstone, new CSRF secret
        else:
            session.rotate()  # a privilege rotation
        session["n"] = n
        out = run_sync(engine.commit(session, facts), store)
        current[user] = out.set_cookie.split(";", 1)[0].split("=", 1)[1]
    """
)


def test_kill_9_in_the_middle_of_rotations_never_loses_or_duplicates(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    idfile = tmp_path / "ids.txt"
    policy = Policy(secret_keys=(SECRET,), allowed_hosts=("*",), rotation_grace=0, rotate_every=0)
    engine = Engine(policy)
    store = SQLiteStore(db)
    users = [f"u{i}" for i in range(8)]
    with open(idfile, "w") as f:
        for user in users:
            facts = RequestFacts(
                method="POST",
                scheme="https",
                host="app.test",
                path="/",
                client_ip="198.51.100.7",
                user_agent="Mozilla/5.0 Firefox/128.0",
            )
            loaded = run_sync(engine.load(facts), store)
            loaded.session.login(user)
            out = run_sync(engine.commit(loaded.session, facts), store)
            assert out.set_cookie is not None
            f.write(f"{user} {out.set_cookie.split(';', 1)[0].split('=', 1)[1]}\n")
    store.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    rng = random.Random(7)
    for _ in range(5):
        issued = len(idfile.read_text().splitlines())
        proc = subprocess.Popen(
            [sys.executable, "-c", _ROTATOR, str(db), str(idfile), "600"],
            env=env,
            stderr=subprocess.PIPE,
        )
        # Kill it after a random number of rotations (not after a wall-clock time: a loaded
        # machine may take seconds just to start the interpreter).
        target = issued + rng.randint(len(users) * 3 + 1, 300)
        deadline = time.monotonic() + 300  # generous: only a child that never rotates fails
        while len(idfile.read_text().splitlines()) < target and proc.poll() is None:
            assert time.monotonic() < deadline, "the child never rotated"
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
        # every user: exactly one of the IDs ever issued to it reaches its session
        store = SQLiteStore(db)
        try:
            ids: dict[str, list[str]] = {}
            for line in idfile.read_text().splitlines():
                user, sid = line.split()
                ids.setdefault(user, []).append(sid)
            assert sum(len(v) for v in ids.values()) > len(users) * 3, "the child never rotated"
            for user in users:
                working = []
                for sid in dict.fromkeys(ids[user]):  # every ID this user was ever issued
                    found = store.get(engine.keyring.hash_id(sid))
                    if isinstance(found, SessionRecord) and found.user_id == user:
                        working.append(sid)
                    assert not isinstance(found, Alias)
                assert len(working) == 1, f"{user}: {len(working)} live IDs after kill -9"
                assert working[0] in ids[user][-2:]  # the last committed or the one in flight
                assert len(store.user_sessions(user)) == 1
            assert store._read("PRAGMA integrity_check")[0][0] == "ok"
        finally:
            store.close()
        # the next round starts from each user's working ID
        with open(idfile, "a") as f:
            for user in users:
                for sid in reversed(ids[user]):
                    if isinstance(SQLiteStore(db).get(engine.keyring.hash_id(sid)), SessionRecord):
                        f.write(f"{user} {sid}\n")
                        break


# -- clock steps ----------------------------------------------------------------------------------

ABS = 2.5
STEP = 0.75


class _Stepped(ManualClock):
    """A ManualClock that follows true time plus an offset; the test steps the offset."""

    def __init__(self) -> None:
        super().__init__(time.time())
        self.offset = 0.0

    def now(self) -> float:
        self.set(time.time() + self.offset)
        return super().now()


@pytest.fixture(params=["sqlite", "redis"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        s: Any = SQLiteStore(tmp_path / "s.db")
        yield s
        s.close()
    else:
        from sessionwarden.stores.redis import RedisStore

        prefix = unique_prefix()
        s = RedisStore(redis_or_skip(), prefix=prefix)
        yield s
        s.close()
        drop_keys(prefix)


def test_clock_steps_keep_absolute_deadline_within_the_step(shared_store: Any) -> None:
    """Two workers share the store: B reads the true clock; A's clock is stepped backwards (one
    group of sessions) or forwards (another group) by STEP. Sessions are created by either worker,
    before and after the step, and used by both in turn with no idle gap. Each must die within
    STEP of its true absolute deadline: never later (a backward step must not extend a life),
    never earlier by more than the step."""
    policy = Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("*",),
        idle_timeout=ABS,
        absolute_timeout=ABS,
        rotate_every=0,
        touch_interval=0,
    )
    truth = SystemClock()
    clocks = {-STEP: _Stepped(), STEP: _Stepped()}
    stepped = {d: Engine(policy, clock=c) for d, c in clocks.items()}
    b = Engine(policy, clock=truth)

    def facts(cookie: str = "") -> RequestFacts:
        return RequestFacts(
            method="GET",
            scheme="https",
            host="app.test",
            path="/",
            client_ip="198.51.100.7",
            user_agent="Mozilla/5.0 Firefox/128.0",
            cookie_header=f"__Host-id={cookie}" if cookie else "",
        )

    sessions: list[dict[str, Any]] = []

    def create(eng: Engine, direction: float, user: str) -> None:
        loaded = run_sync(eng.load(facts()), shared_store)
        loaded.session.login(user)
        out = run_sync(eng.commit(loaded.session, facts()), shared_store)
        assert out.set_cookie is not None
        sessions.append(
            {
                "id": out.set_cookie.split(";", 1)[0].split("=", 1)[1],
                "born": time.time(),
                "died": None,
                "user": user,
                "dir": direction,
            }
        )

    for d, eng in stepped.items():  # before the step: A and B agree
        create(eng, d, f"a-before{d}")
        create(b, d, f"b-before{d}")
    time.sleep(0.2)
    for d, clock in clocks.items():
        clock.offset = d  # the step
    for d, eng in stepped.items():
        create(eng, d, f"a-after{d}")
        create(b, d, f"b-after{d}")
    deadline = time.monotonic() + ABS + STEP + 1.5
    n = 0
    while time.monotonic() < deadline and any(s["died"] is None for s in sessions):
        n += 1
        for s in sessions:
            if s["died"] is not None:
                continue
            eng = stepped[s["dir"]] if n % 2 else b
            loaded = run_sync(eng.load(facts(s["id"])), shared_store)
            run_sync(eng.commit(loaded.session, facts(s["id"])), shared_store)
            if loaded.session.user_id != s["user"]:
                s["died"] = time.time()
        time.sleep(0.02)
    slack = 0.2  # polling interval and scheduling
    for s in sessions:
        assert s["died"] is not None, f"{s['user']} outlived its absolute deadline"
        lived = s["died"] - s["born"]
        assert ABS - STEP - slack <= lived <= ABS + STEP + slack, f"{s['user']} lived {lived:.2f}s"


@pytest.mark.parametrize("user", ["", "app"], ids=["requirepass", "acl-user"])
def test_read_cache_authenticates_like_the_store(private_redis: PrivateRedis, user: str) -> None:
    """The notice connection logs in with the URL's credentials (password, or ACL user and
    password): the cache works on a protected server, and changes still reach it."""
    import redis

    from sessionwarden.stores.redis import RedisStore

    if user:
        private_redis.command("ACL", "SETUSER", user, "on", ">pw-1", "~*", "&*", "+@all")
        private_redis.command("ACL", "SETUSER", "default", "off")
    else:
        private_redis.command("CONFIG", "SET", "requirepass", "pw-1")
    url = f"redis://{user}:pw-1@127.0.0.1:{private_redis.port}/0"
    store = RedisStore(url, prefix="auth:")
    other = redis.Redis.from_url(url)
    try:
        assert store.read_cache is not None and store.read_cache.feed.wait_connected(5.0)
        now = time.time()
        record = SessionRecord(
            key="k" * 64,
            created_at=now,
            last_seen=now,
            expires_at=now + 600,
            rotated_at=now,
            csrf_secret="c",
            user_id="alice",
        )
        store.insert(record, max_per_user=0, tombstone_until=now + 600)
        assert store.get(record.key) == record
        assert store.get(record.key) == record
        assert store.read_cache.hits >= 1
        other.delete("auth:s:" + record.key)  # another client, through the same login
        store.read_cache.barrier()
        assert store.get(record.key) is None
    finally:
        other.close()
        store.close()
    wrong = RedisStore(f"redis://{user}:wrong@127.0.0.1:{private_redis.port}/0", prefix="auth:")
    try:
        assert wrong.read_cache is not None
        assert not wrong.read_cache.feed.wait_connected(2.0)  # refused: nothing is cached
    finally:
        wrong.close()
