"""Re-authentication after a risk event (OWASP Session Management cheat sheet, "Reauthentication
After Risk Events"; ASVS 5 8.2.4), seen from the outside through both adapters (Starlette over
ASGI, Flask over WSGI): a signed-in browser behind a trusted proxy changes its address (the
proxy's X-Forwarded-For) and its browser (User-Agent). With ``on_high="step_up"`` every request
of that session is refused with ``reauth_required`` (401, or 303 to the sign-in page for a
browser when one is configured) except the sign-in and sign-out paths, until the user signs in
again; ``"log"`` lets it through and ``"revoke"`` ends it. Each client keeps its cookies in its
own httpx cookie jar; only statuses, bodies, headers and audit events are asserted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from flask import Flask, jsonify
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.events import EventKind
from sessionwarden.integrations.flask import SessionWarden, current_context, current_session
from sessionwarden.policy import Action, HttpsPolicy, MonitorPolicy, Policy
from sessionwarden.stores import InlineAsyncStore, MemoryStore

from .conftest import SECRET, Recorder

pytestmark = pytest.mark.anyio
ADAPTERS = pytest.mark.parametrize("kind", ["asgi", "wsgi"])
BASE = "https://app.test"
PROXY = "10.0.0.1"
HOME, ELSEWHERE = "198.51.100.7", "203.0.113.50"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
JSON_ACCEPT = {"accept": "application/json"}
NAVIGATION = {"accept": "text/html", "sec-fetch-mode": "navigate", "sec-fetch-site": "none"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _starlette() -> Starlette:
    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"user": get_session(request).user_id})

    async def token(request: Request) -> JSONResponse:
        return JSONResponse({"csrf_token": request.state.csrf_token()})

    async def login(request: Request) -> JSONResponse:
        get_session(request).login("alice")
        return JSONResponse({"ok": True})

    async def reauth(request: Request) -> JSONResponse:
        if request.method == "POST":  # the password checked again
            get_session(request).reauthenticated()
        return JSONResponse({"csrf_token": request.state.csrf_token()})

    async def logout(request: Request) -> JSONResponse:
        get_session(request).logout()
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/whoami", whoami),
            Route("/token", token),
            Route("/login", login, methods=["POST"]),
            Route("/reauth", reauth, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["POST"]),
        ]
    )


def _flask() -> Flask:
    app = Flask(__name__)

    def whoami() -> Any:
        return jsonify(user=current_session().user_id)

    def token() -> Any:
        return jsonify(csrf_token=current_context().csrf_token())

    def login() -> Any:
        current_session().login("alice")
        return jsonify(ok=True)

    def reauth() -> Any:
        from flask import request

        if request.method == "POST":
            current_session().reauthenticated()
        return jsonify(csrf_token=current_context().csrf_token())

    def logout() -> Any:
        current_session().logout()
        return jsonify(ok=True)

    app.add_url_rule("/whoami", "whoami", whoami)
    app.add_url_rule("/token", "token", token)
    app.add_url_rule("/login", "login", login, methods=["POST"])
    app.add_url_rule("/reauth", "reauth", reauth, methods=["GET", "POST"])
    app.add_url_rule("/logout", "logout", logout, methods=["POST"])
    return app


@dataclass
class Browser:
    """One browser behind the trusted proxy: the address the proxy forwards, its User-Agent
    and its own cookie jar."""

    http: httpx.Client | httpx.AsyncClient
    ip: str = HOME
    ua: str = FIREFOX

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        sent = {"x-forwarded-for": self.ip, "user-agent": self.ua, **(headers or {})}
        if isinstance(self.http, httpx.AsyncClient):
            return await self.http.request(method, path, headers=sent)
        return self.http.request(method, path, headers=sent)

    async def post(self, path: str, token: str) -> httpx.Response:
        return await self.request(
            "POST", path, {"x-csrf-token": token, "sec-fetch-site": "same-origin", **JSON_ACCEPT}
        )

    async def login(self) -> None:
        token = (await self.request("GET", "/token")).json()["csrf_token"]
        assert (await self.post("/login", token)).status_code == 200

    async def whoami(self) -> httpx.Response:
        return await self.request("GET", "/whoami", JSON_ACCEPT)


class CountingStore:
    """The memory store, recording every method the adapters' engine calls on it."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kwargs)

        return counted


