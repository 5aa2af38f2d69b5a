"""Faults under live servers: the store goes away while the demo (uvicorn, and its Flask twin
on Werkzeug) serves signed-in users, and comes back.

``tests/test_faults.py`` drives the middleware in-process; here the application is a real
server process, driven over HTTP and WebSocket while another signed-in client keeps sending
requests from a thread. Every store is faulted on servers of the test's own: a private
``redis-server`` (killed and restarted), a Sentinel set-up and a Redis Cluster (every process
frozen with SIGSTOP, then continued), a PostgreSQL database of the test's own on the shared
server (new connections refused with ``ALLOW_CONNECTIONS false`` and the store's backends ended
with ``pg_terminate_backend``: that database's only), and SQLite (a lock held by another process,
the files made immutable, a full tmpfs). What a user or an operator can observe is asserted:

* during the outage, every request that needs the store answers 503 with ``Retry-After: 1`` and
  the clear error, never 500, never a session cookie (nothing adopted or created), never a
  request passing the CSRF check or sign-in; WebSocket handshakes and DBSC refreshes refused;
* the background client only ever gets its own page or a 503;
* the server's output never holds a session ID or a CSRF token a client was given;
* ``store.unavailable`` once for the outage, ``store.recovered`` once after it, nothing between;
* service comes back by itself, sessions intact, without restarting the application;
* a session revoked while the application's Redis notice connection is cut (and kept from
  reconnecting) is refused, then and after the connection is back: the read cache does not
  serve it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import cluster_tools_or_skip, postgres_or_skip
from .demo.conftest import (
    COOKIE,
    FIREFOX_UA,
    FLASK_DEMO,
    STARLETTE_DEMO,
    Client,
    DemoServer,
    page_token,
    run_demo,
)
from .private_redis import PrivateRedis

ROOT = Path(__file__).resolve().parent.parent
APPS = [pytest.param(STARLETTE_DEMO, id="uvicorn"), pytest.param(FLASK_DEMO, id="werkzeug")]
#: How long service may take to return once the store is back (a PostgreSQL pool reconnects
#: with exponential backoff; a frozen cluster may fail over first).
RECOVERY_BOUND = 60.0
STORE_EVENTS = ("store.unavailable", "store.recovered")


@dataclass
class Fault:
    """How to take a store away and give it back."""

    store: str
    down: Callable[[], None]
    up: Callable[[], None]
    #: Reads keep working (a SQLite writer lock, a full disk): only writes are refused.
    reads_work: bool = False


@dataclass
class Watch:
    """Everything secret a client was handed (session IDs, CSRF tokens), to look for in logs."""

    secrets: set[str] = field(default_factory=set)

    def client(self, base_url: str) -> Client:
        return _WatchedClient(base_url, self)


class _WatchedClient(Client):
    def __init__(self, base_url: str, watch: Watch) -> None:
        super().__init__(base_url, user_agent=FIREFOX_UA)
        self.watch = watch

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        response = super().request(method, path, **kw)
        if self.cookie:
            self.watch.secrets.add(self.cookie)
        with contextlib.suppress(AssertionError):
            self.watch.secrets.add(page_token(response.text))
        return response


# -- the checks -------------------------------------------------------------------------------


def _refused(response: httpx.Response) -> None:
    """The store's 503: the clear error, a retry hint, no cookie set, nothing internal."""
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert response.headers["retry-after"] == "1"
    assert not response.headers.get_list("set-cookie"), response.headers.get_list("set-cookie")
    assert "Traceback" not in response.text
    if response.headers["content-type"].startswith("application/json"):
        assert response.json()["error"] == "store-unavailable"


def _api(
    client: Client, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
) -> httpx.Response:
    return client.request(
        method, path, headers={"accept": "application/json", **(headers or {})}, **kw
    )


