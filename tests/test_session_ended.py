"""Why was I signed out?: the request presenting an ended session's ID learns why, on both
adapters and every store; a client presenting an ID it never held learns nothing.

The ASGI app is Starlette behind :class:`SessionWardenMiddleware` (``request.state`` and
``get_context``); the WSGI app is Flask with the :class:`SessionWarden` extension (the environ key
and ``current_context()``). Both read the same store, so each reason is written by the library's
own paths (logout, revocation, the risk check, the per-user cap, rotation, the clock).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, jsonify, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sessionwarden import tokens
from sessionwarden.asgi import SessionWardenMiddleware, get_context, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.core import ENDED_REASONS, Engine, Session, ended_reason, run_sync
from sessionwarden.integrations.flask import SessionWarden, current_context, current_session
from sessionwarden.policy import Policy
from sessionwarden.stores import InlineAsyncStore, SessionStore

from .conftest import SECRET

BASE = "https://app.test"
COOKIE = "__Host-id"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0"
OTHER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IDLE, ABSOLUTE = 600.0, 3600.0
_SET = re.compile(rf"{COOKIE}=([^;]*)")


def _act(session: Session, action: str | None, user: str | None) -> None:
    """What each test endpoint does to the session (the same for both apps)."""
    if action == "login":
        session.login(user or "alice")
    elif action == "logout":
        session.logout()
    elif action == "revoke-others":
        session.revoke_other_sessions()
    elif action == "password":
        session.credentials_changed()
    elif action == "touch":
        session["n"] = int(session.get("n") or 0) + 1  # type: ignore[arg-type]


def asgi_app(store: SessionStore, policy: Policy, clock: ManualClock) -> Any:
    async def endpoint(request: Request) -> JSONResponse:
        session = get_session(request)
        ended = request.state.session_ended
        _act(session, request.query_params.get("do"), request.query_params.get("user"))
        return JSONResponse(
            {"ended": ended, "ctx": get_context(request).session_ended, "user": session.user_id}
        )

    inner = Starlette(routes=[Route("/", endpoint)])
    return SessionWardenMiddleware(inner, policy=policy, store=InlineAsyncStore(store), clock=clock)


def wsgi_app(store: SessionStore, policy: Policy, clock: ManualClock) -> Any:
    app = Flask(__name__)

    @app.get("/")
    def endpoint() -> Any:
        session = current_session()
        ended = request.environ["sessionwarden.session_ended"]
        _act(session, request.args.get("do"), request.args.get("user"))
        return jsonify(
            {"ended": ended, "ctx": current_context().session_ended, "user": session.user_id}
        )

    SessionWarden(app, policy=policy, store=store, clock=clock)
    return app


class Browser:
    """One cookie jar: the session cookie is read from Set-Cookie and sent back by hand (the
    tests copy it between "devices")."""

    def __init__(self, kind: str, app: Any, ua: str = UA) -> None:
        self.kind = kind
        self.app = app
        self.ua = ua
        self.sid: str | None = None
        self.last: httpx.Response | None = None

    async def get(self, do: str | None = None, *, user: str = "alice") -> dict[str, Any]:
        params = {"do": do, "user": user} if do else {}
        headers = {"user-agent": self.ua}
        if self.sid is not None:
            headers["cookie"] = f"{COOKIE}={self.sid}"
        if self.kind == "asgi":
            transport: Any = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                response = await client.get("/", params=params, headers=headers)
        else:
            with httpx.Client(transport=httpx.WSGITransport(app=self.app), base_url=BASE) as c:
                response = c.get("/", params=params, headers=headers)
        assert response.status_code == 200, response.text
        self.last = response
        for value in response.headers.get_list("set-cookie"):
            m = _SET.match(value)
            if m is not None:
                self.sid = m.group(1) or None
        body: dict[str, Any] = response.json()
        assert body["ended"] == body["ctx"]  # the state/environ value and the accessor agree
        return body

    def copy(self, ua: str | None = None) -> Browser:
        twin = Browser(self.kind, self.app, ua or self.ua)
        twin.sid = self.sid
        return twin


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["asgi", "wsgi"])
def make(request: pytest.FixtureRequest, store: SessionStore, clock: ManualClock) -> Iterator[Any]:
    """``make(**policy_changes)``: a browser factory on a fresh app over ``store``."""
    kind: str = request.param

    def build(**changes: Any) -> Any:
        policy = Policy(
            secret_keys=(SECRET,),
            idle_timeout=IDLE,
            absolute_timeout=ABSOLUTE,
            allowed_hosts=("app.test",),
            **changes,
        )
        factory = asgi_app if kind == "asgi" else wsgi_app
        app = factory(store, policy, clock)
        return lambda ua=UA: Browser(kind, app, ua)

    yield build


pytestmark = pytest.mark.anyio


async def _signed_in(new: Any) -> Browser:
    b = new()
    assert (await b.get("login"))["user"] == "alice"
    assert b.sid is not None
    return b


async def test_live_and_absent_sessions_have_no_reason(make: Any) -> None:
    new = make()
    b = new()
    assert (await b.get())["ended"] is None  # no cookie
    await b.get("login")
    assert (await b.get())["ended"] is None  # a live session
    assert (await b.get())["user"] == "alice"


async def test_idle_timeout(make: Any, clock: ManualClock) -> None:
    b = await _signed_in(make())
    tabs = [b.copy(), b.copy()]
    clock.advance(IDLE + 1)
    body = await b.get()
    assert body == {"ended": "idle", "ctx": "idle", "user": None}
    assert b.sid is None  # the cookie was cleared with the reason
    # The request that found the expiry left a tombstone of it: every other request on the
    # same ID (a second tab, a live connection's handshake) learns the reason too.
    for tab in tabs:
        assert await tab.get() == {"ended": "idle", "ctx": "idle", "user": None}
        assert tab.sid is None


async def test_the_reason_of_an_expiry_is_kept_for_one_idle_timeout(
    make: Any, clock: ManualClock
) -> None:
    b = await _signed_in(make())
    tabs = [b.copy(), b.copy()]
    clock.advance(IDLE + 1)
    assert (await b.get())["ended"] == "idle"
    clock.advance(IDLE - 2)
    assert (await tabs[0].get())["ended"] == "idle"
    clock.advance(2)
    # Then the ID is unknown again (a short-lived tombstone: an expiry is no theft to report).
    assert (await tabs[1].get()) == {"ended": None, "ctx": None, "user": None}


async def test_absolute_timeout(make: Any, clock: ManualClock) -> None:
    b = await _signed_in(make(rotate_every=0))
    other_tab = b.copy()
    for _ in range(int(ABSOLUTE // (IDLE / 2)) + 1):
        clock.advance(IDLE / 2)
        body = await b.get("touch")
        if body["ended"] is not None:
            break
    assert body["ended"] == "absolute"
    assert body["user"] is None
    assert await other_tab.get() == {"ended": "absolute", "ctx": "absolute", "user": None}


async def test_an_expired_id_is_never_revived(make: Any, clock: ManualClock) -> None:
    """A write, a login or a rotation on the tombstone of an expiry gets a new session, never
    the old one back."""
    b = await _signed_in(make())
    copies = [b.copy() for _ in range(4)]
    old = b.sid
    clock.advance(IDLE + 1)
    assert (await b.get())["ended"] == "idle"
    for copy, action in zip(copies, ("touch", "login", "revoke-others"), strict=False):
        body = await copy.get(action)
        assert body["ended"] == "idle"
        assert copy.sid != old
    assert (await copies[-1].get())["ended"] == "idle"  # the old ID: still ended


async def test_signed_out(make: Any) -> None:
    b = await _signed_in(make())
    copy = b.copy()
    await b.get("logout")
    assert b.sid is None
    assert (await copy.get())["ended"] == "signed-out"


async def test_revoked_by_the_user_from_another_device(make: Any) -> None:
    new = make()
    phone = await _signed_in(new)
    laptop = await _signed_in(new)
    await laptop.get("revoke-others")
    assert (await phone.get())["ended"] == "revoked-by-user"
    assert (await laptop.get())["ended"] is None


async def test_revoked_by_an_operator(make: Any, store: SessionStore, clock: ManualClock) -> None:
    b = await _signed_in(make())
    policy = Policy(secret_keys=(SECRET,), idle_timeout=IDLE, absolute_timeout=ABSOLUTE)
    ended = run_sync(Engine(policy, clock=clock).revoke_user("alice", by="admin"), store)
    assert len(ended) == 1
    assert (await b.get())["ended"] == "revoked-by-admin"


async def test_revoked_as_suspicious(make: Any) -> None:
    b = await _signed_in(make())
    thief = b.copy(ua=OTHER_UA)
    # The request that trips the risk check learns it, and so does the owner's next one.
    assert (await thief.get())["ended"] == "revoked-suspicious"
    assert (await b.get())["ended"] == "revoked-suspicious"


async def test_credentials_changed(make: Any) -> None:
    new = make()
    other = await _signed_in(new)
    here = await _signed_in(new)
    await here.get("password")
    assert (await other.get())["ended"] == "credentials-changed"


async def test_evicted_over_the_per_user_cap(make: Any) -> None:
    new = make(max_sessions_per_user=1)
    first = await _signed_in(new)
    await _signed_in(new)
    assert (await first.get())["ended"] == "evicted"


async def test_replaced_at_login_keeps_the_cookie(make: Any) -> None:
    b = make()()
    await b.get("touch")  # an anonymous session with an ID
    anonymous = b.copy()
    await b.get("login")
    assert b.sid != anonymous.sid
    body = await anonymous.get()
    assert body["ended"] == "replaced"
    # The ID replaced at login is not cleared: the browser already holds the new one.
    assert anonymous.last is not None
    assert not anonymous.last.headers.get_list("set-cookie")


async def test_forged_unknown_and_malformed_ids_learn_nothing(make: Any) -> None:
    b = await _signed_in(make())
    copy = b.copy()
    await b.get("logout")
    assert (await copy.get())["ended"] == "signed-out"
    for forged in (
        tokens.new_session_id(),  # well formed, never issued
        (copy.sid or "")[:-1] + ("A" if (copy.sid or "").endswith("B") else "B"),  # one char off
        "not-a-session-id",
        "",
    ):
        stranger = copy.copy()
        stranger.sid = forged
        assert (await stranger.get())["ended"] is None, forged


def test_the_vocabulary_is_closed() -> None:
    """Every tombstone reason the library writes maps into the documented vocabulary."""
    written = [
        "logout",
        "revoked:user",
        "revoked:admin",
        "revoked:cli",
        "user:revoke-others",
        "policy:credential-change",
        "policy:replay-of-rotated-id",
        "anomaly",
        "cookie-tossing",
        "evicted",
        "rotated:login",
        "rotated:privilege",
        "something-else",
    ]
    got = {r: ended_reason(r) for r in written}
    assert set(got.values()) <= set(ENDED_REASONS)
    assert got["revoked:user"] == got["user:revoke-others"] == "revoked-by-user"
    assert got["revoked:admin"] == got["revoked:cli"] == "revoked-by-admin"
    assert got["rotated:login"] == got["rotated:privilege"] == "replaced"
    assert got["something-else"] == "revoked"