@dataclass
class Site:
    events: Recorder
    browser: Browser
    store: CountingStore
    clock: ManualClock
    closers: list[httpx.Client | httpx.AsyncClient] = field(default_factory=list)


@asynccontextmanager
async def site(
    kind: str, on_high: Action, *, reauth_redirect: str | None = None, **monitor: Any
) -> AsyncIterator[Site]:
    policy = Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("app.test",),
        https=HttpsPolicy(trusted_proxies=(PROXY,)),
        monitor=MonitorPolicy(on_high=on_high, **monitor),
    )
    clock, events, store = ManualClock(), Recorder(), CountingStore(MemoryStore())
    http: httpx.Client | httpx.AsyncClient
    if kind == "asgi":
        mw = SessionWardenMiddleware(
            _starlette(),
            policy=policy,
            store=InlineAsyncStore(store),
            clock=clock,
            sink=events,
            reauth_redirect=reauth_redirect,
        )
        transport = httpx.ASGITransport(app=mw, client=(PROXY, 50000))
        http = httpx.AsyncClient(transport=transport, base_url=BASE)
    else:
        app = _flask()
        SessionWarden(
            app,
            policy=policy,
            store=store,
            clock=clock,
            sink=events,
            reauth_redirect=reauth_redirect,
        )
        http = httpx.Client(
            transport=httpx.WSGITransport(app=app, remote_addr=PROXY), base_url=BASE
        )
    try:
        yield Site(events, Browser(http), store, clock)
    finally:
        if isinstance(http, httpx.AsyncClient):
            await http.aclose()
        else:
            http.close()


