"""The session's life cycle seen from outside a live server (standards A5 logout and
invalidation, A6 timeouts, A7 re-authentication, A8 concurrent sessions).

uvicorn serves a small Starlette application behind the middleware over TLS on a loopback port,
in a thread of this process so that its clock is a :class:`ManualClock` the tests move (never
wait for a timeout). Each browser is an ``httpx`` client with its own real cookie jar, and its
WebSockets are opened by the ``websockets`` client with the cookie from that jar; its address is
forwarded by the trusted proxy (this loopback address) in ``X-Forwarded-For``. Only statuses,
headers, bodies, WebSocket closes and audit events are asserted.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

import sessionwarden
from sessionwarden.asgi import SessionWardenMiddleware, get_middleware, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.events import EventKind
from sessionwarden.policy import HttpsPolicy, MonitorPolicy, Policy, WebSocketPolicy

from .attacks.conftest import store_url_of
from .conftest import SECRET, Recorder
from .live_servers import free_port, self_signed_certificate

pytestmark = pytest.mark.anyio
COOKIE = "__Host-id"
HOME, ELSEWHERE, OFFICE = "198.51.100.7", "203.0.113.50", "192.0.2.10"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)
JSON_ACCEPT = {"accept": "application/json"}
RECENT = 300.0  # the application's window for "recently signed in"
IDLE, ABSOLUTE = 1800.0, 43_200.0
SCRIPT = Path(sessionwarden.__file__).with_name("static") / "sessionwarden.js"
#: How long a test waits for something the server does within its check interval.
PATIENCE = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- the application ---------------------------------------------------------------------------


def _app() -> Starlette:
    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"user": get_session(request).user_id})

    async def token(request: Request) -> JSONResponse:
        return JSONResponse({"csrf_token": request.state.csrf_token()})

    async def login(request: Request) -> JSONResponse:
        query = request.query_params
        get_session(request).login(
            query.get("user", "alice"), remember=query.get("remember") == "1"
        )
        return JSONResponse({"ok": True})

    async def logout(request: Request) -> JSONResponse:
        get_session(request).logout()
        return JSONResponse({"ok": True})

    async def reauth(request: Request) -> JSONResponse:
        if request.method == "POST":  # the password checked again
            get_session(request).reauthenticated()
        return JSONResponse({"csrf_token": request.state.csrf_token()})

    async def sessions(request: Request) -> JSONResponse:
        session = get_session(request)
        if session.user_id is None:
            return JSONResponse({"error": "sign in"}, status_code=401)
        rows = await get_middleware(request).list_sessions(session.user_id, current=session)
        return JSONResponse([r.to_dict() for r in rows])

    async def revoke(request: Request) -> JSONResponse:
        session = get_session(request)
        if session.user_id is None:
            return JSONResponse({"error": "sign in"}, status_code=401)
        session.require_recent_auth(RECENT)
        ok = await get_middleware(request).revoke_session(
            session.user_id, request.query_params["ref"]
        )
        return JSONResponse({"ok": ok}, status_code=200 if ok else 404)

    async def revoke_others(request: Request) -> JSONResponse:
        session = get_session(request)
        session.require_recent_auth(RECENT)
        session.revoke_other_sessions()
        return JSONResponse({"ok": True})

    async def password(request: Request) -> JSONResponse:
        session = get_session(request)
        session.require_recent_auth(RECENT)
        session.credentials_changed()
        return JSONResponse({"ok": True})

    async def admin_revoke(request: Request) -> JSONResponse:
        ended = await get_middleware(request).revoke_user(request.query_params["user"])
        return JSONResponse({"ended": len(ended)})

    async def email(request: Request) -> JSONResponse:
        get_session(request).require_recent_auth(RECENT)
        return JSONResponse({"ok": True})

    async def feed(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"user": get_session(websocket).user_id})
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect:
            return

    async def events(request: Request) -> Response:
        async def forever() -> AsyncIterator[bytes]:
            while True:
                yield b"data: tick\n\n"
                await asyncio.sleep(0.05)

        return StreamingResponse(forever(), media_type="text/event-stream")

    async def page(request: Request) -> Response:
        """A signed-in page with the bundled client script and its settings (the idle timeout
        the session itself lives by: a remembered one's is the remember one)."""
        policy = get_middleware(request).policy
        metas = {
            "csrf-token": request.state.csrf_token(),
            "session-idle-timeout": str(int(get_session(request).lifetime.idle)),
            "session-warn-before": "60",
            "session-keepalive-url": "/keepalive",
            "session-passive-paths": ",".join(policy.passive_paths),
        }
        head = "".join(f'<meta name="{k}" content="{v}">' for k, v in metas.items())
        nonce = request.state.csp_nonce
        return HTMLResponse(
            f"<!doctype html><html><head>{head}"
            f'<script src="/sessionwarden.js" nonce="{nonce}"></script></head>'
            "<body><h1>Account</h1></body></html>"
        )

    async def keepalive(request: Request) -> Response:
        """A keep-alive URL answers 2xx only to a signed-in session; like most pages that need
        one, this one sends anybody else to the sign-in page (which answers 200)."""
        if get_session(request).user_id is None:
            return Response(status_code=303, headers={"location": "/page"})
        return Response(status_code=204)

    async def script(request: Request) -> Response:
        return Response(SCRIPT.read_bytes(), media_type="text/javascript")

    return Starlette(
        routes=[
            Route("/page", page),
            Route("/sessionwarden.js", script),
            Route("/keepalive", keepalive),
            Route("/whoami", whoami),
            Route("/poll", whoami),
            Route("/token", token),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/reauth", reauth, methods=["GET", "POST"]),
            Route("/sessions", sessions),
            Route("/sessions/revoke", revoke, methods=["POST"]),
            Route("/sessions/revoke-others", revoke_others, methods=["POST"]),
            Route("/account/password", password, methods=["POST"]),
            Route("/account/email", email, methods=["POST"]),
            Route("/admin/revoke", admin_revoke, methods=["POST"]),
            Route("/events", events),
            WebSocketRoute("/ws", feed),
        ]
    )


# -- the live server ---------------------------------------------------------------------------




@dataclass
class Live:
    port: int
    clock: ManualClock
    events: Recorder
    mw: SessionWardenMiddleware
    tls: ssl.SSLContext

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def settle(self) -> None:
        """Let the watcher of open connections run a few of its checks (every 0.05 s of real
        time) before the clock jumps again: a periodic rotation moves a session to a new key,
        and the watcher follows it while the old key's grace window (10 s of the clock) lasts,
        which in real time is 20 checks; a test that jumps the clock by many minutes at once
        must let it see each rotation first."""
        await asyncio.sleep(0.2)

    async def wait_for(self, kind: EventKind, count: int = 1) -> list[Any]:
        """The events of ``kind`` once there are ``count`` (the server runs in its thread)."""
        deadline = time.monotonic() + PATIENCE
        while self.events.count(kind) < count:
            assert time.monotonic() < deadline, f"no {count} x {kind} in {self.events.kinds()}"
            await asyncio.sleep(0.02)
        return self.events.of(kind)


@contextmanager
def live_server(store: str, tmp: Path, **settings: Any) -> Iterator[Live]:
    import uvicorn

    policy = Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("127.0.0.1",),
        https=HttpsPolicy(trusted_proxies=("127.0.0.1",)),
        monitor=MonitorPolicy(
            on_high="step_up", notify_logins=True, reauth_paths=("/reauth", "/logout")
        ),
        websocket=WebSocketPolicy(check_interval=0.05),
        **{"passive_paths": ("/poll",), **settings},
    )
    clock, events = ManualClock(), Recorder()
    mw = SessionWardenMiddleware(_app(), policy=policy, store=store, clock=clock, sink=events)
    cert, key, _ = self_signed_certificate(tmp)
    port = free_port()
    config = uvicorn.Config(
        mw,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        proxy_headers=False,  # the middleware reads X-Forwarded-For from its trusted proxy
        ws="websockets",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the live server did not start")
        time.sleep(0.02)
    tls = ssl.create_default_context(cafile=str(cert))
    try:
        yield Live(port, clock, events, mw, tls)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from store_url_of(getattr(request, "param", "memory"), tmp_path)


EVERY_STORE = pytest.mark.parametrize(
    "store_url", ["memory", "sqlite", "redis", "postgres"], indirect=True
)
SHARED_STORES = pytest.mark.parametrize("store_url", ["memory", "sqlite", "redis"], indirect=True)


@pytest.fixture
def live(store_url: str, tmp_path: Path) -> Iterator[Live]:
    with live_server(store_url, tmp_path) as served:
        yield served


# -- browsers ---------------------------------------------------------------------------------


class Browser:
    """One browser: its own cookie jar, address (forwarded by the trusted proxy) and agent."""

    def __init__(self, live: Live, ip: str = HOME, ua: str = FIREFOX) -> None:
        self.live, self.ip, self.ua = live, ip, ua
        self.http = httpx.AsyncClient(base_url=live.base, verify=live.tls, timeout=PATIENCE)

    @property
    def cookie(self) -> str | None:
        return self.http.cookies.get(COOKIE)

    def tab(self) -> Browser:
        """Another tab of this browser: the same cookie jar."""
        other = Browser(self.live, self.ip, self.ua)
        other.http.cookies = self.http.cookies
        return other

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"x-forwarded-for": self.ip, "user-agent": self.ua, **(extra or {})}

    async def get(self, path: str, extra: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.get(path, headers=self.headers({**JSON_ACCEPT, **(extra or {})}))

    async def post(
        self, path: str, *, token: bool = True, extra: dict[str, str] | None = None
    ) -> httpx.Response:
        sent = {"sec-fetch-site": "same-origin", "origin": self.live.base, **JSON_ACCEPT}
        if token:  # the sign-in-again page hands out its own (the only page a flagged session sees)
            page = "/reauth" if path == "/reauth" else "/token"
            sent["x-csrf-token"] = (await self.get(page)).json()["csrf_token"]
        return await self.http.post(path, headers=self.headers({**sent, **(extra or {})}))

    async def login(self, user: str = "alice") -> str:
        r = await self.post(f"/login?user={user}")
        assert r.status_code == 200, r.text
        assert self.cookie
        return self.cookie

    async def user(self) -> str | None:
        r = await self.get("/whoami")
        assert r.status_code == 200, r.text
        user: str | None = r.json()["user"]
        return user

    @asynccontextmanager
    async def websocket(self, cookie: str | None = None) -> AsyncIterator[Any]:
        from websockets.asyncio.client import connect

        value = cookie if cookie is not None else self.cookie
        async with connect(
            f"wss://127.0.0.1:{self.live.port}/ws",
            ssl=self.live.tls,
            origin=self.live.base,  # type: ignore[arg-type]
            additional_headers={"cookie": f"{COOKIE}={value}", "x-forwarded-for": self.ip},
            user_agent_header=self.ua,
            open_timeout=PATIENCE,
        ) as ws:
            yield ws

    async def aclose(self) -> None:
        await self.http.aclose()


async def greeted(ws: Any) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), PATIENCE))["user"]


