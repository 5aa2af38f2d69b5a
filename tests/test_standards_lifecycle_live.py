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
import datetime
import ipaddress
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
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from sessionwarden.asgi import SessionWardenMiddleware, get_middleware, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.events import EventKind
from sessionwarden.policy import HttpsPolicy, MonitorPolicy, Policy, WebSocketPolicy

from .attacks.conftest import store_url_of
from .conftest import SECRET, Recorder
from .live_servers import free_port

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
        get_session(request).login(request.query_params.get("user", "alice"))
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
        await websocket.send_json({"user": websocket.session.user_id})
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

    return Starlette(
        routes=[
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


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


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
        **settings,
    )
    clock, events = ManualClock(), Recorder()
    mw = SessionWardenMiddleware(_app(), policy=policy, store=store, clock=clock, sink=events)
    cert, key = _certificate(tmp)
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
