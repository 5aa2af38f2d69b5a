""" "Sign out other devices" after a suspected theft: the user's other sessions end AND this
browser's session ID is replaced in the same response, so a copy of the current cookie (the very
thing a thief holds) dies with them, at once (no grace window), while the user stays signed in.

Black box, on both adapters (Starlette behind :class:`SessionWardenMiddleware`, Flask with the
:class:`SessionWarden` extension) and every store, each opened from its URL as an application
would: each "browser" keeps its cookie by hand, and the thief's is a byte-for-byte copy of the
victim's (same network, same browser, so no risk rule notices it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
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
from sessionwarden.events import EventKind
from sessionwarden.integrations.flask import SessionWarden, csrf_token, current_session
from sessionwarden.policy import Policy

from ..conftest import (
    SECRET,
    Recorder,
    drop_prefix,
    postgres_store_url,
    redis_or_skip,
    unique_prefix,
)

BASE = "https://app.test"
COOKIE = "__Host-id"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0"
_SET = re.compile(rf"{COOKIE}=([^;]*)")
#: A long grace window for periodic rotation: "sign out other devices" must not grant one.
POLICY = Policy(
    secret_keys=(SECRET,), allowed_hosts=("app.test",), rotate_every=900.0, rotation_grace=60.0
)


def _act(session: Session, path: str, form_user: str | None) -> None:
    if path == "/login":
        session.login(form_user or "alice")
    elif path == "/note":
        session["note"] = "kept across the rotation"
    elif path == "/revoke-others":
        session.revoke_other_sessions()


def _asgi(url: str, sink: Recorder, clock: ManualClock) -> tuple[Any, Callable[[], Any]]:
    async def page(request: Request) -> JSONResponse:
        session = get_session(request)
        if request.method == "POST":
            form = await request.form()
            _act(session, request.url.path, str(form.get("user") or "") or None)
        return JSONResponse(
            {
                "user": session.user_id,
                "note": session.get("note"),
                "ended": request.state.session_ended,
                "token": request.state.csrf_token() if request.url.path == "/token" else None,
            }
        )

    routes = [Route(p, page, methods=["GET", "POST"]) for p in ("/", "/token", "/login", "/note")]
    routes.append(Route("/revoke-others", page, methods=["POST"]))
    inner = Starlette(routes=routes)
    mw = SessionWardenMiddleware(inner, policy=POLICY, store=url, sink=sink, clock=clock)
    return mw, mw.store.close


def _wsgi(url: str, sink: Recorder, clock: ManualClock) -> tuple[Any, Callable[[], Any]]:
    app = Flask(__name__)

    @app.route("/", methods=["GET", "POST"])
    @app.route("/token")
    @app.route("/login", methods=["POST"])
    @app.route("/note", methods=["POST"])
    @app.route("/revoke-others", methods=["POST"])
    def page() -> Any:
        session = current_session()
        if request.method == "POST":
            _act(session, request.path, request.form.get("user"))
        return jsonify(
            {
                "user": session.user_id,
                "note": session.get("note"),
                "ended": request.environ["sessionwarden.session_ended"],
                "token": csrf_token() if request.path == "/token" else None,
            }
        )

    warden = SessionWarden(app, policy=POLICY, store=url, sink=sink, clock=clock)
    return app, warden.middleware(app).store.close


class Browser:
    """One cookie jar on one app; :meth:`copy` is the thief's exfiltrated copy of it."""

    def __init__(self, kind: str, app: Any) -> None:
        self.kind = kind
        self.app = app
        self.sid: str | None = None
        self.cleared = False

    async def send(self, method: str, path: str, data: dict[str, str] | None = None) -> Any:
        headers = {"user-agent": UA, "origin": BASE}
        if self.sid is not None:
            headers["cookie"] = f"{COOKIE}={self.sid}"
        if method == "POST":
            headers["x-csrf-token"] = (await self.send("GET", "/token"))["token"]
            if self.sid is not None:
                headers["cookie"] = f"{COOKIE}={self.sid}"
        if self.kind == "asgi":
            transport: Any = httpx.ASGITransport(app=self.app, client=("198.51.100.7", 50000))
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                response = await client.request(method, path, data=data, headers=headers)
        else:
            transport = httpx.WSGITransport(app=self.app, remote_addr="198.51.100.7")
            with httpx.Client(transport=transport, base_url=BASE) as c:
                response = c.request(method, path, data=data, headers=headers)
        assert response.status_code == 200, response.text
        self.cleared = False
        for value in response.headers.get_list("set-cookie"):
            m = _SET.match(value)
            if m is not None:
                self.sid = m.group(1) or None
                self.cleared = self.sid is None
        return response.json()

    async def get(self) -> Any:
        return await self.send("GET", "/")

    def copy(self) -> Browser:
        twin = Browser(self.kind, self.app)
        twin.sid = self.sid
        return twin


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/sessions.db"
    elif request.param == "postgres":
        yield postgres_store_url()
    else:
        prefix = unique_prefix()
        yield f"{redis_or_skip()}?prefix={prefix}"
        drop_prefix(prefix)