def _websocket_status(srv: DemoServer, cookie: str) -> int:
    """The handshake's answer: 101 when accepted, else the refusal's status."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    try:
        with connect(
            srv.base_url.replace("http://", "ws://") + "/ws",
            origin=srv.base_url,
            additional_headers={"cookie": f"{COOKIE}={cookie}"},
            user_agent_header=FIREFOX_UA,
            open_timeout=10,
        ):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def _during(srv: DemoServer, alice: Client, token: str, fault: Fault) -> None:
    """Every kind of request while the store is away."""
    cookie = alice.cookie
    assert cookie is not None
    transfer = {"to": "bob", "amount": "1", "csrf_token": token}
    _refused(alice.post("/transfer", data=transfer))
    _refused(_api(alice, "POST", "/api/transfer", json={"to": "bob", "amount": "1"},
                  headers={"x-csrf-token": token}))  # fmt: skip
    _refused(alice.post("/logout", data={"csrf_token": token}))
    stranger = Client(srv.base_url, user_agent=FIREFOX_UA)
    _refused(stranger.get("/login"))  # a first visit: no session created
    forged = stranger.post(
        "/login", data={"username": "alice", "password": "correct-horse", "csrf_token": token}
    )
    assert forged.status_code in (403, 503) and stranger.cookie is None, forged.status_code
    stranger.close()
    # Without the token, or from another site: never passes because the store is away.
    for extra in ({}, {"headers": {"sec-fetch-site": "cross-site"}}):
        r = alice.post("/transfer", data={"to": "mallory", "amount": "9"}, **extra)
        assert r.status_code in ((403, 503) if fault.reads_work else (503,)), r.status_code
    refresh = alice.post("/_sessionwarden/dbsc/refresh", headers={"sec-secure-session-id": "x"})
    if fault.reads_work:  # the session is read; it is not bound, so the refresh ends
        assert refresh.status_code in (200, 403, 503) and "continue" in refresh.text
    else:
        _refused(refresh)
    if not fault.reads_work:
        _refused(alice.get("/account"))
        _refused(_api(alice, "GET", "/api/me"))
        if srv.extra.get("module") == STARLETTE_DEMO:
            assert _websocket_status(srv, cookie) == 503
    assert alice.cookie == cookie, "the cookie changed during the outage"


def _recovered(alice: Client, bound: float = RECOVERY_BOUND) -> float:
    """Seconds until alice's own page answers again (asserts it does within ``bound``)."""
    started = time.monotonic()
    while True:
        r = _api(alice, "GET", "/api/me")
        if r.status_code == 200:
            assert r.json() == {"user": "alice"}
            return time.monotonic() - started
        _refused(r)
        assert time.monotonic() - started < bound, "service did not come back"
        time.sleep(0.2)


def _store_events(srv: DemoServer) -> list[str]:
    kinds = [json.loads(line)["event"] for line in srv.events()]
    return [k for k in kinds if k in STORE_EVENTS]


def _log_is_clean(srv: DemoServer, watch: Watch) -> None:
    output = srv.output()
    assert "Traceback" not in output
    leaked = [s[:6] for s in watch.secrets if s and s in output]
    assert not leaked, f"the server's output holds a secret a client was given: {leaked}"