async def closed(ws: Any) -> tuple[int, str]:
    """The close code and reason the server sent (the socket must close within PATIENCE)."""
    from websockets.exceptions import ConnectionClosed

    try:
        while True:
            await asyncio.wait_for(ws.recv(), PATIENCE)
    except ConnectionClosed as ended:
        assert ended.rcvd is not None, "closed without a close frame from the server"
        return ended.rcvd.code, ended.rcvd.reason
    raise AssertionError("unreachable")


async def still_open(ws: Any) -> bool:
    await ws.send("ping")
    return bool(await asyncio.wait_for(ws.recv(), PATIENCE) == "ping")


async def refused_handshake(browser: Browser, cookie: str | None = None) -> int:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        async with browser.websocket(cookie):
            pass
    return refused.value.response.status_code


@asynccontextmanager
async def browsers(live: Live, *specs: tuple[str, str]) -> AsyncIterator[list[Browser]]:
    opened = [Browser(live, ip, ua) for ip, ua in specs]
    try:
        yield opened
    finally:
        for b in opened:
            await b.aclose()


def _assert_reauth_required(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["reauth_required"] is True


# -- A7 41: a step-up demand reaches open connections -------------------------------------------


@SHARED_STORES
async def test_a_step_up_demand_closes_the_sessions_open_websocket_and_event_stream(
    live: Live,
) -> None:
    async with browsers(live, (HOME, FIREFOX), (OFFICE, SAFARI)) as (user, bystander):
        await user.login()
        await bystander.login()
        async with (
            user.websocket() as ws,
            bystander.websocket() as other,
            user.http.stream("GET", "/events", headers=user.headers()) as stream,
        ):
            assert await greeted(ws) == "alice" and await greeted(other) == "alice"
            assert stream.status_code == 200
            chunks = stream.aiter_bytes()
            assert b"data:" in await anext(chunks)
            # The cookie is used from another network and browser: the risk policy demands
            # that the user sign in again.
            thief = Browser(live, ELSEWHERE, CHROME)
            thief.http.cookies.set(COOKIE, user.cookie or "", domain="127.0.0.1")
            _assert_reauth_required(await thief.get("/whoami"))
            await thief.aclose()
            assert await closed(ws) == (1008, "reauthentication required")

            async def drained() -> None:
                async for _ in chunks:
                    pass

            await asyncio.wait_for(drained(), PATIENCE)  # the event stream ended too
            assert await still_open(other)  # another session of the same user is untouched
        ended = await live.wait_for(EventKind.CONNECTION_CLOSED, 2)
        assert sorted(e.detail["connection"] for e in ended) == ["event-stream", "websocket"]
        assert {e.reason for e in ended} == {"step-up-required"}
        assert {e.user_id for e in ended} == {"alice"}
        # The demand holds for new connections and requests of the session's own browser too.
        assert await refused_handshake(user) == 401
        _assert_reauth_required(await user.get("/whoami"))
        # Signing in again lifts it: a new ID, and its connections are served.
        before = user.cookie
        assert (await user.post("/reauth")).status_code == 200
        assert user.cookie not in (None, before)
        async with user.websocket() as ws:
            assert await greeted(ws) == "alice"
            assert await still_open(ws)
        assert live.events.count(EventKind.CONNECTION_CLOSED) == 2


# -- A5 logout and invalidation ----------------------------------------------------------------


async def test_logout_in_one_tab_signs_out_the_other_tab_and_closes_its_websocket(
    live: Live,
) -> None:
    """Item 28: the logout ends the session on the server, not just in the tab that asked."""
    async with browsers(live, (HOME, FIREFOX)) as (first,):
        await first.login()
        second = first.tab()
        assert await second.user() == "alice"
        async with second.websocket() as ws:
            assert await greeted(ws) == "alice"
            assert (await first.post("/logout")).status_code == 200
            assert await closed(ws) == (1008, "session ended")
        assert first.cookie is None  # the jar the tabs share dropped it
        assert await second.user() is None
        (event,) = await live.wait_for(EventKind.CONNECTION_CLOSED)
        assert event.reason == "logout"
        await second.aclose()


@EVERY_STORE
async def test_a_copy_of_the_cookie_kept_by_another_client_is_dead_after_logout(
    live: Live,
) -> None:
    """Item 28 on every store: the old cookie replayed from a client that kept a copy, over
    HTTP and as a WebSocket handshake, is unauthenticated, and the replay is reported."""
    async with browsers(live, (HOME, FIREFOX), (HOME, FIREFOX)) as (user, copier):
        stolen = await user.login()
        copier.http.cookies.set(COOKIE, stolen, domain="127.0.0.1")
        assert await copier.user() == "alice"
        assert (await user.post("/logout")).status_code == 200
        r = await copier.get("/whoami")
        assert r.status_code == 200 and r.json() == {"user": None}
        assert copier.cookie != stolen  # the dead ID was replaced (or cleared)
        assert await refused_handshake(copier, stolen) == 403
        assert live.events.count(EventKind.REPLAY_REVOKED) >= 1
        # The replay did not bring the session back for the user either.
        assert await user.user() is None


async def test_logout_cannot_be_forced_from_another_site(live: Live) -> None:
    """Item 29: a cross-site GET does not log out; a cross-site POST without the token is
    refused with 403; the session stays valid through both."""
    async with browsers(live, (HOME, FIREFOX)) as (user,):
        await user.login()
        cross = {"sec-fetch-site": "cross-site", "origin": "https://evil.test"}
        r = await user.http.get("/logout", headers=user.headers(cross))
        assert r.status_code in (403, 405)
        assert await user.user() == "alice"
        r = await user.post("/logout", token=False, extra=cross)
        assert r.status_code == 403
        # The token from this site does not help a cross-site request either.
        r = await user.post("/logout", extra=cross)
        assert r.status_code == 403
        assert await user.user() == "alice"


async def test_the_logout_response_expires_the_cookie_clears_site_data_and_is_not_stored(
    live: Live,
) -> None:
    """Item 30 and section D.1: the three headers on the logout response."""
    async with browsers(live, (HOME, FIREFOX)) as (user,):
        await user.login()
        r = await user.post("/logout")
        assert r.status_code == 200
        (cleared,) = [h for h in r.headers.get_list("set-cookie") if h.startswith(COOKIE + "=")]
        attrs = [a.strip().lower() for a in cleared.split(";")]
        assert attrs[0] == COOKIE.lower() + "="
        assert "max-age=0" in attrs or any(a.startswith("expires=thu, 01 jan 1970") for a in attrs)
        assert (
            "secure" in attrs
            and "path=/" in attrs
            and not any(a.startswith("domain") for a in attrs)
        )
        assert r.headers["clear-site-data"] == '"cookies", "storage"'
        assert "no-store" in r.headers["cache-control"]


async def test_sessions_are_listed_by_handle_and_ended_one_others_or_from_another_user(
    live: Live,
) -> None:
    """Item 31: list (created, last seen, IP, UA, no cookie value), revoke one after signing in
    again, revoke the others (this one rotates), and another user's handle does nothing."""
    specs = [(HOME, FIREFOX), (OFFICE, CHROME), (ELSEWHERE, SAFARI), (HOME, CHROME)]
    async with browsers(live, *specs) as (a, b, c, mallory):
        cookies = [await x.login() for x in (a, b, c)]
        await mallory.login("mallory")
        r = await a.get("/sessions")
        assert r.status_code == 200
        rows = r.json()
        assert len(rows) == 3
        assert {row["ip"] for row in rows} == {HOME, OFFICE, ELSEWHERE}
        assert sorted(row["ua"].split()[0] for row in rows) == ["Chrome", "Firefox", "Safari"]
        assert all(row["created_at"] and row["last_seen"] for row in rows)
        assert [row["current"] for row in rows].count(True) == 1
        for cookie in cookies:
            assert cookie not in r.text
        handle_of = {row["ip"]: row["ref"] for row in rows}
        # Another user cannot end alice's session with its handle.
        r = await mallory.post(f"/sessions/revoke?ref={handle_of[OFFICE]}")
        assert r.status_code == 404
        assert await b.user() == "alice"
        # Ending one needs a recent sign-in.
        live.clock.advance(RECENT + 1)
        for x in (a, b, c):
            assert await x.user() == "alice"  # keeps them from idling out
        async with b.websocket() as ws:
            assert await greeted(ws) == "alice"
            _assert_reauth_required(await a.post(f"/sessions/revoke?ref={handle_of[OFFICE]}"))
            assert await still_open(ws)
            assert (await a.post("/reauth")).status_code == 200
            r = await a.post(f"/sessions/revoke?ref={handle_of[OFFICE]}")
            assert r.status_code == 200
            assert await closed(ws) == (1008, "session ended")
        assert await b.user() is None
        # "Sign out the others": c ends, a stays and gets a new ID.
        before = a.cookie
        async with c.websocket() as ws:
            assert await greeted(ws) == "alice"
            assert (await a.post("/sessions/revoke-others")).status_code == 200
            assert await closed(ws) == (1008, "session ended")
        assert a.cookie not in (None, before)
        assert await a.user() == "alice" and await c.user() is None
        assert await mallory.user() == "mallory"
        assert [row["ip"] for row in (await a.get("/sessions")).json()] == [HOME]


async def test_a_password_change_ends_every_other_session_and_rotates_this_one(
    live: Live,
) -> None:
    """Item 32 (and the notification of item 44)."""
    async with browsers(live, (HOME, FIREFOX), (OFFICE, CHROME), (ELSEWHERE, SAFARI)) as (
        a,
        b,
        c,
    ):
        for x in (a, b, c):
            await x.login()
        before = a.cookie
        async with b.websocket() as ws_b, c.websocket() as ws_c:
            assert await greeted(ws_b) == await greeted(ws_c) == "alice"
            assert (await a.post("/account/password")).status_code == 200
            assert await closed(ws_b) == (1008, "session ended")
            assert await closed(ws_c) == (1008, "session ended")
        assert a.cookie not in (None, before)
        assert await a.user() == "alice"
        assert await b.user() is None and await c.user() is None
        (changed,) = live.events.of(EventKind.CREDENTIALS_CHANGED)
        assert changed.user_id == "alice" and changed.detail["ended"] == 2


@SHARED_STORES
async def test_an_administrator_ends_every_session_of_one_user(live: Live) -> None:
    """Item 33 ("all users" is a change of the secret keys: test_standards_gaps)."""
    async with browsers(live, (HOME, FIREFOX), (OFFICE, CHROME), (HOME, SAFARI)) as (a, b, bob):
        await a.login()
        await b.login()
        await bob.login("bob")
        async with a.websocket() as ws_a, bob.websocket() as ws_bob:
            assert await greeted(ws_a) == "alice" and await greeted(ws_bob) == "bob"
            r = await bob.post("/admin/revoke?user=alice")
            assert r.json() == {"ended": 2}
            assert await closed(ws_a) == (1008, "session ended")
            assert await still_open(ws_bob)
        assert await a.user() is None and await b.user() is None
        assert await bob.user() == "bob"


# -- A6 timeouts (the server's clock is moved, never waited for) ------------------------------


async def test_idle_timeout_ends_a_quiet_session_and_its_websocket_and_requests_keep_it_alive(
    live: Live,
) -> None:
    """Items 34 and 38: activity keeps the session past one idle timeout in all; a quiet one
    ends at the idle deadline, its record is deleted, the expiry is reported, and a later use
    of the ID is reported as the use of an expired session."""
    from sessionwarden.records import SessionRecord

    async with browsers(live, (HOME, FIREFOX), (HOME, FIREFOX)) as (user, copy):
        cookie = await user.login()
        for _ in range(3):  # 3 x (idle - 1 min) apart: far longer than one idle timeout in all
            live.clock.advance(IDLE - 60)
            assert await user.user() == "alice"
        current = user.cookie or ""
        key = live.mw.engine.keyring.hash_id(current)
        assert isinstance(await live.mw.store.get(key), SessionRecord)
        async with user.websocket() as ws:
            assert await greeted(ws) == "alice"
            live.clock.advance(IDLE)
            assert await closed(ws) == (1008, "session ended")
        # Found by the check of open connections before any request: ended all the same.
        (expired,) = live.events.of(EventKind.EXPIRED_IDLE)
        assert expired.user_id == "alice" and expired.ref == key[:16]
        assert not isinstance(await live.mw.store.get(key), SessionRecord)  # deleted
        assert await user.user() is None
        closes = live.events.of(EventKind.CONNECTION_CLOSED)
        assert [e.reason for e in closes] == ["expired.idle"]
        # A client that kept a copy gets nothing, and its use is reported as that of an
        # expired session (the sign-in's ID, rotated since, as a replay).
        copy.http.cookies.set(COOKIE, current, domain="127.0.0.1")
        assert await copy.user() is None
        again = live.events.of(EventKind.EXPIRED_IDLE)[1:]
        assert [(e.reason, e.user_id) for e in again] == [("again", "alice")] * 2
        if cookie != current:
            copy.http.cookies.set(COOKIE, cookie, domain="127.0.0.1")
            assert await copy.user() is None


async def test_absolute_timeout_ends_a_busy_session_and_its_websocket(live: Live) -> None:
    """Item 35: requests every 29 minutes do not carry the session past the absolute
    timeout."""
    async with browsers(live, (HOME, FIREFOX)) as (user,):
        await user.login()
        elapsed = 0.0
        async with user.websocket() as ws:
            assert await greeted(ws) == "alice"
            while elapsed + IDLE - 60 < ABSOLUTE:
                live.clock.advance(IDLE - 60)
                elapsed += IDLE - 60
                assert await user.user() == "alice"
                await live.settle()
            assert await still_open(ws)
            live.clock.advance(ABSOLUTE - elapsed)
            assert await closed(ws) == (1008, "session ended")
        assert live.events.count(EventKind.EXPIRED_ABSOLUTE) == 1  # found by the check
        assert await user.user() is None
        assert [e.reason for e in live.events.of(EventKind.EXPIRED_ABSOLUTE)] == ["", "again"]
        (closing,) = live.events.of(EventKind.CONNECTION_CLOSED)
        assert closing.reason == "expired.absolute"


async def test_expiry_rests_on_server_time_only(live: Live) -> None:
    """Item 36: the cookie carries no lifetime or time of its own, and after the expiry
    nothing the client sends (its own date, the cookie again) brings the session back."""
    async with browsers(live, (HOME, FIREFOX)) as (user,):
        await user.login()
        r = await user.get("/whoami")
        for header in r.headers.get_list("set-cookie") or []:
            assert "max-age" not in header.lower() and "expires" not in header.lower()
        cookie = user.cookie
        login_date = r.headers["date"]
        live.clock.advance(IDLE + 1)
        user.http.cookies.set(COOKIE, cookie or "", domain="127.0.0.1")
        r = await user.get("/whoami", {"date": login_date, "if-modified-since": login_date})
        assert r.json() == {"user": None}
        user.http.cookies.set(COOKIE, cookie or "", domain="127.0.0.1")
        assert await user.user() is None


async def test_polling_a_passive_path_does_not_keep_the_session_alive(live: Live) -> None:
    """Item 37: ``/poll`` is passive; polled every minute the session still ends at the idle
    timeout after the last real request."""
    async with browsers(live, (HOME, FIREFOX)) as (user,):
        await user.login()
        polls = int(IDLE // 60) - 1
        for _ in range(polls):
            live.clock.advance(60)
            r = await user.get("/poll")
            assert r.json() == {"user": "alice"}
        live.clock.advance(IDLE - polls * 60)
        assert (await user.get("/poll")).json() == {"user": None}
        assert live.events.count(EventKind.EXPIRED_IDLE) == 1


# -- A7 re-authentication ---------------------------------------------------------------------


async def test_a_sensitive_change_needs_a_recent_sign_in_which_rotates_the_id(live: Live) -> None:
    """Item 39."""
    async with browsers(live, (HOME, FIREFOX)) as (user,):
        await user.login()
        assert (await user.post("/account/email")).status_code == 200
        live.clock.advance(RECENT + 1)
        r = await user.post("/account/email")
        _assert_reauth_required(r)
        before = user.cookie
        assert (await user.post("/reauth")).status_code == 200
        assert user.cookie not in (None, before)
        assert (await user.post("/account/email")).status_code == 200


async def test_a_cross_site_sign_in_mints_no_session(live: Live) -> None:
    """Item 42 (login CSRF): a cross-site POST to the sign-in endpoint is refused and leaves
    the browser anonymous."""
    async with browsers(live, (HOME, FIREFOX)) as (user,):
        cross = {"sec-fetch-site": "cross-site", "origin": "https://evil.test"}
        r = await user.post("/login", token=False, extra=cross)
        assert r.status_code == 403
        assert await user.user() is None
        assert live.events.count(EventKind.LOGGED_IN) == 0


# -- A8 concurrent sessions -------------------------------------------------------------------


@pytest.mark.parametrize("action", ["evict-oldest", "evict-lru"])
async def test_the_cap_evicts_a_session_and_closes_its_websocket(
    action: str, tmp_path: Path
) -> None:
    """Item 43: at most two sessions; the third sign-in ends the oldest (or the least
    recently used), its WebSocket closes, the other two work."""
    with live_server(
        "memory://", tmp_path, max_sessions_per_user=2, on_session_limit=action
    ) as live:
        specs = [(HOME, FIREFOX), (OFFICE, CHROME), (ELSEWHERE, SAFARI)]
        async with browsers(live, *specs) as (a, b, c):
            await a.login()
            live.clock.advance(120)
            await b.login()
            live.clock.advance(120)
            if action == "evict-lru":
                assert await a.user() == "alice"  # a is used after b signed in
                live.clock.advance(120)
            gone, kept = (a, b) if action == "evict-oldest" else (b, a)
            async with gone.websocket() as ws:
                assert await greeted(ws) == "alice"
                await c.login()
                assert await closed(ws) == (1008, "session ended")
            assert await gone.user() is None
            assert await kept.user() == "alice" and await c.user() == "alice"
            (evicted,) = live.events.of(EventKind.EVICTED)
            assert evicted.user_id == "alice"


async def test_the_cap_can_refuse_the_new_sign_in_instead(tmp_path: Path) -> None:
    with live_server(
        "memory://", tmp_path, max_sessions_per_user=2, on_session_limit="reject"
    ) as live:
        specs = [(HOME, FIREFOX), (OFFICE, CHROME), (ELSEWHERE, SAFARI)]
        async with browsers(live, *specs) as (a, b, c):
            await a.login()
            await b.login()
            r = await c.post("/login")
            assert r.status_code == 409
            assert r.json()["error"] == "session-limit"
            assert await c.user() is None
            assert await a.user() == "alice" and await b.user() == "alice"
            assert live.events.count(EventKind.LOGIN_REFUSED) == 1


async def test_a_concurrent_sign_in_reaches_the_hook_without_any_token(live: Live) -> None:
    """Item 44: the hook (the event sink) gets the user, the session's handle, address and
    agent of the new sign-in, and no cookie value anywhere."""
    async with browsers(live, (HOME, FIREFOX), (OFFICE, CHROME)) as (a, b):
        first = await a.login()
        second = await b.login()
        (concurrent,) = live.events.of(EventKind.CONCURRENT_LOGIN)
        assert concurrent.user_id == "alice"
        assert concurrent.client_ip == OFFICE and concurrent.user_agent == CHROME
        assert concurrent.ref and concurrent.detail["others"] == 1
        handles = [row["ref"] for row in (await b.get("/sessions")).json()]
        assert any(h.startswith(concurrent.ref) or concurrent.ref.startswith(h) for h in handles)
        (device,) = live.events.of(EventKind.NEW_DEVICE)
        assert device.client_ip == OFFICE
        logged = json.dumps([e.to_dict() for e in live.events.events])
        assert first not in logged and second not in logged