@pytest.fixture(params=["asgi", "wsgi"])
async def rig(request: pytest.FixtureRequest, store_url: str) -> Any:
    sink, clock = Recorder(), ManualClock()
    app, close = (_asgi if request.param == "asgi" else _wsgi)(store_url, sink, clock)
    yield lambda: Browser(request.param, app), sink, clock
    closed = close()
    if closed is not None:
        await closed


pytestmark = pytest.mark.anyio


async def _signed_in(new: Callable[[], Browser], user: str = "alice") -> Browser:
    b = new()
    assert (await b.send("POST", "/login", {"user": user}))["user"] == user
    assert b.sid is not None
    return b


async def test_a_copy_of_this_browsers_cookie_dies_with_the_other_devices(rig: Any) -> None:
    new, sink, _ = rig
    victim = await _signed_in(new)
    await victim.send("POST", "/note")
    phone = await _signed_in(new)
    thief = victim.copy()
    assert (await thief.get())["user"] == "alice"  # the stolen copy works, until ...

    before = victim.sid
    body = await victim.send("POST", "/revoke-others")
    # ... the victim signs out the other devices: same response, new ID for this browser.
    assert body["user"] == "alice"
    assert victim.sid is not None and victim.sid != before

    stolen = await thief.get()
    assert stolen["user"] is None and stolen["note"] is None
    assert stolen["ended"] == "replaced"
    assert thief.cleared  # the dead cookie is cleared, not renewed
    assert (await phone.get())["user"] is None

    # The user stays signed in on this device, with the session's data.
    again = await victim.get()
    assert again["user"] == "alice" and again["note"] == "kept across the rotation"
    assert again["ended"] is None

    rotated = [e for e in sink.of(EventKind.ROTATED) if e.reason == "revoke-others"]
    assert len(rotated) == 1 and rotated[0].user_id == "alice"
    revoked = [e for e in sink.of(EventKind.REVOKED) if e.reason == "user:revoke-others"]
    assert len(revoked) == 1 and revoked[0].user_id == "alice"
    assert revoked[0].ref != rotated[0].ref  # the phone's session, not this one


async def test_the_old_id_gets_no_grace_window_and_cannot_act(rig: Any) -> None:
    """Periodic rotation lets the old ID reach the new one for ``rotation_grace`` seconds; this
    rotation must not: within that window the copy is already nobody, even for a write, and
    using it does not disturb the victim."""
    new, _, _ = rig
    victim = await _signed_in(new)
    thief = victim.copy()
    await victim.send("POST", "/revoke-others")
    assert victim.sid != thief.sid
    written = await thief.send("POST", "/note")  # a fresh anonymous session, not the victim's
    assert written["user"] is None
    assert thief.sid != victim.sid
    assert (await victim.get())["note"] is None  # the thief's write never reached the victim
    assert (await victim.get())["user"] == "alice"


async def test_repeated_sign_out_of_other_devices_keeps_the_user_signed_in(rig: Any) -> None:
    new, _, _ = rig
    victim = await _signed_in(new)
    seen = {victim.sid}
    for _ in range(3):
        assert (await victim.send("POST", "/revoke-others"))["user"] == "alice"
        assert victim.sid not in seen
        seen.add(victim.sid)
    assert (await victim.get())["user"] == "alice"


async def test_another_users_sessions_are_untouched(rig: Any) -> None:
    new, _, _ = rig
    alice = await _signed_in(new)
    bob = await _signed_in(new, "bob")
    bob_before = bob.sid
    await alice.send("POST", "/revoke-others")
    assert (await bob.get())["user"] == "bob"
    assert bob.sid == bob_before


async def test_on_a_rotated_out_id_it_signs_out_everywhere(rig: Any) -> None:
    """The thief's request came first when a periodic rotation was due, so the thief holds the
    current ID and the victim's browser the rotated-out one (inside its grace window). That
    request may not mint an ID, nor can it tell which holder is the owner: every session of the
    user ends, both copies and the other devices alike."""
    new, sink, clock = rig
    victim = await _signed_in(new)
    phone = await _signed_in(new)
    thief = victim.copy()
    clock.advance(POLICY.rotate_every + 1)
    assert (await thief.get())["user"] == "alice"
    assert thief.sid != victim.sid  # the thief's request rotated it; the victim's ID is an alias
    body = await victim.send("POST", "/revoke-others")
    assert body["user"] is None and victim.cleared
    for holder in (thief, phone, victim):
        assert (await holder.get())["user"] is None
    assert sink.of(EventKind.LOGGED_OUT)
