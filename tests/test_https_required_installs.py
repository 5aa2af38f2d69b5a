"""``HttpsRequired`` (a sign-in over plain HTTP) in the installs ``tests/test_https_required.py``
leaves out: FastAPI with the middleware added by ``add_middleware`` (the documented way) or
wrapped around the app, raised in a route or in a dependency; a plain WSGI app; and a Flask app
in debug mode with ``flask.session`` served by the library. Each answers the library's 403 (never
a 500, never a redirect to a sign-in page that would fail the same way), sets no cookie and is
``no-store``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from flask import Flask

from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.core import Session
from sessionwarden.integrations.flask import SessionWarden, current_session
from sessionwarden.stores import MemoryStore
from sessionwarden.wsgi import SessionWardenWSGI

from .test_https_required import BROWSER, JSON, PLAIN, POLICY

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _fastapi(install: str) -> Any:
    app = FastAPI()

    def signed_in(request: Request) -> Session:
        session = get_session(request)
        session.login("alice")
        return session

    def dependency(request: Request) -> Session:
        return signed_in(request)

    @app.post("/login")
    def login(request: Request) -> dict[str, str]:
        signed_in(request)
        return {"ok": "signed in"}

    @app.post("/login-dependency")
    def login_dependency(session: Session = Depends(dependency)) -> dict[str, str]:
        return {"ok": str(session.user_id)}

    options: dict[str, Any] = {
        "policy": POLICY,
        "store": "memory://",
        "clock": ManualClock(),
        "reauth_redirect": "/signin",
    }
    if install == "add_middleware":
        app.add_middleware(SessionWardenMiddleware, **options)
        return app
    return SessionWardenMiddleware(app, **options)


def _wsgi() -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ["sessionwarden.session"].login("alice")
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"signed in"]

    return SessionWardenWSGI(
        app, policy=POLICY, store=MemoryStore(), clock=ManualClock(), reauth_redirect="/signin"
    )


def _flask_debug_with_flask_session() -> Flask:
    app = Flask(__name__)
    app.debug = True

    @app.post("/login")
    def login() -> str:
        current_session().login("alice")
        return "signed in"

    SessionWarden(
        app,
        policy=POLICY,
        store=MemoryStore(),
        clock=ManualClock(),
        reauth_redirect="/signin",
        flask_session=True,
    )
    return app


def _assert_refused(r: httpx.Response, wants_json: bool) -> None:
    assert r.status_code == 403, (r.status_code, r.text)
    if wants_json:
        assert r.json() == {"error": "https-required", "reason": "plain-http"}
    else:
        assert "only served over HTTPS" in r.text
    assert "location" not in r.headers and "set-cookie" not in r.headers
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("install", ["add_middleware", "wrapped"])
@pytest.mark.parametrize("path", ["/login", "/login-dependency"])
async def test_fastapi(install: str, path: str) -> None:
    transport = httpx.ASGITransport(app=_fastapi(install))
    async with httpx.AsyncClient(transport=transport, base_url=PLAIN) as c:
        for headers, wants_json in ((JSON, True), (BROWSER, False)):
            _assert_refused(await c.post(path, headers=headers), wants_json)


@pytest.mark.parametrize("make", [_wsgi, _flask_debug_with_flask_session], ids=["wsgi", "flask"])
def test_wsgi_installs(make: Any) -> None:
    with httpx.Client(transport=httpx.WSGITransport(app=make()), base_url=PLAIN) as c:
        for headers, wants_json in ((JSON, True), (BROWSER, False)):
            _assert_refused(c.post("/login", headers=headers), wants_json)