class Background:
    """A signed-in client (bob) reading his own page in a loop from a thread."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.statuses: list[int] = []
        self.wrong: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                r = _api(self.client, "GET", "/api/me")
            except httpx.HTTPError as exc:
                self.wrong.append(type(exc).__name__)
                continue
            self.statuses.append(r.status_code)
            if r.status_code == 200 and r.json() != {"user": "bob"}:
                self.wrong.append(r.text[:100])
            elif r.status_code not in (200, 503):
                self.wrong.append(f"{r.status_code} {r.text[:100]}")
            time.sleep(0.02)

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _outage(srv: DemoServer, fault: Fault) -> float:
    """Sign alice and bob in, take the store away under bob's traffic, check every answer,
    give it back; the seconds service took to return."""
    watch = Watch()
    alice = watch.client(srv.base_url).signed_in("alice")
    bob = watch.client(srv.base_url).signed_in("bob")
    token = alice.token("/account")
    try:
        with Background(bob) as background:
            time.sleep(0.3)
            fault.down()
            started = time.monotonic()
            try:
                _during(srv, alice, token, fault)
            finally:
                fault.up()
            print(f"outage: {time.monotonic() - started:.1f} s of refused requests", end="; ")
            took = _recovered(alice)
            print(f"service back {took:.1f} s after the store")
            r = alice.post("/transfer", data={"to": "carol", "amount": "2", "csrf_token": token})
            assert r.status_code == 303, r.status_code
            time.sleep(0.3)
        assert not background.wrong, background.wrong[:5]
        assert 200 in background.statuses
        assert _api(bob, "GET", "/api/me").json() == {"user": "bob"}
        assert _store_events(srv) == list(STORE_EVENTS), _store_events(srv)
        _log_is_clean(srv, watch)
        return took
    finally:
        alice.close()
        bob.close()


@contextlib.contextmanager
def _demo(store: str, module: str, tmp_path: Path) -> Iterator[DemoServer]:
    with run_demo(
        store, tmp_path / "demo.key", tmp_path / "demo", module=module, extra_args=["--dbsc"]
    ) as srv:
        srv.extra["module"] = module
        yield srv


# -- Redis --------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", APPS)
def test_redis_killed_and_restarted(
    private_redis: PrivateRedis, module: str, tmp_path: Path
) -> None:
    store = f"redis://127.0.0.1:{private_redis.port}/0"
    with _demo(store, module, tmp_path) as srv:
        _outage(srv, Fault(store, private_redis.kill, private_redis.start))


def _freeze(pids: list[int]) -> Fault:
    """SIGSTOP every process (they hang: every call times out), SIGCONT to give them back."""

    def signal_all(sig: int) -> None:
        for pid in pids:
            os.kill(pid, sig)

    return Fault("", lambda: signal_all(signal.SIGSTOP), lambda: signal_all(signal.SIGCONT))


@pytest.mark.cluster
def test_sentinel_set_up_frozen_and_continued(tmp_path: Path) -> None:
    from .cluster_support import redis_sentinel

    cluster_tools_or_skip()
    with redis_sentinel(tmp_path / "s", replicas=1) as group:
        url = f"redis+sentinel://{group.sentinel_list}/{group.name}"
        fault = _freeze([n.pid for n in group.servers])
        with _demo(url, STARLETTE_DEMO, tmp_path) as srv:
            _outage(srv, fault)


@pytest.mark.cluster
def test_cluster_frozen_and_continued(tmp_path: Path) -> None:
    from .cluster_support import redis_cluster

    cluster_tools_or_skip()
    with redis_cluster(tmp_path / "c") as cluster:
        url = f"redis+cluster://{cluster.seed_list}/"
        fault = _freeze([n.pid for n in cluster.nodes])
        with _demo(url, STARLETTE_DEMO, tmp_path) as srv:
            _outage(srv, fault)


def _revoke_with_the_cli(store: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src")
    env["SESSIONWARDEN_STORE"] = store
    done = subprocess.run(
        [sys.executable, "-m", "sessionwarden.cli", "sessions", "revoke", "--user", "alice",
         "--all"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "revoked 1 session" in done.stdout


@pytest.mark.parametrize("module", APPS)
def test_a_revocation_while_the_notice_connection_is_cut_is_never_served_from_the_cache(
    private_redis: PrivateRedis, module: str, tmp_path: Path
) -> None:
    """The read cache holds alice's session; Redis drops the application's notice connection
    and (a password now being required) refuses its reconnection, then another process
    revokes alice. The application never serves her again: not while the notices are cut,
    not after they are back."""
    store = f"redis://127.0.0.1:{private_redis.port}/0"
    password = uuid.uuid4().hex
    with _demo(store, module, tmp_path) as srv:
        watch = Watch()
        alice = watch.client(srv.base_url).signed_in("alice")
        for _ in range(3):  # read, then served from the cache
            assert _api(alice, "GET", "/api/me").json() == {"user": "alice"}
        private_redis.command("CONFIG", "SET", "requirepass", password)
        admin = _admin(private_redis.port, password)
        try:
            assert admin.client_kill_filter(_type="pubsub") >= 1
            _revoke_with_the_cli(f"redis://:{password}@127.0.0.1:{private_redis.port}/0")
            for _ in range(10):
                r = _api(alice, "GET", "/api/me")
                assert r.status_code in (401, 503), (r.status_code, r.text)
                time.sleep(0.1)
        finally:
            admin.config_set("requirepass", "")
            admin.close()
        # The feed reconnects when a request finds it gone; until it has, and after: refused.
        deadline = time.monotonic() + 30
        back = 0
        while back < 5:
            r = _api(alice, "GET", "/api/me")
            assert r.status_code in (401, 503), (r.status_code, r.text)
            if private_redis.command("CLIENT", "LIST", "TYPE", "pubsub"):
                back += 1
            assert time.monotonic() < deadline, "the notice connection did not come back"
            time.sleep(0.1)
        assert r.status_code == 401, "service did not come back"
        fresh = watch.client(srv.base_url).signed_in("alice")
        assert _api(fresh, "GET", "/api/me").json() == {"user": "alice"}
        _log_is_clean(srv, watch)
        alice.close()
        fresh.close()


def _admin(port: int, password: str) -> Any:
    import redis

    return redis.Redis(port=port, password=password, socket_timeout=5)


# -- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture
def own_database() -> Iterator[tuple[str, Fault]]:
    """A database of this test's own on the shared server, and how to cut it off: refuse new
    connections to it and end its existing ones (its own backends only)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    admin_url = postgres_or_skip()
    name = f"swfault_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(admin_url, autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    params = conninfo_to_dict(admin_url)
    url = (
        f"postgresql://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:"
        f"{params.get('port', '5432')}/{name}"
    )

    def end_backends() -> None:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        )

    def down() -> None:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        end_backends()

    def up() -> None:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")

    try:
        yield url, Fault(url, down, up)
    finally:
        up()
        end_backends()
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


