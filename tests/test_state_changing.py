"""State changes through unsafe methods only (ASVS 5 3.5.3): a GET, HEAD, OPTIONS or TRACE on a
state-changing route gets 405 with ``Allow`` and changes nothing; a POST goes on to the CSRF
check. Through the middleware's ``csrf.state_changing_paths`` (both adapters) and through each
integration's route guard."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from flask import Flask
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.integrations import fastapi as sw_fastapi
from sessionwarden.integrations import flask as sw_flask
from sessionwarden.integrations import starlette as sw_starlette
from sessionwarden.policy import CsrfPolicy, Policy
from sessionwarden.stores import MemoryStore

from .conftest import SECRET
from .two_adapters import KINDS, client

pytestmark = pytest.mark.anyio
ADAPTERS = pytest.mark.parametrize("kind", KINDS)
SAFE = ("GET", "HEAD", "OPTIONS", "TRACE")
BASE = "https://app.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _policy(paths: tuple[str, ...] = ()) -> Policy:
    csrf = CsrfPolicy(state_changing_paths=paths)
    return Policy(secret_keys=(SECRET,), allowed_hosts=("app.test",), csrf=csrf)


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 405
    assert response.headers["allow"] == "POST, PUT, PATCH, DELETE"
    assert "set-cookie" not in response.headers


# -- the middleware: csrf.state_changing_paths -----------------------------------------------------


@ADAPTERS
@pytest.mark.parametrize("method", SAFE)
async def test_a_safe_method_on_a_state_changing_path_is_refused_before_the_session(
    kind: str, method: str
) -> None:
    # /poll reads and renews the session; named here, it is never reached by a safe method.
    with client(kind, _policy(("/poll", "/transfer")), base=BASE) as c:
        await c.login()
        before = c.store.user_sessions("alice")
        c.clock.advance(600)  # a request that reached the session would renew it
        r = await c.request(method, "/poll", headers={"accept": "application/json"})
        _refused(r)
        if method != "HEAD":
            assert r.json() == {"error": "method-not-allowed", "reason": "state-changing-route"}
        assert c.store.user_sessions("alice") == before
        # Elsewhere the session is read (and renewed) as always.
        assert (await c.request("GET", "/whoami")).json() == {"user": "alice"}
        assert c.store.user_sessions("alice") != before


@ADAPTERS
async def test_a_post_to_a_state_changing_path_goes_on_to_the_csrf_check(kind: str) -> None:
    with client(kind, _policy(("/transfer",)), base=BASE) as c:
        await c.login()
        forged = await c.request("POST", "/transfer", headers={"sec-fetch-site": "cross-site"})
        assert forged.status_code == 403
        token = await c.token()
        headers = {"sec-fetch-site": "same-origin", "x-csrf-token": token}
        done = await c.request("POST", "/transfer", headers=headers)
        assert (done.status_code, done.text) == (200, "transfer done")


@ADAPTERS
async def test_other_paths_are_not_affected(kind: str) -> None:
    with client(kind, _policy(("/transfer",)), base=BASE) as c:
        assert (await c.request("GET", "/whoami")).status_code == 200
        assert (await c.request("GET", "/transferx")).status_code == 404


def test_the_paths_are_checked() -> None:
    with pytest.raises(ValueError, match=r"csrf\.state_changing_paths"):
        CsrfPolicy(state_changing_paths=("pay",))
    with pytest.raises(ValueError, match=r"csrf\.state_changing_paths"):
        CsrfPolicy(state_changing_paths="/pay")  # type: ignore[arg-type]


# -- the route guards ---------------------------------------------------------------------------


def _starlette() -> Any:
    @sw_starlette.unsafe_methods_only
    async def pay(request: Any) -> PlainTextResponse:
        session = get_session(request)
        session["paid"] = int(session.get("paid") or 0) + 1  # type: ignore[arg-type]
        return PlainTextResponse(f"paid {session['paid']}")

    async def token(request: Any) -> PlainTextResponse:
        return PlainTextResponse(request.state.csrf_token())

    methods = ["GET", "HEAD", "OPTIONS", "POST"]
    return Starlette(routes=[Route("/pay", pay, methods=methods), Route("/token", token)])


def _fastapi() -> Any:
    app = FastAPI()

    @app.api_route(
        "/pay",
        methods=["GET", "HEAD", "OPTIONS", "POST"],
        dependencies=[sw_fastapi.UnsafeMethodsOnly],
    )
    def pay(request: Request) -> PlainTextResponse:
        session = get_session(request)
        session["paid"] = int(session.get("paid") or 0) + 1  # type: ignore[arg-type]
        return PlainTextResponse(f"paid {session['paid']}")

    @app.get("/token")
    def token(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.state.csrf_token())

    return app


def _flask() -> Flask:
    app = Flask(__name__)

    @app.route("/pay", methods=["GET", "HEAD", "OPTIONS", "POST"])
    @sw_flask.unsafe_methods_only
    def pay() -> str:
        session = sw_flask.current_session()
        session["paid"] = int(session.get("paid") or 0) + 1  # type: ignore[arg-type]
        return f"paid {session['paid']}"

    @app.route("/token")
    def token() -> str:
        return sw_flask.csrf_token()

    return app


@contextmanager
def _http(kind: str) -> Iterator[httpx.Client | httpx.AsyncClient]:
    policy = _policy()
    if kind == "flask":
        app = _flask()
        sw_flask.SessionWarden(app, policy=policy, store=MemoryStore())
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as sync:
            yield sync
        return
    inner = _starlette() if kind == "starlette" else _fastapi()
    wrapped = SessionWardenMiddleware(inner, policy=policy, store="memory://")
    yield httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url=BASE)


async def _send(
    http: httpx.Client | httpx.AsyncClient, method: str, path: str = "/pay", **kw: Any
) -> httpx.Response:
    if isinstance(http, httpx.AsyncClient):
        return await http.request(method, path, **kw)
    return http.request(method, path, **kw)


@pytest.mark.parametrize("kind", ["starlette", "fastapi", "flask"])
async def test_the_route_guard_refuses_safe_methods_and_lets_post_through(kind: str) -> None:
    with _http(kind) as http:
        for method in ("GET", "HEAD", "OPTIONS"):
            _refused(await _send(http, method))  # the view never ran: no session was made
        assert not http.cookies
        forged = await _send(http, "POST", headers={"sec-fetch-site": "cross-site"})
        assert forged.status_code == 403  # the CSRF check decides a POST
        token = (await _send(http, "GET", "/token")).text
        headers = {"sec-fetch-site": "same-origin", "x-csrf-token": token}
        done = await _send(http, "POST", headers=headers)
        assert (done.status_code, done.text) == (200, "paid 1")
        _refused(await _send(http, "GET"))
        again = await _send(http, "POST", headers=headers)
        assert again.text == "paid 2"  # the refused GET did not count
