"""Concurrency: many requests of one session at once while its ID rotates, parallel logins
against the per-user cap, and SQLite under several writer processes.

Requests go through the real middlewares (ASGI with ``asyncio.gather``, WSGI with threads) over
the real stores (SQLite file, Redis on 127.0.0.1 with a private key prefix). Handlers sleep a
little so every request has loaded the session before the first one commits its rotation: that
is the window where a careless implementation loses sessions or writes.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.core import Engine, run_sync
from sessionwarden.facts import RequestFacts
from sessionwarden.policy import Policy
from sessionwarden.records import SessionRecord
from sessionwarden.stores import open_store
from sessionwarden.wsgi import SessionWardenWSGI

from .attacks.conftest import drop_keys
from .conftest import SECRET, postgres_store_url, redis_or_skip, unique_prefix

COOKIE = "__Host-id"
N = 50
BARRIER_SLEEP = 0.05


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/sessions.db"
    elif request.param == "postgres":
        yield postgres_store_url()
    else:
        prefix = unique_prefix()
        yield f"{redis_or_skip()}?prefix={prefix}"
        drop_keys(prefix)


def _policy(**kw: Any) -> Policy:
    return Policy(
        secret_keys=(SECRET,), allowed_hosts=("*",), rotate_every=60, rotation_grace=5, **kw
    )


def _cookie_of(set_cookies: list[str]) -> str | None:
    for header in set_cookies:
        name, _, rest = header.partition("=")
        if name == COOKIE:
            return rest.split(";", 1)[0]
    return None


# -- ASGI ------------------------------------------------------------------------------------------


async def _slow_page(request: Request) -> Response:
    await asyncio.sleep(BARRIER_SLEEP)
    s = get_session(request)
    i = request.query_params.get("i")
    if i is not None:
        s[f"w{i}"] = int(i)  # one key per request: no read-modify-write between requests
    return JSONResponse({"user": s.user_id})


async def _login(request: Request) -> Response:
    get_session(request).login("alice")
    return JSONResponse({"ok": True})


async def _token(request: Request) -> Response:
    return JSONResponse({"csrf_token": request.state.csrf_token()})


async def _data(request: Request) -> Response:
    s = get_session(request)
    return JSONResponse({"user": s.user_id, "keys": sorted(k for k in s if k[0] == "w")})


def _asgi_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/slow", _slow_page),
            Route("/login", _login, methods=["POST"]),
            Route("/token", _token),
            Route("/data", _data),
        ]
    )


@pytest.fixture
async def asgi_rig(store_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, ManualClock, str]]:
    clock = ManualClock()
    mw = SessionWardenMiddleware(_asgi_app(), policy=_policy(), store=store_url, clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mw), base_url="https://app.test"
    ) as c:
        r = await c.get("/token")
        cookie = _cookie_of(r.headers.get_list("set-cookie"))
        c.cookies.clear()
        r = await c.post(
            "/login",
            headers={"cookie": f"{COOKIE}={cookie}", "x-csrf-token": r.json()["csrf_token"]},
        )
        assert r.status_code == 200
        cookie = _cookie_of(r.headers.get_list("set-cookie"))
        c.cookies.clear()
        assert cookie
        yield c, clock, cookie
    await mw.store.close()


async def _burst(
    c: httpx.AsyncClient, cookie: str, *, write: bool
) -> list[tuple[int, Any, str | None]]:
    async def one(i: int) -> tuple[int, Any, str | None]:
        path = f"/slow?i={i}" if write else "/slow"
        r = await c.get(path, headers={"cookie": f"{COOKIE}={cookie}"})
        body = r.json() if r.status_code == 200 else None
        return r.status_code, body, _cookie_of(r.headers.get_list("set-cookie"))

    return list(await asyncio.gather(*(one(i) for i in range(N))))


@pytest.mark.anyio
async def test_asgi_50_concurrent_requests_during_rotation_all_succeed(
    asgi_rig: tuple[httpx.AsyncClient, ManualClock, str],
) -> None:
    c, clock, cookie = asgi_rig
    clock.advance(61)  # periodic rotation due: the first request to commit rotates
    results = await _burst(c, cookie, write=False)
    statuses = Counter(s for s, _, _ in results)
    assert statuses == {200: N}, statuses
    assert all(body == {"user": "alice"} for _, body, _ in results), "a request ran anonymous"
    new = [v for _, _, v in results if v]
    assert len(new) >= 1  # the rotation happened
    # the successor works, and the old ID still works within the grace window
    for value in (new[0], cookie):
        r = await c.get("/data", headers={"cookie": f"{COOKIE}={value}"})
        assert r.json()["user"] == "alice"


@pytest.mark.anyio
async def test_asgi_concurrent_requests_during_rotation_never_clear_cookie_or_lose_writes(
    asgi_rig: tuple[httpx.AsyncClient, ManualClock, str],
) -> None:
    """Requests that loaded the session before a concurrent rotation committed must neither
    clear the cookie nor drop their writes. Regression test for bug 1 in docs/reliability.md
    (fixed in 06121da: before it, 49 of 50 responses cleared the cookie, 1 of 50 writes kept)."""
    c, clock, cookie = asgi_rig
    clock.advance(61)
    results = await _burst(c, cookie, write=True)
    assert all(s == 200 for s, _, _ in results)
    cleared = sum(1 for _, _, v in results if v == "")
    new = [v for _, _, v in results if v]
    r = await c.get("/data", headers={"cookie": f"{COOKIE}={new[0]}"})
    kept = r.json()["keys"]
    assert (cleared, len(kept)) == (0, N), (
        f"{cleared} responses cleared the cookie, {len(kept)}/{N} writes kept"
    )


# -- WSGI with threads ----------------------------------------------------------------------------


def _wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    import json

    from sessionwarden.wsgi import get_session as wsgi_session

    s = wsgi_session(environ)
    path = environ["PATH_INFO"]
    if path == "/login":
        s.login(environ.get("QUERY_STRING", "").removeprefix("u=") or "alice")
        out: dict[str, Any] = {"ok": True}
    elif path == "/token":
        out = {"csrf_token": environ["sessionwarden"].csrf_token()}
    elif path == "/slow":
        time.sleep(BARRIER_SLEEP)
        i = environ.get("QUERY_STRING", "").removeprefix("i=")
        if i:
            s[f"w{i}"] = int(i)
        out = {"user": s.user_id}
    elif path == "/count":
        s["n"] = int(s.get("n") or 0) + 1  # type: ignore[arg-type]
        out = {"user": s.user_id, "n": s["n"]}
    else:
        out = {"user": s.user_id, "keys": sorted(k for k in s if k[0] == "w")}
    start_response("200 OK", [("content-type", "application/json")])
    return [json.dumps(out).encode()]


def wsgi_call(
    mw: SessionWardenWSGI,
    path: str,
    *,
    cookie: str | None = None,
    method: str = "GET",
    query: str = "",
    token: str | None = None,
    peer: str = "198.51.100.7",
) -> tuple[int, dict[str, Any] | None, str | None]:
    import json

    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.url_scheme": "https",
        "HTTP_HOST": "app.test",
        "HTTP_USER_AGENT": "Mozilla/5.0 Firefox/128.0",
        "REMOTE_ADDR": peer,
        "wsgi.input": io.BytesIO(b""),
        "CONTENT_LENGTH": "0",
    }
    if cookie:
        environ["HTTP_COOKIE"] = f"{COOKIE}={cookie}"
    if token:
        environ["HTTP_X_CSRF_TOKEN"] = token
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        got["status"] = int(status.split()[0])
        got["cookies"] = [v for n, v in headers if n.lower() == "set-cookie"]
        return lambda data: None

    body = b"".join(mw(environ, start_response))
    parsed = json.loads(body) if got["status"] == 200 else None
    return got["status"], parsed, _cookie_of(got["cookies"])


def wsgi_login(mw: SessionWardenWSGI, user: str = "alice", peer: str = "198.51.100.7") -> str:
    status, body, cookie = wsgi_call(mw, "/token", peer=peer)
    assert status == 200 and body is not None and cookie
    status, _, new = wsgi_call(
        mw,
        "/login",
        cookie=cookie,
        method="POST",
        query=f"u={user}",
        token=body["csrf_token"],
        peer=peer,
    )
    assert status == 200 and new, status
    return new


@pytest.fixture
def wsgi_rig(store_url: str) -> Iterator[tuple[SessionWardenWSGI, ManualClock]]:
    clock = ManualClock()
    mw = SessionWardenWSGI(_wsgi_app, policy=_policy(), store=store_url, clock=clock)
    yield mw, clock
    mw.store.close()


def _thread_burst(mw: SessionWardenWSGI, cookie: str, *, write: bool) -> list[Any]:
    with ThreadPoolExecutor(max_workers=N) as pool:
        futures = [
            pool.submit(wsgi_call, mw, "/slow", cookie=cookie, query=f"i={i}" if write else "")
            for i in range(N)
        ]
        return [f.result(timeout=30) for f in futures]


def test_wsgi_50_threads_during_rotation_all_succeed(
    wsgi_rig: tuple[SessionWardenWSGI, ManualClock],
) -> None:
    mw, clock = wsgi_rig
    cookie = wsgi_login(mw)
    clock.advance(61)
    results = _thread_burst(mw, cookie, write=False)
    assert Counter(s for s, _, _ in results) == {200: N}
    assert all(body == {"user": "alice"} for _, body, _ in results)
    new = [v for _, _, v in results if v]
    assert new
    assert wsgi_call(mw, "/data", cookie=new[0])[1]["user"] == "alice"  # type: ignore[index]


def test_wsgi_threads_during_rotation_never_clear_cookie_or_lose_writes(
    wsgi_rig: tuple[SessionWardenWSGI, ManualClock],
) -> None:
    """The same through the WSGI adapter with 50 threads (bug 1 in docs/reliability.md)."""
    mw, clock = wsgi_rig
    cookie = wsgi_login(mw)
    clock.advance(61)
    results = _thread_burst(mw, cookie, write=True)
    cleared = sum(1 for _, _, v in results if v == "")
    new = [v for _, _, v in results if v]
    kept = wsgi_call(mw, "/data", cookie=new[0])[1]["keys"]  # type: ignore[index]
    assert (cleared, len(kept)) == (0, N), f"{cleared} cleared, {len(kept)}/{N} writes kept"


# -- parallel logins against the per-user cap ---------------------------------------------

CAP = 3


def test_parallel_logins_from_threads_leave_exactly_cap_sessions(store_url: str) -> None:
    clock = ManualClock()
    mw = SessionWardenWSGI(
        _wsgi_app, policy=_policy(max_sessions_per_user=CAP), store=store_url, clock=clock
    )
    try:
        anon = []
        for i in range(24):
            status, body, cookie = wsgi_call(mw, "/token", peer=f"198.51.100.{i + 1}")
            assert status == 200 and body is not None and cookie
            anon.append((cookie, body["csrf_token"], f"198.51.100.{i + 1}"))
        barrier = threading.Barrier(len(anon))

        def login(args: tuple[str, str, str]) -> str | None:
            cookie, token, peer = args
            barrier.wait(timeout=10)
            status, _, new = wsgi_call(
                mw, "/login", cookie=cookie, method="POST", query="u=carol", token=token, peer=peer
            )
            assert status == 200
            return new

        with ThreadPoolExecutor(max_workers=len(anon)) as pool:
            issued = [c for c in pool.map(login, anon) if c]
        assert len(issued) == len(anon)
        live = [r for r in mw.store.user_sessions("carol") if r.expires_at > clock.now()]
        assert len(live) == CAP
        working = [c for c in issued if wsgi_call(mw, "/data", cookie=c)[1]["user"] == "carol"]  # type: ignore[index]
        assert len(working) == CAP
    finally:
        mw.store.close()


def _process_login(args: tuple[str, int, Any]) -> list[str]:
    """In a child process: its own store connection, several logins of the same user."""
    url, n, start = args
    engine = Engine(_policy(max_sessions_per_user=CAP))
    store = open_store(url)
    ids: list[str] = []
    try:
        start.wait(10)
        for i in range(n):
            facts = RequestFacts(
                method="POST",
                scheme="https",
                host="app.test",
                path="/login",
                client_ip=f"198.51.100.{i + 1}",
                user_agent="Mozilla/5.0 Firefox/128.0",
            )
            loaded = run_sync(engine.load(facts), store)
            loaded.session.login("dave")
            out = run_sync(engine.commit(loaded.session, facts), store)
            assert out.set_cookie is not None
            ids.append(out.set_cookie.split(";", 1)[0].split("=", 1)[1])
    finally:
        store.close()
    return ids


def test_parallel_logins_from_processes_leave_exactly_cap_sessions(store_url: str) -> None:
    ctx = multiprocessing.get_context("fork")
    open_store(store_url).close()  # create the schema before the race
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(4) as pool:
            pending = pool.map_async(_process_login, [(store_url, 6, start)] * 4)
            time.sleep(0.3)
            start.set()
            issued = [i for ids in pending.get(timeout=60) for i in ids]
    assert len(issued) == 24
    engine = Engine(_policy(max_sessions_per_user=CAP))
    store = open_store(store_url)
    try:
        live = store.user_sessions("dave")
        assert len(live) == CAP
        alive = [
            i for i in issued if isinstance(store.get(engine.keyring.hash_id(i)), SessionRecord)
        ]
        assert len(alive) == CAP
    finally:
        store.close()


# -- SQLite with four writer processes ----------------------------------------------------


def _sqlite_writer(args: tuple[str, int, float]) -> dict[str, int]:
    url, worker, seconds = args
    policy = Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("*",),
        rotate_every=0.3,
        rotation_grace=0.1,
        touch_interval=0,
    )
    mw = SessionWardenWSGI(_wsgi_app, policy=policy, store=url)
    codes: Counter[str] = Counter()
    try:
        deadline = time.monotonic() + seconds
        sessions = [
            wsgi_login(mw, f"user{worker}-{i}", peer=f"198.51.100.{worker}") for i in range(3)
        ]
        codes["200"] += 6
        n = 0
        while time.monotonic() < deadline and n < 5000:
            n += 1
            j = n % len(sessions)
            if n % 97 == 0:  # a fresh login now and then: insert + cap check
                sessions[j] = wsgi_login(mw, f"user{worker}-{j}", peer=f"198.51.100.{worker}")
                codes["200"] += 2
                continue
            status, body, new = wsgi_call(
                mw, "/count", cookie=sessions[j], peer=f"198.51.100.{worker}"
            )
            codes[str(status)] += 1
            if status == 200 and body is not None and body["user"] is None:
                codes["anonymous"] += 1
            if new:
                sessions[j] = new
    finally:
        mw.store.close()
    return dict(codes)


def test_sqlite_four_writer_processes_never_locked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    open_store(url).close()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        results = pool.map(_sqlite_writer, [(url, w, 4.0) for w in range(1, 5)])
    total: Counter[str] = Counter()
    for r in results:
        total.update(r)
    assert set(total) <= {"200"}, f"non-2xx or anonymous responses: {dict(total)}"
    assert total["200"] > 400, dict(total)
    assert "database is locked" not in caplog.text
