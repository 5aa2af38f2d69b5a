"""The ASGI middleware under Starlette and FastAPI, over HTTP semantics (httpx in-process)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sessionwarden import tokens
from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.core import Session
from sessionwarden.policy import Policy
from sessionwarden.stores import InlineAsyncStore, MemoryStore, StoreUnavailable
from sessionwarden.stores.tracking import DRAIN_INTERVAL

from .conftest import (
    IN_CI,
    SECRET,
    drop_prefix,
    postgres_store_url,
    redis_or_skip,
    unique_prefix,
)

BASE = "https://app.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def home(request: Request) -> Response:
    s = request.session
    return JSONResponse({"user": s.get("user"), "visits": s.get("visits")})


async def count(request: Request) -> Response:
    s = request.session
    s["visits"] = int(s.get("visits") or 0) + 1  # type: ignore[arg-type]
    return JSONResponse({"visits": s["visits"]})


async def login(request: Request) -> Response:
    s = get_session(request)
    s.login("alice")
    s["user"] = "alice"
    return PlainTextResponse("ok")


async def logout(request: Request) -> Response:
    get_session(request).logout()
    return PlainTextResponse("bye")


async def token(request: Request) -> Response:
    return JSONResponse(
        {"csrf_token": request.state.csrf_token(), "nonce": request.state.csp_nonce}
    )


async def transfer(request: Request) -> Response:
    form = await request.form()
    return PlainTextResponse(f"sent {form.get('amount')}")


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/", home),
            Route("/count", count),
            Route("/login", login, methods=["POST", "GET"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/token", token),
            Route("/transfer", transfer, methods=["POST"]),
        ]
    )


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/s.db"
    elif request.param == "postgres":
        yield postgres_store_url()
    else:
        prefix = unique_prefix()
        yield f"{redis_or_skip()}?prefix={prefix}"
        drop_prefix(prefix)


async def get_token(c: httpx.AsyncClient) -> str:
    r = await c.get("/token")
    return str(r.json()["csrf_token"])


async def do_login(c: httpx.AsyncClient) -> None:
    t = await get_token(c)
    r = await c.post("/login", headers={"x-csrf-token": t})
    assert r.status_code == 200, r.text


@pytest.mark.anyio
async def test_session_roundtrip_on_every_store(store_url: str) -> None:
    app = SessionWardenMiddleware(
        starlette_app(), policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)), store=store_url
    )
    async with client_for(app) as c:
        for n in range(1, 4):
            r = await c.get("/count")
            assert r.json() == {"visits": n}
        await do_login(c)
        r = await c.get("/")
        assert r.json() == {"user": "alice", "visits": 3}
        t = await get_token(c)
        r = await c.post("/logout", headers={"x-csrf-token": t})
        assert r.status_code == 200
        assert r.headers["clear-site-data"] == '"cookies", "storage"'
        r = await c.get("/")
        assert r.json() == {"user": None, "visits": None}
    close = getattr(app.store, "close", None)
    if close is not None:
        await close()


@pytest.mark.anyio
async def test_an_in_place_change_that_is_not_committed_reaches_no_other_request(
    store_url: str,
) -> None:
    """Every store's reads may share one record between requests (read caches); a request that
    changes a list in place and then fails must leave nothing behind, on any store."""

    async def fill(request: Request) -> Response:
        request.session["cart"] = ["pen"]
        return PlainTextResponse("ok")

    async def show(request: Request) -> Response:
        return JSONResponse({"cart": request.session.get("cart")})

    routes = Starlette(routes=[Route("/fill", fill), Route("/", show)])

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/spoil":
            cart = scope["session"]["cart"]
            cart.append("stolen")
            # Fails before any response starts, so nothing is committed. (Starlette's own
            # error page would start one, and that commits, as any response does.)
            raise RuntimeError("the app fails after changing the list")
        await routes(scope, receive, send)

    app = SessionWardenMiddleware(
        inner, policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)), store=store_url
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        await c.get("/fill")
        for _ in range(3):  # the first read may fill a cache; the others are served from it
            assert (await c.get("/")).json() == {"cart": ["pen"]}
        assert (await c.get("/spoil")).status_code == 500
        assert (await c.get("/")).json() == {"cart": ["pen"]}
    close = getattr(app.store, "close", None)
    if close is not None:
        await close()


@pytest.mark.anyio
async def test_set_cookie_and_security_headers() -> None:
    app = SessionWardenMiddleware(
        starlette_app(),
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store="memory://",
    )
    async with client_for(app) as c:
        r = await c.get("/count")
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("__Host-id=")
        assert "; Secure" in cookie and "; HttpOnly" in cookie and "; SameSite=Lax" in cookie
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["strict-transport-security"].startswith("max-age=31536000")
        csp = r.headers["content-security-policy"]
        assert "'strict-dynamic'" in csp and "object-src 'none'" in csp
        r2 = await c.get("/token")
        assert f"'nonce-{r2.json()['nonce']}'" in r2.headers["content-security-policy"]


@pytest.mark.anyio
async def test_request_objects_leave_the_scope_when_the_app_returns() -> None:
    seen: dict[str, Any] = {}

    def outer(inner: Any) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            async def watch(message: Any) -> None:
                if message["type"] == "http.response.start":
                    seen["while sending"] = isinstance(scope.get("session"), Session)
                await send(message)

            try:
                await inner(scope, receive, watch)
            finally:
                seen["after"] = sorted(k for k in ("session", "sessionwarden") if k in scope)
                seen["state after"] = sorted(scope.get("state", {}))

        return app

    async def boom(request: Request) -> Response:
        raise RuntimeError("app failure")

    inner = Starlette(routes=[Route("/", home), Route("/boom", boom)])
    app = outer(
        SessionWardenMiddleware(
            inner, policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)), store="memory://"
        )
    )
    async with client_for(app) as c:
        assert (await c.get("/")).status_code == 200
        assert seen == {"while sending": True, "after": [], "state after": []}
    seen.clear()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url=BASE
    )
    async with client as c:
        assert (await c.get("/boom")).status_code == 500
    # An exception leaves them for whoever reports it.
    assert seen["after"] == ["session", "sessionwarden"]
    assert seen["state after"] == ["csp_nonce", "csrf_token", "session_ended"]


@pytest.mark.anyio
async def test_unsafe_method_without_token_is_refused_and_app_not_run() -> None:
    ran: list[str] = []

    async def hit(request: Request) -> Response:
        ran.append("yes")
        return PlainTextResponse("ran")

    app = SessionWardenMiddleware(
        Starlette(routes=[Route("/hit", hit, methods=["POST"]), Route("/token", token)]),
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store="memory://",
    )
    async with client_for(app) as c:
        await get_token(c)
        r = await c.post("/hit", headers={"accept": "application/json"})
        assert r.status_code == 403 and r.json() == {"error": "csrf", "reason": "missing-token"}
        r = await c.post("/hit", data={"csrf_token": "x" * 86})
        assert r.status_code == 403
        assert ran == []


@pytest.mark.anyio
async def test_form_token_accepted_and_body_replayed_intact() -> None:
    app = SessionWardenMiddleware(
        starlette_app(),
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store="memory://",
    )
    async with client_for(app) as c:
        t = await get_token(c)
        r = await c.post("/transfer", data={"csrf_token": t, "amount": "42"})
        assert r.status_code == 200 and r.text == "sent 42"
        r = await c.post(
            "/transfer", files={"f": ("a.txt", b"data")}, data={"csrf_token": t, "amount": "7"}
        )
        assert r.status_code == 200 and r.text == "sent 7"


@pytest.mark.anyio
async def test_cross_site_post_refused_even_with_token() -> None:
    app = SessionWardenMiddleware(
        starlette_app(),
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store="memory://",
    )
    async with client_for(app) as c:
        t = await get_token(c)
        r = await c.post(
            "/transfer",
            data={"csrf_token": t, "amount": "1"},
            headers={"sec-fetch-site": "cross-site", "origin": "https://evil.test"},
        )
        assert r.status_code == 403 and "Cross-site" in r.text
        r = await c.post(
            "/transfer",
            data={"csrf_token": t, "amount": "1"},
            headers={"origin": "https://evil.test"},
        )
        assert r.status_code == 403


@pytest.mark.anyio
async def test_oversized_form_body_gets_413() -> None:
    policy = Policy(secret_keys=(SECRET,), allowed_hosts=("*",))
    app = SessionWardenMiddleware(starlette_app(), policy=policy, store="memory://")
    async with client_for(app) as c:
        await get_token(c)
        big = "x" * (policy.csrf.max_body_bytes + 10)
        r = await c.post("/transfer", data={"blob": big})
        assert r.status_code == 413


@pytest.mark.anyio
async def test_plain_http_redirected_with_308_except_loopback() -> None:
    app = SessionWardenMiddleware(
        starlette_app(),
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store="memory://",
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as c:
        r = await c.post("/transfer?x=1", data={"a": "b"})
        assert r.status_code == 308
        assert r.headers["location"] == "https://app.test/transfer?x=1"
        assert r.headers["x-frame-options"] == "DENY"
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
        assert (await c.get("/")).status_code == 200


class BrokenStore(InlineAsyncStore):
    def __init__(self) -> None:
        super().__init__(MemoryStore())
        self.broken = False

    async def get(self, key: str) -> Any:
        if self.broken:
            raise StoreUnavailable("redis unreachable: ConnectionError")
        return await super().get(key)

    async def update(self, key: str, update: Any, *, activity_max: int = 0) -> bool:
        if self.broken:
            raise StoreUnavailable("redis unreachable: ConnectionError")
        return await super().update(key, update, activity_max=activity_max)


@pytest.mark.anyio
async def test_store_unreachable_fails_closed_with_503(caplog: pytest.LogCaptureFixture) -> None:
    store = BrokenStore()
    clock = ManualClock()
    app = SessionWardenMiddleware(
        starlette_app(),
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store=store,
        clock=clock,
    )
    async with client_for(app) as c:
        await do_login(c)
        store.broken = True
        r = await c.get("/")
        assert r.status_code == 503
        assert "temporarily unavailable" in r.text and "Traceback" not in r.text
        assert "redis" not in r.text.lower()
        store.broken = False
        assert (await c.get("/")).json()["user"] == "alice"
        # a failure while committing (touch due) also becomes a 503, not the app's response
        clock.advance(120)
        store.broken = True
        r = await c.get("/count")
        assert r.status_code == 503
        store.broken = False
        assert (await c.get("/")).json()["user"] == "alice"


@given(
    header=st.one_of(
        st.text(max_size=300),
        st.text(alphabet='_-=;" abcdefHIJ0123456789', max_size=300).map(lambda v: "__Host-id=" + v),
        st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    )
)
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_arbitrary_cookie_headers_never_fail(header: str) -> None:
    import anyio

    app = SessionWardenMiddleware(
        starlette_app(),
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store="memory://",
    )

    async def go() -> int:
        sent: list[dict[str, Any]] = []
        scope = {
            "type": "http",
            "method": "GET",
            "scheme": "https",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "headers": [(b"host", b"app.test"), (b"cookie", header.encode("latin-1", "replace"))],
            "client": ("127.0.0.1", 1234),
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return int(sent[0]["status"])

    assert anyio.run(go) == 200


@pytest.mark.anyio
async def test_malformed_cookie_variants_are_anonymous() -> None:
    app = SessionWardenMiddleware(
        starlette_app(),
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store="memory://",
    )
    async with client_for(app) as c:
        for raw in ["", "a" * 5000, "ü" * 43, '"unterminated', "__Host-id=a; __Host-id=b"]:
            r = await c.get("/", headers={"cookie": f"__Host-id={raw}".encode()})
            assert r.status_code == 200 and r.json()["user"] is None


@pytest.mark.anyio
async def test_fastapi_dependencies() -> None:
    api = FastAPI()

    def current(request: Request) -> Session:
        return get_session(request)

    @api.get("/me")
    async def me(session: Session = Depends(current)) -> dict[str, Any]:
        return {"user": session.user_id}

    @api.post("/login")
    async def do(session: Session = Depends(current)) -> dict[str, Any]:
        session.login("bob")
        return {"ok": True}

    @api.get("/csrf")
    async def csrf(request: Request) -> dict[str, Any]:
        return {"csrf_token": request.state.csrf_token()}

    app = SessionWardenMiddleware(
        api, policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)), store="memory://"
    )
    async with client_for(app) as c:
        t = (await c.get("/csrf")).json()["csrf_token"]
        assert (await c.post("/login", headers={"x-csrf-token": t})).status_code == 200
        assert (await c.get("/me")).json() == {"user": "bob"}


# -- real store faults ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A Redis server of this test's own on a free loopback port, so it can be stopped."""
    exe = shutil.which("redis-server")
    if exe is None:
        if IN_CI:
            pytest.fail("redis-server is not installed (CI=true requires it)")
        pytest.skip("redis-server is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    deadline = time.monotonic() + 60  # generous: the machine may be loaded
    while True:
        try:
            redis.Redis(port=port, socket_timeout=2).ping()
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.05)
    yield port, proc
    proc.kill()
    proc.wait()


@pytest.mark.anyio
async def test_redis_stopped_mid_test_gives_503_then_recovers(
    private_redis: tuple[int, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port, proc = private_redis
    app = SessionWardenMiddleware(
        starlette_app(),
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store=f"redis://127.0.0.1:{port}/0",
    )
    async with client_for(app) as c:
        await do_login(c)
        assert (await c.get("/")).json()["user"] == "alice"
        proc.kill()
        proc.wait()
        # The read cache applies what its feed announced (here: the connection closing) at most
        # DRAIN_INTERVAL after it arrived, so a read within that bound may still be served from
        # memory, as documented. Past it, the read must fail closed. (A sleep waits at least
        # this long however loaded the machine is.)
        time.sleep(DRAIN_INTERVAL * 5)
        started = time.monotonic()
        r = await c.get("/")
        assert r.status_code == 503
        # Refused at once, not after a hang (a generous bound: only an unbounded wait fails).
        assert time.monotonic() - started < 60
    del tmp_path


def test_token_is_never_in_body_or_location() -> None:
    assert tokens.ID_LENGTH == 43
