"""WebSocket handshakes and open connections through the ASGI middleware (in-process).

The tests play the server's side of the ASGI WebSocket protocol themselves, so every message
the middleware and the application exchange with the "server" is visible, and the watcher of
open connections is driven one check at a time (:meth:`Watcher.check`) against a manual clock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.events import CallbackSink, Event, EventKind
from sessionwarden.policy import Policy, WebSocketPolicy
from sessionwarden.websocket import CookieNeeded, save_session

from .conftest import SECRET, drop_prefix, redis_or_skip, unique_prefix

BASE = "https://app.test"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- the application -------------------------------------------------------------------------


async def token(request: Request) -> Response:
    return JSONResponse({"csrf_token": request.state.csrf_token()})


async def login(request: Request) -> Response:
    get_session(request).login(request.query_params.get("user", "alice"))
    return PlainTextResponse("ok")


async def logout(request: Request) -> Response:
    """Signs out; ``?then=`` signs another user in, ``?flash=`` sets a message after it."""
    session = get_session(request)
    session.logout()
    if "then" in request.query_params:
        session.login(request.query_params["then"])
    if "flash" in request.query_params:
        session["flash"] = request.query_params["flash"]
    return PlainTextResponse("bye")


async def touch(request: Request) -> Response:
    return PlainTextResponse(str(get_session(request).get("note")))


async def feed(websocket: WebSocket) -> None:
    """Greets with the user's name, then answers each message: ``note`` sets a session key,
    ``save`` saves the session, ``login`` asks for a login, anything else is echoed."""
    await websocket.accept()
    await websocket.send_json({"user": websocket.session.user_id})
    try:
        while True:
            text = await websocket.receive_text()
            if text == "note":
                websocket.session["note"] = "from-ws"
                await websocket.send_text("noted")
            elif text == "save":
                await websocket.send_text(f"saved {await save_session(websocket)}")
            elif text == "login":
                websocket.session.login("mallory")
                try:
                    await save_session(websocket)
                except CookieNeeded:
                    await websocket.send_text("cookie needed")
            else:
                await websocket.send_text(text)
    except WebSocketDisconnect:
        return


async def events(request: Request) -> Response:
    async def forever() -> AsyncIterator[bytes]:
        n = 0
        while True:
            n += 1
            yield f"data: {n}\n\n".encode()
            await asyncio.sleep(0.01)

    return StreamingResponse(forever(), media_type="text/event-stream")


def inner_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/token", token),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/touch", touch),
            Route("/events", events),
            WebSocketRoute("/ws", feed),
        ]
    )


class Harness:
    def __init__(self, store: str = "memory://", policy: Policy | None = None) -> None:
        self.clock = ManualClock(1_700_000_000.0)
        self.events: list[Event] = []
        self.mw = SessionWardenMiddleware(
            inner_app(),
            policy=policy or Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
            store=store,
            clock=self.clock,
            sink=CallbackSink(self.events.append),
        )

    def client(self, agent: str = FIREFOX) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.mw),
            base_url=BASE,
            headers={"user-agent": agent},
        )

    def kinds(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind is kind]


async def post(c: httpx.AsyncClient, path: str) -> httpx.Response:
    t = (await c.get("/token")).json()["csrf_token"]
    return await c.post(path, headers={"x-csrf-token": t})


async def signed_in(c: httpx.AsyncClient) -> str:
    assert (await post(c, "/login")).status_code == 200
    cookie = c.cookies.get("__Host-id")
    assert cookie
    return cookie


# -- the server's side of the WebSocket protocol ----------------------------------------------


class Conn:
    """One WebSocket as the server sees it."""

    def __init__(self, app: Any, scope: dict[str, Any]) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.get_running_loop().create_task(
            app(scope, self.inbox.get, self.outbox.put)
        )

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.outbox.get(), 5)

    async def say(self, text: str) -> dict[str, Any]:
        await self.inbox.put({"type": "websocket.receive", "text": text})
        return await self.next()

    async def hang_up(self) -> None:
        await self.inbox.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.task, 5)


def open_ws(
    h: Harness,
    cookie: str | None,
    *,
    origin: str | None = BASE,
    agent: str = FIREFOX,
    ip: str = "127.0.0.1",
    extension: bool = True,
    site: str | None = None,
) -> Conn:
    headers = [(b"host", b"app.test"), (b"user-agent", agent.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if site is not None:
        headers.append((b"sec-fetch-site", site.encode()))
    if cookie is not None:
        headers.append((b"cookie", f"__Host-id={cookie}".encode()))
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "scheme": "wss",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": (ip, 5000),
        "server": ("app.test", 443),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}} if extension else {},
    }
    return Conn(h.mw, scope)


async def accepted(conn: Conn) -> Any:
    """The application accepted the handshake; returns its first message (JSON)."""
    first = await conn.next()
    assert first["type"] == "websocket.accept", first
    greeting = await conn.next()
    assert greeting["type"] == "websocket.send"
    return json.loads(greeting["text"])


async def refused(conn: Conn) -> tuple[int, dict[bytes, bytes]]:
    """The middleware refused the handshake with an HTTP response; its status and headers."""
    start = await conn.next()
    assert start["type"] == "websocket.http.response.start", start
    body = await conn.next()
    assert body["type"] == "websocket.http.response.body"
    await asyncio.wait_for(conn.task, 5)
    return start["status"], dict(start["headers"])


# -- handshakes -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_same_origin_handshake_gets_the_session() -> None:
    h = Harness()
    async with h.client() as c:
        cookie = await signed_in(c)
    conn = open_ws(h, cookie)
    assert await accepted(conn) == {"user": "alice"}
    assert (await conn.say("hello"))["text"] == "hello"
    await conn.hang_up()
    assert len(h.mw.watcher) == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("origin", "site", "reason"),
    [
        ("https://evil.test", None, "origin-mismatch"),
        ("http://app.test", None, "origin-mismatch"),  # a plain-HTTP page of this host
        ("null", None, "null-origin"),
        ("https://evil.test", "cross-site", "cross-site-fetch"),
        ("https://sub.app.test", "same-site", "cross-site-fetch"),
        (None, None, "missing-origin"),
    ],
)
async def test_a_cross_site_handshake_with_valid_cookies_is_refused(
    origin: str | None, site: str | None, reason: str
) -> None:
    h = Harness()
    async with h.client() as c:
        cookie = await signed_in(c)
    status, _ = await refused(open_ws(h, cookie, origin=origin, site=site))
    assert status == 403
    (event,) = h.kinds(EventKind.WEBSOCKET_REFUSED)
    assert event.reason == reason
    # The session was not even read: a cross-site page cannot make it do anything.
    assert len(h.mw.watcher) == 0


@pytest.mark.anyio
async def test_trusted_origins_and_non_browser_clients_when_the_policy_allows() -> None:
    policy = Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("*",),
        websocket=WebSocketPolicy(allow_non_browser=True),
    )
    h = Harness(policy=policy)
    async with h.client() as c:
        cookie = await signed_in(c)
    conn = open_ws(h, cookie, origin=None)
    assert await accepted(conn) == {"user": "alice"}
    await conn.hang_up()
    trusted = replace(policy.csrf, trusted_origins=("https://admin.test",))
    h2 = Harness(policy=replace(policy, csrf=trusted))
    conn = open_ws(h2, None, origin="https://admin.test", site="cross-site")
    assert await accepted(conn) == {"user": None}
    await conn.hang_up()
    status, _ = await refused(open_ws(h2, None, origin="https://evil.test"))
    assert status == 403


@pytest.mark.anyio
async def test_without_the_denial_extension_the_handshake_is_closed_before_accepting() -> None:
    h = Harness()
    conn = open_ws(h, None, origin="https://evil.test", extension=False)
    message = await conn.next()
    assert message == {"type": "websocket.close", "code": 1008}
    await asyncio.wait_for(conn.task, 5)


@pytest.mark.anyio
async def test_handshakes_on_ended_or_unknown_ids_are_refused_and_the_cookie_cleared() -> None:
    h = Harness()
    async with h.client() as c:
        logged_out = await signed_in(c)
        assert (await post(c, "/logout")).status_code == 200
    async with h.client() as c:
        idle = await signed_in(c)
    unknown = "A" * 43
    for cookie in (logged_out, unknown):
        status, hdrs = await refused(open_ws(h, cookie))
        assert status == 403
        assert hdrs[b"set-cookie"].startswith(b"__Host-id=;")
    h.clock.advance(1801)  # past the idle timeout
    status, _ = await refused(open_ws(h, idle))
    assert status == 403
    reasons = [e.reason for e in h.kinds(EventKind.WEBSOCKET_REFUSED)]
    assert reasons == ["no-live-session"] * 3
    assert h.kinds(EventKind.REPLAY_REVOKED) and h.kinds(EventKind.EXPIRED_IDLE)


@pytest.mark.anyio
async def test_a_rotated_out_id_past_its_grace_is_refused() -> None:
    h = Harness()
    async with h.client() as c:
        old = await signed_in(c)
        h.clock.advance(901)  # periodic rotation is due: the next request rotates
        assert (await c.get("/touch")).status_code == 200
        new = c.cookies.get("__Host-id")
    assert new and new != old
    conn = open_ws(h, old)  # within the grace window the old ID still reaches the session
    assert await accepted(conn) == {"user": "alice"}
    await conn.hang_up()
    h.clock.advance(11)
    status, _ = await refused(open_ws(h, old))
    assert status == 403
    assert h.kinds(EventKind.REPLAY_ROTATED)


@pytest.mark.anyio
async def test_a_stolen_cookie_in_another_browser_is_refused_as_on_http() -> None:
    h = Harness()
    async with h.client() as c:
        cookie = await signed_in(c)
    status, _ = await refused(open_ws(h, cookie, agent=CHROME, ip="198.51.100.7"))
    assert status == 403
    assert h.kinds(EventKind.ANOMALY)
    # The risk response revoked the session: the owner's connection is refused too.
    status, _ = await refused(open_ws(h, cookie))
    assert status == 403


@pytest.mark.anyio
async def test_the_throttle_refuses_a_client_guessing_ids() -> None:
    h = Harness()
    statuses = []
    for n in range(35):
        status, _ = await refused(open_ws(h, f"{n:043d}".replace("0", "A")))
        statuses.append(status)
    assert statuses[0] == 403 and statuses[-1] == 429


# -- the session over the connection ----------------------------------------------------------


@pytest.mark.anyio
async def test_the_session_is_read_only_unless_the_app_saves_it() -> None:
    h = Harness()
    async with h.client() as c:
        cookie = await signed_in(c)
        conn = open_ws(h, cookie)
        await accepted(conn)
        assert (await conn.say("note"))["text"] == "noted"
        assert (await c.get("/touch")).text == "None"  # not written
        assert (await conn.say("save"))["text"] == "saved True"
        assert (await c.get("/touch")).text == "from-ws"
        assert (await conn.say("login"))["text"] == "cookie needed"
        await conn.hang_up()


# -- revocation reaches open connections ------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/s.db"
    else:
        prefix = unique_prefix()
        yield f"{redis_or_skip()}?prefix={prefix}"
        drop_prefix(prefix)


async def closed_with_policy_violation(conn: Conn) -> None:
    message = await conn.next()
    assert message["type"] == "websocket.close", message
    assert message["code"] == 1008
    await conn.hang_up()


@pytest.mark.anyio
async def test_a_logout_elsewhere_closes_the_open_websocket(store_url: str) -> None:
    h = Harness(store_url)
    async with h.client() as c:
        cookie = await signed_in(c)
        conn = open_ws(h, cookie)
        await accepted(conn)
        bystander_client = h.client()
        async with bystander_client as b:
            other = open_ws(h, await signed_in(b))
            await accepted(other)
        assert await h.mw.watcher.check() == 0  # both live: nothing closes
        assert (await post(c, "/logout")).status_code == 200
        assert await h.mw.watcher.check() == 1
        await closed_with_policy_violation(conn)
        assert (await other.say("still here"))["text"] == "still here"
        await other.hang_up()
    (event,) = h.kinds(EventKind.CONNECTION_CLOSED)
    assert event.reason == "logout" and event.detail == {"connection": "websocket"}
    # Correlated with the session it was opened in (its logout), not the bystander's.
    (logout,) = h.kinds(EventKind.LOGGED_OUT)
    assert event.session and event.session == logout.session
    assert len({e.session for e in h.kinds(EventKind.LOGGED_IN)}) == 2
    await h.mw.store.close()


@pytest.mark.anyio
@pytest.mark.parametrize("query", ["?flash=bye", "?then=bob", "?then=bob&flash=hi"])
async def test_a_logout_that_starts_a_new_session_closes_the_open_websocket(
    store_url: str, query: str
) -> None:
    """A message set after ``logout()``, or another user signed in after it (switching users):
    the browser gets a new session, and the connection opened in the ended one closes, as on
    a plain logout; it does not follow the browser to the new session."""
    h = Harness(store_url)
    async with h.client() as c:
        cookie = await signed_in(c)
        conn = open_ws(h, cookie)
        await accepted(conn)
        r = await post(c, f"/logout{query}")
        assert r.status_code == 200 and c.cookies.get("__Host-id") not in (None, cookie)
        assert await h.mw.watcher.check() == 1
        await closed_with_policy_violation(conn)
        fresh = open_ws(h, c.cookies["__Host-id"])
        assert await accepted(fresh) == {"user": "bob" if "then" in query else None}
        await fresh.hang_up()
    (event,) = h.kinds(EventKind.CONNECTION_CLOSED)
    assert event.reason == "logout"
    (logout,) = h.kinds(EventKind.LOGGED_OUT)
    assert event.session and event.session == logout.session
    await h.mw.store.close()


@pytest.mark.anyio
async def test_another_user_signing_in_closes_the_first_users_websocket() -> None:
    """A shared computer: carol signs in on the browser where alice's page holds a WebSocket.
    The connection was opened as alice: it must not stay open as part of carol's session."""
    h = Harness()
    async with h.client() as c:
        cookie = await signed_in(c)
        conn = open_ws(h, cookie)
        assert await accepted(conn) == {"user": "alice"}
        assert (await post(c, "/login?user=carol")).status_code == 200
        await h.mw.watcher.check()
        message = await conn.next()
        assert message["type"] == "websocket.close", message
        await conn.hang_up()
    (event,) = h.kinds(EventKind.CONNECTION_CLOSED)
    assert event.reason == "logout" and event.detail == {"connection": "websocket"}