def _assert_reauth_required(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json() == {
        "error": "reauthentication-required",
        "reason": "step-up-required",
        "reauth_required": True,
    }
    assert r.headers["cache-control"] == "no-store"


@ADAPTERS
async def test_a_risky_change_refuses_every_request_until_the_user_signs_in_again(
    kind: str,
) -> None:
    async with site(kind, "step_up", reauth_paths=("/reauth", "/logout")) as s:
        b = s.browser
        await b.login()
        assert (await b.whoami()).json() == {"user": "alice"}
        b.ip, b.ua = ELSEWHERE, CHROME  # the cookie now comes from another network and browser
        _assert_reauth_required(await b.whoami())
        (anomaly,) = s.events.of(EventKind.ANOMALY)
        assert anomaly.user_id == "alice" and anomaly.detail["action"] == "step_up"
        assert "agent-changed" in anomaly.reason and anomaly.client_ip == ELSEWHERE
        assert s.events.count(EventKind.STEP_UP_REQUIRED) == 1
        # Not just the first request: every one, without a configured page a navigation too.
        _assert_reauth_required(await b.whoami())
        r = await b.request("GET", "/token", NAVIGATION)
        assert r.status_code == 401 and "csrf_token" not in r.text
        # A person is told to sign in again (not asked for a second factor).
        assert r.text == "401 Unauthorized\nPlease sign in again to continue.\n"
        # The sign-in page is reachable; signing in again there lifts the demand.
        page = await b.request("GET", "/reauth", JSON_ACCEPT)
        assert page.status_code == 200
        before = b.http.cookies.get("__Host-id")
        assert (await b.post("/reauth", page.json()["csrf_token"])).status_code == 200
        assert b.http.cookies.get("__Host-id") not in (None, before)  # a new ID
        assert (await b.whoami()).json() == {"user": "alice"}
        assert (await b.whoami()).json() == {"user": "alice"}  # this network is its own now


@ADAPTERS
async def test_a_flagged_session_is_refused_without_new_events_or_store_writes(kind: str) -> None:
    async with site(kind, "step_up") as s:
        b = s.browser
        await b.login()
        b.ip, b.ua = ELSEWHERE, CHROME
        _assert_reauth_required(await b.whoami())
        assert s.store.calls[-2:] == ["get", "update"]  # the flag, written once
        flagged = len(s.events.events)
        for _ in range(5):
            s.clock.advance(61.0)  # past the touch interval: not even a touch is written
            s.store.calls.clear()
            _assert_reauth_required(await b.whoami())
            assert s.store.calls == ["get"]
        assert s.events.count(EventKind.ANOMALY) == 1
        assert s.events.count(EventKind.STEP_UP_REQUIRED) == 1
        assert len(s.events.events) == flagged


@ADAPTERS
async def test_a_revoke_level_signal_still_ends_a_flagged_session(kind: str) -> None:
    async with site(kind, "revoke", on_low="step_up") as s:
        b = s.browser
        await b.login()
        b.ip = ELSEWHERE  # a new network, the same browser: low risk, a step-up
        _assert_reauth_required(await b.whoami())
        _assert_reauth_required(await b.whoami())
        assert s.events.count(EventKind.STEP_UP_REQUIRED) == 1
        b.ua = CHROME  # then another browser too: high risk, revoked although flagged
        assert (await b.whoami()).json() == {"user": None}
        (revoked,) = s.events.of(EventKind.REVOKED)
        assert revoked.user_id == "alice" and revoked.reason.startswith("policy:")
        assert [e.detail["action"] for e in s.events.of(EventKind.ANOMALY)] == ["step_up", "revoke"]
        b.ip, b.ua = HOME, FIREFOX  # going back does not bring it back
        assert (await b.whoami()).json() == {"user": None}


@ADAPTERS
async def test_a_browser_is_sent_to_the_sign_in_page_and_may_sign_out(kind: str) -> None:
    async with site(
        kind, "step_up", reauth_redirect="/reauth?next=/", reauth_paths=("/logout",)
    ) as s:
        b = s.browser
        await b.login()
        b.ip, b.ua = ELSEWHERE, CHROME
        r = await b.request("GET", "/whoami", NAVIGATION)
        assert r.status_code == 303 and r.headers["location"] == "/reauth?next=/"
        _assert_reauth_required(await b.whoami())  # an API call still gets 401 JSON
        # The redirect's own path needs no listing; sign-out is listed.
        page = await b.request("GET", "/reauth", NAVIGATION)
        assert page.status_code == 200
        assert (await b.post("/logout", page.json()["csrf_token"])).status_code == 200
        assert (await b.whoami()).json() == {"user": None}


@ADAPTERS
async def test_log_lets_the_changed_session_through(kind: str) -> None:
    async with site(kind, "log") as s:
        b = s.browser
        await b.login()
        b.ip, b.ua = ELSEWHERE, CHROME
        assert (await b.whoami()).json() == {"user": "alice"}
        assert (await b.whoami()).json() == {"user": "alice"}
        assert s.events.of(EventKind.ANOMALY)[0].detail["action"] == "log"
        assert not s.events.of(EventKind.STEP_UP_REQUIRED)


@ADAPTERS
async def test_revoke_ends_the_changed_session(kind: str) -> None:
    async with site(kind, "revoke") as s:
        b = s.browser
        await b.login()
        b.ip, b.ua = ELSEWHERE, CHROME
        assert (await b.whoami()).json() == {"user": None}
        assert s.events.of(EventKind.REVOKED)
        b.ip, b.ua = HOME, FIREFOX  # going back does not bring it back
        assert (await b.whoami()).json() == {"user": None}


@ADAPTERS
async def test_a_new_network_alone_is_low_risk_and_only_logged(kind: str) -> None:
    async with site(kind, "step_up") as s:
        b = s.browser
        await b.login()
        b.ip = ELSEWHERE  # the same browser on another network: low risk (on_low="log")
        assert (await b.whoami()).json() == {"user": "alice"}
        assert s.events.of(EventKind.ANOMALY)[0].detail["action"] == "log"
        assert not s.events.of(EventKind.STEP_UP_REQUIRED)


def test_reauth_paths_must_be_paths() -> None:
    with pytest.raises(ValueError, match=r"monitor\.reauth_paths"):
        MonitorPolicy(reauth_paths=("login",))
