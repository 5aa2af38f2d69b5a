"""Login notices: a sign-in while the user is signed in elsewhere, a sign-in from a new device and
a change of credentials reach the application's hook (a :class:`CallbackSink`) with the user,
the session's handle, the client's address and user agent, and never a session ID or token.

Black box through the ASGI middleware on every store, each opened from its URL as an
application would, and through the Flask extension once: each "browser" keeps its cookie by
hand and has its own address and user agent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask, jsonify, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.core import Session
from sessionwarden.events import CallbackSink, Event, EventKind
from sessionwarden.integrations.flask import SessionWarden, csrf_token, current_session
from sessionwarden.policy import MonitorPolicy, Policy

from ..conftest import SECRET
from .conftest import EVERY_STORE, store_url_of

BASE = "https://app.test"
COOKIE = "__Host-id"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
FIREFOX_NEWER = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0 Safari/537.36"
)
HOME_IP, HOME_IP_2, AWAY_IP = "198.51.100.7", "198.51.100.23", "203.0.113.9"
NOTICES = (EventKind.CONCURRENT_LOGIN, EventKind.NEW_DEVICE, EventKind.CREDENTIALS_CHANGED)
_SET = re.compile(rf"{COOKIE}=([^;]*)")
BASE_POLICY = Policy(secret_keys=(SECRET,), allowed_hosts=("app.test",))
POLICY = replace(BASE_POLICY, monitor=MonitorPolicy(notify_logins=True))


def _act(session: Session, path: str) -> None:
    if path == "/login":
        session.login("alice")
    elif path == "/password":
        session.credentials_changed()
    elif path == "/logout":
        session.logout()


def _asgi(url: str, hook: CallbackSink, clock: ManualClock, policy: Policy) -> Any:
    async def page(request: Request) -> JSONResponse:
        session = get_session(request)
        if request.method == "POST":
            _act(session, request.url.path)
        token = request.state.csrf_token() if request.url.path == "/token" else None
        return JSONResponse({"user": session.user_id, "token": token, "ref": session.ref})

    routes = [Route(p, page, methods=["GET", "POST"]) for p in ("/", "/token")]
    routes += [Route(p, page, methods=["POST"]) for p in ("/login", "/password", "/logout")]
    return SessionWardenMiddleware(
        Starlette(routes=routes), policy=policy, store=url, sink=hook, clock=clock
    )


def _flask(url: str, hook: CallbackSink, clock: ManualClock, policy: Policy) -> Any:
    app = Flask(__name__)

    @app.route("/", methods=["GET", "POST"])
    @app.route("/token")
    @app.route("/login", methods=["POST"])
    @app.route("/password", methods=["POST"])
    @app.route("/logout", methods=["POST"])
    def page() -> Any:
        session = current_session()
        if request.method == "POST":
            _act(session, request.path)
        token = csrf_token() if request.path == "/token" else None
        return jsonify({"user": session.user_id, "token": token, "ref": session.ref})

    SessionWarden(app, policy=policy, store=url, sink=hook, clock=clock)
    return app


class Browser:
    """One cookie jar, from one address with one user agent. Remembers every session ID and
    CSRF token it was given, to look for them where they must not be."""

    def __init__(self, app: Any, ip: str, ua: str) -> None:
        self.app, self.ip, self.ua = app, ip, ua
        self.sid: str | None = None
        self.secrets: list[str] = []

    async def send(self, method: str, path: str) -> Any:
        headers = {"user-agent": self.ua, "origin": BASE}
        if method == "POST":
            token = (await self.send("GET", "/token"))["token"]
            self.secrets.append(token)
            headers["x-csrf-token"] = token
        if self.sid is not None:
            headers["cookie"] = f"{COOKIE}={self.sid}"
        if isinstance(self.app, Flask):
            transport: Any = httpx.WSGITransport(app=self.app, remote_addr=self.ip)
            with httpx.Client(transport=transport, base_url=BASE) as c:
                response = c.request(method, path, headers=headers)
        else:
            transport = httpx.ASGITransport(app=self.app, client=(self.ip, 50000))
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                response = await client.request(method, path, headers=headers)
        assert response.status_code == 200, response.text
        for value in response.headers.get_list("set-cookie"):
            m = _SET.match(value)
            if m is not None:
                self.sid = m.group(1) or None
                if self.sid:
                    self.secrets.append(self.sid)
        return response.json()

    async def sign_in(self) -> str:
        """Signs in as alice; the new session's handle."""
        assert (await self.send("POST", "/login"))["user"] == "alice"
        return await self.ref()

    async def ref(self) -> str:
        """The handle of the session this browser holds now, as the application sees it."""
        body = await self.send("GET", "/")
        assert body["ref"]
        return str(body["ref"])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=EVERY_STORE)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from store_url_of(request.param, tmp_path)


Rig = tuple[Callable[[str, str], Browser], list[Event], ManualClock]


def _rig(make: Any, url: str, policy: Policy) -> tuple[Rig, Any]:
    events: list[Event] = []
    clock = ManualClock()
    app = make(url, CallbackSink(events.append), clock, policy)
    return (lambda ip, ua: Browser(app, ip, ua), events, clock), app


async def _close(app: Any) -> None:
    closed = app.store.close() if isinstance(app, SessionWardenMiddleware) else None
    if closed is not None:
        await closed


@pytest.fixture
async def rig(store_url: str) -> Any:
    made, app = _rig(_asgi, store_url, POLICY)
    yield made
    await _close(app)