@pytest.mark.postgres
@pytest.mark.parametrize("module", APPS)
def test_postgres_cut_off_and_back(
    own_database: tuple[str, Fault], module: str, tmp_path: Path
) -> None:
    url, fault = own_database
    with _demo(url, module, tmp_path) as srv:
        _outage(srv, fault)


# -- SQLite -------------------------------------------------------------------------------------


def _lock_holder(path: Path) -> Fault:
    """Another process holding the write lock (``BEGIN EXCLUSIVE``) until it is told to stop."""
    held: dict[str, subprocess.Popen[str]] = {}
    script = (
        "import sqlite3, sys\n"
        f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
    )

    def down() -> None:
        proc = subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        held["proc"] = proc

    def up() -> None:
        proc = held.pop("proc")
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)

    return Fault(f"sqlite:///{path}", down, up, reads_work=True)


@pytest.mark.parametrize("module", APPS)
def test_sqlite_locked_by_another_process(module: str, tmp_path: Path) -> None:
    fault = _lock_holder(tmp_path / "s.db")
    with _demo(fault.store, module, tmp_path) as srv:
        _outage(srv, fault)


@contextlib.contextmanager
def _immutable(path: Path) -> Iterator[Fault]:
    """The database and its write-ahead log made immutable (``chattr +i``: root ignores
    ``chmod``), then writable again; always writable again at the end, so the files can be
    removed. Not the ``-shm`` index, which SQLite maps into memory: a write to a mapped page of
    an immutable file kills the process (SIGBUS), no file permission does that."""
    files = [str(path) + suffix for suffix in ("", "-wal")]

    def chattr(flag: str) -> None:
        done = subprocess.run(["chattr", flag, *files], capture_output=True, timeout=10)
        assert done.returncode == 0 or flag == "-i", done.stderr

    probe = path.with_name("probe")
    probe.touch()
    try:
        if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not possible here")
        subprocess.run(["chattr", "-i", str(probe)], capture_output=True)
    except OSError:
        pytest.skip("chattr is not installed")
    try:
        yield Fault(f"sqlite:///{path}", lambda: chattr("+i"), lambda: chattr("-i"), True)
    finally:
        chattr("-i")


@pytest.mark.parametrize("module", APPS)
def test_sqlite_file_made_read_only(module: str, tmp_path: Path) -> None:
    with _immutable(tmp_path / "s.db") as fault, _demo(fault.store, module, tmp_path) as srv:
        _outage(srv, fault)


@contextlib.contextmanager
def _tiny_fs(where: Path) -> Iterator[Path]:
    where.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(where)],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        done = None
    if done is None or done.returncode != 0:
        # a container without the right to mount: the disk-full fault is also covered, without a
        # mount, by tests/test_faults.py
        pytest.skip("a tmpfs cannot be mounted here (no right to mount)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10)


@pytest.mark.parametrize("module", APPS)
def test_sqlite_disk_full(module: str, tmp_path: Path) -> None:
    with _tiny_fs(tmp_path / "tiny") as mnt:
        filler, path = mnt / "filler", mnt / "s.db"

        def down() -> None:
            """Fill the filesystem to the last block, then the free space the database's
            write-ahead log may still reuse, with rows of a table of the test's own."""
            db = sqlite3.connect(path, isolation_level=None)
            db.execute("CREATE TABLE IF NOT EXISTS filler (b BLOB)")
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * 1024)
            os.close(fd)
            with contextlib.suppress(sqlite3.OperationalError):
                while True:
                    db.execute("INSERT INTO filler VALUES (zeroblob(256))")
            db.close()

        fault = Fault(f"sqlite:///{path}", down, filler.unlink, reads_work=True)
        with _demo(fault.store, module, tmp_path) as srv:
            _outage(srv, fault)
