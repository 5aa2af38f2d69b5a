"""One small application behind each adapter (Starlette over ASGI, Flask over WSGI), driven over
HTTP by httpx with the cookie kept by hand, so a test can run the same scenario through both and
assert only what a client sees (status, headers, body) and the audit events.

Routes: ``GET /whoami`` (the user, JSON), ``GET /token`` (a masked CSRF token, JSON),
``POST /login`` (signs in ``alice``, or ``?user=``; ``?remember=1``: to be kept signed in),
``POST /logout``, ``POST /transfer`` (changes state), ``GET /poll`` (reads the session),
``POST /step-up?op=`` (grants a step-up for ``op``), ``POST /sensitive?op=`` (requires one),
``TRACE /trace`` (counts in the session and answers the count: a route a forged ``TRACE`` could
abuse), ``POST /reauth`` (re-authenticated), ``POST /others`` (log out other devices),
``POST /password`` (credentials changed), ``POST /rotate`` (a privilege change: a new ID now),
``GET /cart`` (reads the session's ``cart``; ``?vary=``: the app's own ``Vary``), ``GET /plain``
(never touches the session).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from flask import Flask, jsonify, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.integrations.flask import SessionWarden, current_context, current_session
from sessionwarden.policy import Policy
from sessionwarden.stores import InlineAsyncStore, MemoryStore

from .conftest import Recorder

BASE = "https://app.test"
COOKIE = "__Host-id"
KINDS = ("asgi", "wsgi")
#: Routes that call one method of the session, without arguments.
ACCOUNT_ACTIONS = {
    "/reauth": "reauthenticated",
    "/others": "revoke_other_sessions",
    "/password": "credentials_changed",
    "/rotate": "rotate",
}


def _starlette() -> Starlette:
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

    async def transfer(request: Request) -> PlainTextResponse:
        await request.body()
        session = get_session(request)
        session["transfers"] = int(session.get("transfers") or 0) + 1  # type: ignore[arg-type]
        return PlainTextResponse("transfer done")

    async def trace(request: Request) -> PlainTextResponse:
        session = get_session(request)
        session["traces"] = int(session.get("traces") or 0) + 1  # type: ignore[arg-type]
        return PlainTextResponse(str(session["traces"]))

    async def step_up(request: Request) -> PlainTextResponse:
        get_session(request).grant_step_up(request.query_params["op"])
        return PlainTextResponse("granted")

    async def sensitive(request: Request) -> PlainTextResponse:
        get_session(request).require_step_up(request.query_params["op"])
        return PlainTextResponse("done")

    async def account(request: Request) -> PlainTextResponse:
        session = get_session(request)
        getattr(session, ACCOUNT_ACTIONS[request.url.path])()
        return PlainTextResponse("done")

    async def cart(request: Request) -> JSONResponse:
        vary = request.query_params.get("vary")
        headers = {"vary": vary} if vary else None
        return JSONResponse({"cart": get_session(request).get("cart")}, headers=headers)

    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("the same for everyone")

    return Starlette(
        routes=[
            Route("/step-up", step_up, methods=["POST"]),
            Route("/sensitive", sensitive, methods=["POST"]),
            Route("/whoami", whoami),
            Route("/poll", whoami),
            Route("/token", token),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/transfer", transfer, methods=["POST"]),
            Route("/trace", trace, methods=["TRACE"]),
            Route("/cart", cart),
            Route("/plain", plain),
            *(Route(path, account, methods=["POST"]) for path in ACCOUNT_ACTIONS),
        ]
    )


def _flask() -> Flask:
    app = Flask(__name__)

    def whoami() -> Any:
        return jsonify(user=current_session().user_id)

    def token() -> Any:
        return jsonify(csrf_token=current_context().csrf_token())

    def login() -> Any:
        current_session().login(
            request.args.get("user", "alice"), remember=request.args.get("remember") == "1"
        )
        return jsonify(ok=True)

    def logout() -> Any:
        current_session().logout()
        return jsonify(ok=True)

    def transfer() -> Any:
        session = current_session()
        session["transfers"] = int(session.get("transfers") or 0) + 1  # type: ignore[arg-type]
        return "transfer done"

    def trace() -> Any:
        session = current_session()
        session["traces"] = int(session.get("traces") or 0) + 1  # type: ignore[arg-type]
        return str(session["traces"])

    def step_up() -> Any:
        current_session().grant_step_up(request.args["op"])
        return "granted"

    def sensitive() -> Any:
        current_session().require_step_up(request.args["op"])
        return "done"

    def account() -> Any:
        getattr(current_session(), ACCOUNT_ACTIONS[request.path])()
        return "done"

    app.add_url_rule("/step-up", "step_up", step_up, methods=["POST"])
    app.add_url_rule("/sensitive", "sensitive", sensitive, methods=["POST"])
    app.add_url_rule("/whoami", "whoami", whoami)
    app.add_url_rule("/poll", "poll", whoami)
    app.add_url_rule("/token", "token", token)
    app.add_url_rule("/login", "login", login, methods=["POST"])
    app.add_url_rule("/logout", "logout", logout, methods=["POST"])
    app.add_url_rule("/transfer", "transfer", transfer, methods=["POST"])
    app.add_url_rule("/trace", "trace", trace, methods=["TRACE"])

    def cart() -> Any:
        response = jsonify(cart=current_session().get("cart"))
        if request.args.get("vary"):
            response.headers["Vary"] = request.args["vary"]
        return response

    app.add_url_rule("/cart", "cart", cart)
    app.add_url_rule("/plain", "plain", lambda: "the same for everyone")
    for path in ACCOUNT_ACTIONS:
        app.add_url_rule(path, path, account, methods=["POST"])
    return app


@dataclass
class Client:
    """A client of one adapter with the session cookie kept by hand."""

    http: httpx.Client | httpx.AsyncClient
    recorder: Recorder
    clock: ManualClock
    cookie: str | None = None
    responses: list[httpx.Response] = field(default_factory=list)
    cookie_name: str = COOKIE
    kind: str = "asgi"
    store: MemoryStore = field(default_factory=MemoryStore)
    base: str = BASE

    def restart(self, policy: Policy) -> None:
        """Serve the same store with ``policy`` from now on (a redeployment)."""
        self.http = _http(self.kind, policy, self.store, self.clock, self.recorder, self.base)

    def _headers(self, headers: dict[str, str] | None, send_cookie: bool) -> dict[str, str]:
        out = dict(headers or {})
        if send_cookie and self.cookie:
            out["cookie"] = f"{self.cookie_name}={self.cookie}"
        return out

    def _keep(self, response: httpx.Response) -> httpx.Response:
        self.http.cookies.clear()  # only the cookie kept here is ever sent
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            if name == self.cookie_name:
                value = rest.split(";", 1)[0]
                self.cookie = value or None
        self.responses.append(response)
        return response

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        send_cookie: bool = True,
    ) -> httpx.Response:
        sent = self._headers(headers, send_cookie)
        if isinstance(self.http, httpx.AsyncClient):
            response = await self.http.request(method, path, headers=sent, content=content)
        else:
            response = self.http.request(method, path, headers=sent, content=content)
        return self._keep(response)

    async def login(self, query: str = "") -> None:
        """Sign in as ``alice`` the way a page of this site does (a same-origin form post
        carrying the token of the sign-in page); ``query``: ``?user=bob&remember=1``."""
        token = (await self.request("GET", "/token")).json()["csrf_token"]
        response = await self.request(
            "POST",
            f"/login{query}",
            headers={"sec-fetch-site": "same-origin", "x-csrf-token": token},
        )
        assert response.status_code == 200, response.text
        assert self.cookie

    async def token(self) -> str:
        return str((await self.request("GET", "/token")).json()["csrf_token"])


def _http(
    kind: str, policy: Policy, store: MemoryStore, clock: ManualClock, sink: Recorder, base: str
) -> httpx.Client | httpx.AsyncClient:
    if kind == "asgi":
        app = SessionWardenMiddleware(
            _starlette(), policy=policy, store=InlineAsyncStore(store), clock=clock, sink=sink
        )
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)
    flask_app = _flask()
    SessionWarden(flask_app, policy=policy, store=store, clock=clock, sink=sink)
    return httpx.Client(transport=httpx.WSGITransport(app=flask_app), base_url=base)


@contextmanager
def client(
    kind: str,
    policy: Policy,
    *,
    base: str = BASE,
    cookie_name: str = COOKIE,
    recorder: Recorder | None = None,
    store: MemoryStore | None = None,
) -> Iterator[Client]:
    """A :class:`Client` of the ``kind`` adapter (``"asgi"`` or ``"wsgi"``) over one fresh
    memory store (or ``store``), with a manual clock and an event recorder (``recorder``, or a
    new one)."""
    recorder = recorder if recorder is not None else Recorder()
    clock, store = ManualClock(), store if store is not None else MemoryStore()
    http = _http(kind, policy, store, clock, recorder, base)
    yield Client(http, recorder, clock, cookie_name=cookie_name, kind=kind, store=store, base=base)