pytestmark = pytest.mark.anyio


def _of(events: list[Event], kind: EventKind) -> list[Event]:
    return [e for e in events if e.kind is kind]


def _assert_no_secret(events: list[Event], *browsers: Browser) -> None:
    """No session ID or CSRF token any browser was given appears in any field of a notice."""
    for event in events:
        if event.kind not in NOTICES:
            continue
        text = json.dumps(event.to_dict())
        for b in browsers:
            for secret in b.secrets:
                assert secret not in text, (event.kind, secret)


async def _concurrent_login_from_a_new_device(rig: Rig) -> None:
    new, events, _ = rig
    laptop = new(HOME_IP, FIREFOX)
    await laptop.sign_in()
    assert not [e for e in events if e.kind in NOTICES]  # the only session: nothing to tell

    phone = new(AWAY_IP, CHROME)
    ref = await phone.sign_in()
    [concurrent] = _of(events, EventKind.CONCURRENT_LOGIN)
    [device] = _of(events, EventKind.NEW_DEVICE)
    [logged_in] = [e for e in _of(events, EventKind.LOGGED_IN) if e.ref == ref]
    for event in (concurrent, device):
        assert event.session == logged_in.session != ""  # the same session's correlation
        assert event.user_id == "alice"
        assert event.ref == ref  # the handle of the new session, as the app sees it
        assert event.client_ip == AWAY_IP
        assert event.user_agent == CHROME
    assert concurrent.detail == {"others": 1}
    assert device.detail == {"others": 1, "browser": "Chrome"}
    assert laptop.secrets and phone.secrets
    _assert_no_secret(events, laptop, phone)


async def test_a_sign_in_while_signed_in_elsewhere_reaches_the_hook(rig: Rig) -> None:
    await _concurrent_login_from_a_new_device(rig)


async def test_same_browser_on_the_same_network_is_concurrent_but_no_new_device(
    rig: Rig,
) -> None:
    """Another address in the same /24 and a newer version of the same browser: the same
    device as far as the notice goes, but still a second live session."""
    new, events, _ = rig
    await new(HOME_IP, FIREFOX).sign_in()
    again = new(HOME_IP_2, FIREFOX_NEWER)
    ref = await again.sign_in()
    [concurrent] = _of(events, EventKind.CONCURRENT_LOGIN)
    assert concurrent.ref == ref and concurrent.client_ip == HOME_IP_2
    assert not _of(events, EventKind.NEW_DEVICE)


async def test_an_expired_or_signed_out_session_is_no_concurrent_login(rig: Rig) -> None:
    new, events, clock = rig
    await new(HOME_IP, FIREFOX).sign_in()
    clock.advance(POLICY.idle_timeout + 1)  # the laptop's session ends idle
    phone = new(AWAY_IP, CHROME)
    await phone.sign_in()
    assert not _of(events, EventKind.CONCURRENT_LOGIN)
    assert not _of(events, EventKind.NEW_DEVICE)
    await phone.send("POST", "/logout")
    await new(AWAY_IP, CHROME).sign_in()  # the phone signed out first
    assert not _of(events, EventKind.CONCURRENT_LOGIN)


async def test_a_credential_change_reaches_the_hook_and_ends_the_other_sessions(
    rig: Rig,
) -> None:
    new, events, _ = rig
    laptop = new(HOME_IP, FIREFOX)
    await laptop.sign_in()
    phone = new(AWAY_IP, CHROME)
    await phone.sign_in()
    body = await phone.send("POST", "/password")
    assert body["user"] == "alice"
    [changed] = _of(events, EventKind.CREDENTIALS_CHANGED)
    assert changed.user_id == "alice"
    assert changed.ref == await phone.ref()  # the session it was made in, under its new ID
    assert changed.client_ip == AWAY_IP and changed.user_agent == CHROME
    assert changed.detail == {"ended": 1}
    assert (await laptop.send("GET", "/"))["user"] is None  # the other session ended
    assert (await phone.send("GET", "/"))["user"] == "alice"
    _assert_no_secret(events, laptop, phone)


async def test_off_by_default(store_url: str) -> None:
    """Without ``notify_logins`` a concurrent sign-in is only ``session.logged_in``; a
    credential change is reported all the same (it costs no store call)."""
    (new, events, _), app = _rig(_asgi, store_url, BASE_POLICY)
    try:
        await new(HOME_IP, FIREFOX).sign_in()
        phone = new(AWAY_IP, CHROME)
        await phone.sign_in()
        assert len(_of(events, EventKind.LOGGED_IN)) == 2
        assert not _of(events, EventKind.CONCURRENT_LOGIN)
        assert not _of(events, EventKind.NEW_DEVICE)
        await phone.send("POST", "/password")
        assert len(_of(events, EventKind.CREDENTIALS_CHANGED)) == 1
    finally:
        await _close(app)


async def test_flask_reaches_the_hook_too() -> None:
    made, _ = _rig(_flask, "memory://", POLICY)
    await _concurrent_login_from_a_new_device(made)
    new, events, _ = made
    phone = new(AWAY_IP, CHROME)
    await phone.sign_in()
    await phone.send("POST", "/password")
    [changed] = _of(events, EventKind.CREDENTIALS_CHANGED)
    assert changed.ref == await phone.ref() and changed.user_id == "alice"
    assert changed.client_ip == AWAY_IP and changed.user_agent == CHROME
    assert changed.detail == {"ended": 2}
    _assert_no_secret(events, phone)