@pytest.mark.anyio
async def test_revoking_every_session_of_the_user_closes_their_connections() -> None:
    h = Harness()
    conns = []
    for _ in range(3):
        async with h.client() as c:
            conns.append(open_ws(h, await signed_in(c)))
            await accepted(conns[-1])
    assert len(await h.mw.revoke_user("alice")) == 3
    assert await h.mw.watcher.check() == 3
    for conn in conns:
        await closed_with_policy_violation(conn)


@pytest.mark.anyio
@pytest.mark.parametrize(("wait", "reason"), [(1801, "expired.idle"), (43_201, "expired.absolute")])
async def test_timeouts_close_open_connections(wait: float, reason: str) -> None:
    h = Harness()
    async with h.client() as c:
        conn = open_ws(h, await signed_in(c))
        await accepted(conn)
        if reason == "expired.absolute":  # activity keeps it from idling out first
            for _ in range(int(wait // 1500)):
                h.clock.advance(1500)
                await c.get("/touch")
                assert await h.mw.watcher.check() == 0
            h.clock.advance(wait % 1500)
        else:
            # Messages over the WebSocket do not extend the idle timeout.
            h.clock.advance(1790)
            assert (await conn.say("ping"))["text"] == "ping"
            assert await h.mw.watcher.check() == 0
            h.clock.advance(wait - 1790)
    assert await h.mw.watcher.check() == 1
    await closed_with_policy_violation(conn)
    assert h.kinds(EventKind.CONNECTION_CLOSED)[0].reason == reason


@pytest.mark.anyio
async def test_a_rotation_elsewhere_keeps_the_connection_on_the_session() -> None:
    h = Harness()
    async with h.client() as c:
        conn = open_ws(h, await signed_in(c))
        await accepted(conn)
        h.clock.advance(901)
        await c.get("/touch")  # rotates periodically: the old key is now an alias
        assert await h.mw.watcher.check() == 0
        h.clock.advance(11)  # past the grace: the connection follows the new key
        assert await h.mw.watcher.check() == 0
        assert (await post(c, "/logout")).status_code == 200
    assert await h.mw.watcher.check() == 1
    await closed_with_policy_violation(conn)


@pytest.mark.anyio
async def test_no_store_access_per_message() -> None:
    h = Harness()
    async with h.client() as c:
        conn = open_ws(h, await signed_in(c))
        await accepted(conn)
    sync = h.mw.store.sync  # type: ignore[attr-defined]
    calls: list[str] = []
    original: Callable[[str], Any] = sync.get
    sync.get = lambda key: calls.append(key) or original(key)
    for n in range(200):
        assert (await conn.say(str(n)))["text"] == str(n)
    assert calls == []
    await h.mw.watcher.check()
    assert len(calls) == 1  # one read per watched session per check
    await conn.hang_up()


@pytest.mark.anyio
async def test_an_event_stream_ends_when_its_session_ends() -> None:
    h = Harness()
    async with h.client() as c:
        await signed_in(c)
        cookie = c.cookies.get("__Host-id")
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/events",
        "raw_path": b"/events",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"app.test"),
            (b"user-agent", FIREFOX.encode()),
            (b"cookie", f"__Host-id={cookie}".encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("app.test", 443),
    }
    await inbox.put({"type": "http.request", "body": b"", "more_body": False})
    task = asyncio.get_running_loop().create_task(h.mw(scope, inbox.get, outbox.put))
    start = await asyncio.wait_for(outbox.get(), 5)
    assert start["status"] == 200
    first = await asyncio.wait_for(outbox.get(), 5)
    assert first["body"] == b"data: 1\n\n" and first.get("more_body")
    assert len(h.mw.watcher) == 1
    await h.mw.revoke_user("alice")
    assert await h.mw.watcher.check() == 1
    while True:
        message = await asyncio.wait_for(outbox.get(), 5)
        if not message.get("more_body", False):
            break
    assert message == {"type": "http.response.body", "body": b"", "more_body": False}
    await asyncio.wait_for(task, 5)  # the app's next send raised: its stream stopped
    assert outbox.empty() and len(h.mw.watcher) == 0
    (event,) = h.kinds(EventKind.CONNECTION_CLOSED)
    assert event.detail == {"connection": "event-stream"}
    (revoked,) = h.kinds(EventKind.REVOKED)
    assert event.session and event.session == revoked.session


class _Down:
    """A store that cannot be reached."""

    async def get(self, key: str) -> Any:
        from sessionwarden.stores import StoreUnavailable

        raise StoreUnavailable("down")


@pytest.mark.anyio
async def test_store_outage_refuses_handshakes_with_503_and_closes_nothing_open() -> None:
    h = Harness()
    async with h.client() as c:
        conn = open_ws(h, await signed_in(c))
        await accepted(conn)
    healthy = h.mw.store
    h.mw.store = _Down()  # type: ignore[assignment]
    assert await h.mw.watcher.check() == 0  # unknown is not ended: checked again next time
    async with h.client() as c:
        status, hdrs = await refused(open_ws(h, "B" * 43))
    assert status == 503 and hdrs[b"retry-after"] == b"1"
    h.mw.store = healthy
    assert (await conn.say("still open"))["text"] == "still open"
    await h.mw.revoke_user("alice")
    assert await h.mw.watcher.check() == 1
    await closed_with_policy_violation(conn)


@pytest.mark.anyio
async def test_with_websockets_disabled_the_handshake_passes_through_untouched() -> None:
    h = Harness(policy=Policy(secret_keys=(SECRET,), websocket=WebSocketPolicy(enabled=False)))
    conn = open_ws(h, None, origin="https://evil.test")
    # The app accepts the cross-site handshake (then fails: Starlette's WebSocket.session wants
    # a session nobody installed).
    assert (await conn.next())["type"] == "websocket.accept"
    conn.task.cancel()
    await asyncio.gather(conn.task, return_exceptions=True)
    assert not h.kinds(EventKind.WEBSOCKET_REFUSED)
