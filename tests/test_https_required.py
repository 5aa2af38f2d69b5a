"""A sign-in over plain HTTP (``https.redirect`` off, a public host): ``login()`` raises
``HttpsRequired``, which is not a re-authentication. Every adapter path answers it alike: 403
``https-required`` to JSON clients and browsers, through ``render_refusal`` when the app has one,
never a redirect (not even with a sign-in page configured) and never a cookie; and an app that
answers ``ReauthenticationRequired`` by sending the user to its sign-in page no longer catches it.
"""

from __future__ import annotations

import html
from typing import Any

import httpx
import pytest
from flask import Flask, redirect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

import sessionwarden
from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.core import HttpsRequired, ReauthenticationRequired
from sessionwarden.guard import Refusal, RefusalRenderer, RenderedRefusal, RequestContext
from sessionwarden.integrations.flask import SessionWarden, current_session
from sessionwarden.policy import CsrfPolicy, HttpsPolicy, Policy
from sessionwarden.stores import InlineAsyncStore, MemoryStore

from .conftest import SECRET

PLAIN = "http://app.test"
#: Plain HTTP served without a session, and no token needed: the sign-in reaches the app.
POLICY = Policy(
    secret_keys=(SECRET,),
    allowed_hosts=("app.test",),
    https=HttpsPolicy(redirect=False, refuse_json=False),
    csrf=CsrfPolicy(require_token=False),
)
SAME_ORIGIN = {"sec-fetch-site": "same-origin"}
JSON = {**SAME_ORIGIN, "accept": "application/json"}
BROWSER = {**SAME_ORIGIN, "accept": "text/html"}
#: ASGI installs: Starlette wrapped (the handler the middleware registers answers), a bare ASGI
#: app (the middleware's own ``except`` answers); and Flask over WSGI.
KINDS = ("starlette", "bare-asgi", "flask")

pytestmark = pytest.mark.anyio
seen: list[tuple[int, str, str]] = []


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def styled(refusal: Refusal, ctx: RequestContext) -> RenderedRefusal | None:
    seen.append((refusal.status, refusal.error, refusal.reason))
    if ctx.facts.wants_json:
        return None
    return RenderedRefusal(f"<h1>{refusal.status}</h1><p>{html.escape(refusal.message)}")


def _starlette() -> Starlette:
    async def login(request: Request) -> Response:
        get_session(request).login("alice")
        return PlainTextResponse("signed in")

    async def login_or_sign_in_page(request: Request) -> Response:
        try:
            get_session(request).login("alice")
        except ReauthenticationRequired:  # what an app does to send people to sign in
            return RedirectResponse("/signin", 303)
        return PlainTextResponse("signed in")

    return Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/login-or-sign-in", login_or_sign_in_page, methods=["POST"]),
        ]
    )


async def _bare(scope: Any, receive: Any, send: Any) -> None:
    """No framework: the exception reaches the middleware itself."""
    session = scope["session"]
    try:
        session.login("alice")
    except ReauthenticationRequired:
        if scope["path"] != "/login-or-sign-in":
            raise
        headers = [(b"location", b"/signin")]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"signed in"})


def _flask(hook: RefusalRenderer | None, reauth_redirect: str | None) -> Flask:
    app = Flask(__name__)

    @app.post("/login")
    def login() -> str:
        current_session().login("alice")
        return "signed in"

    @app.post("/login-or-sign-in")
    def login_or_sign_in_page() -> Any:
        try:
            current_session().login("alice")
        except ReauthenticationRequired:
            return redirect("/signin", 303)
        return "signed in"

    SessionWarden(
        app,
        policy=POLICY,
        store=MemoryStore(),
        clock=ManualClock(),
        render_refusal=hook,
        reauth_redirect=reauth_redirect,
    )
    return app


async def post(
    kind: str,
    path: str,
    headers: dict[str, str],
    *,
    hook: RefusalRenderer | None = None,
    reauth_redirect: str | None = None,
) -> httpx.Response:
    if kind == "flask":
        transport = httpx.WSGITransport(app=_flask(hook, reauth_redirect))
        with httpx.Client(transport=transport, base_url=PLAIN) as c:
            return c.post(path, headers=headers)
    app = SessionWardenMiddleware(
        _starlette() if kind == "starlette" else _bare,
        policy=POLICY,
        store=InlineAsyncStore(MemoryStore()),
        clock=ManualClock(),
        render_refusal=hook,
        reauth_redirect=reauth_redirect,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PLAIN) as c:
        return await c.post(path, headers=headers)


def test_it_is_its_own_exception_still_exported() -> None:
    assert sessionwarden.HttpsRequired is HttpsRequired
    assert not issubclass(HttpsRequired, ReauthenticationRequired)
    assert HttpsRequired().reason == "plain-http"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reauth_redirect", [None, "/signin"])
async def test_a_sign_in_over_plain_http_is_403_for_every_client(
    kind: str, reauth_redirect: str | None
) -> None:
    api = await post(kind, "/login", JSON, reauth_redirect=reauth_redirect)
    assert api.status_code == 403
    assert api.json() == {"error": "https-required", "reason": "plain-http"}
    page = await post(kind, "/login", BROWSER, reauth_redirect=reauth_redirect)
    assert page.status_code == 403
    assert page.text == "403 Forbidden\nThis site is only served over HTTPS.\n"
    for r in (api, page):
        assert "location" not in r.headers and "set-cookie" not in r.headers
        assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("kind", KINDS)
async def test_the_403_goes_through_render_refusal(kind: str) -> None:
    seen.clear()
    page = await post(kind, "/login", BROWSER, hook=styled, reauth_redirect="/signin")
    assert page.status_code == 403
    assert page.text == "<h1>403</h1><p>This site is only served over HTTPS."
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    api = await post(kind, "/login", JSON, hook=styled)
    assert api.json() == {"error": "https-required", "reason": "plain-http"}
    assert seen == [(403, "https-required", "plain-http")] * 2


@pytest.mark.parametrize("kind", KINDS)
async def test_an_app_sending_re_authentications_to_its_sign_in_page_does_not_catch_it(
    kind: str,
) -> None:
    """Sending the user to sign in again over plain HTTP would only fail the same way: the
    app's handler for re-authentication is passed by, and the adapter answers the 403."""
    for headers in (JSON, BROWSER):
        r = await post(kind, "/login-or-sign-in", headers, reauth_redirect="/signin")
        assert r.status_code == 403, (kind, headers, r.status_code)
        assert "location" not in r.headers and "set-cookie" not in r.headers
