"""The demo application: a tiny bank that shows every defence of sessionwarden at work.

``create_app`` builds the ASGI app (Starlette behind :class:`SessionWardenMiddleware`), so tests
can serve it in-process; :mod:`sessionwarden.demo.cli` serves it with uvicorn. Every page is a
Jinja2 template with autoescaping; the only script is loaded from a file with the response's CSP
nonce, and the only stylesheet is a file too, so the strict Content-Security-Policy holds.

``create_evil_app`` is the "attacker" page served on a second origin (``--evil-port``): an
auto-submitting form that posts a transfer to the demo from another site.

Pages, messages, parsing and routes come from :mod:`sessionwarden.demo.shared` (as for the
Flask twin, :mod:`sessionwarden.demo.flask_app`); this module is only the Starlette glue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    SessionWardenMiddleware,
    get_context,
    get_middleware,
    get_session,
)
from ..clock import Clock, SystemClock
from ..events import EventSink
from ..integrations.starlette import json_only
from ..policy import Policy
from ..stores import AsyncSessionStore, open_async_store
from . import shared
from .ended import note_ended, refusal_renderer
from .shared import EVENT_LOGGER, demo_policy
from .users import check_login

__all__ = ["EVENT_LOGGER", "create_app", "create_evil_app", "demo_policy"]

#: Seconds between the live panel's activity updates.
LIVE_EVERY = 3.0


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


class _Demo(shared.DemoViews):
    """The views; each has its twin of the same name in :mod:`sessionwarden.demo.flask_app`."""

    # -- rendering --------------------------------------------------------------------------
    def render(
        self, request: Request, template: str, *, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        body = self.page(
            get_session(request),
            template,
            nonce=request.scope.get("state", {}).get("csp_nonce", ""),
            path=request.url.path,
            origin=str(request.base_url).rstrip("/"),
            **ctx,
        )
        return HTMLResponse(body, status_code=status, headers={"cache-control": "no-store"})

    async def form(self, request: Request) -> dict[str, str]:
        if not shared.is_form(request.headers.get("content-type", "")):
            return {}
        return shared.parse_form(await request.body())

    # -- pages ------------------------------------------------------------------------------
    async def home(self, request: Request) -> Response:
        return self.render(request, "home.html")

    async def login_page(self, request: Request) -> Response:
        return self.render(request, "login.html", error=None, username="")

    async def login(self, request: Request) -> Response:
        form = await self.form(request)
        username = form.get("username", "")
        password = form.get("password", "")
        if not await run_in_threadpool(check_login, self.users, username, password):
            shared.log_failed_sign_in(request.client.host if request.client else "-")
            return self.render(
                request, "login.html", status=401, error=shared.LOGIN_FAILED, username=username
            )
        shared.sign_in(get_session(request), username, remember="remember" in form)
        return _see_other("/account")

    async def account(self, request: Request) -> Response:
        session = get_session(request)
        if session.user_id is None:
            return _see_other("/login")
        activity = await get_middleware(request).activity(session)
        context = shared.account_context(session, self.policy, activity)
        return self.render(request, "account.html", live_panel=True, **context)

    async def transfer(self, request: Request) -> Response:
        session = get_session(request)
        if session.user_id is None:
            return _see_other("/login")
        form = await self.form(request)
        done = shared.transfer_from(session, form.get("to"), form.get("amount"), self.clock.now())
        if done is None:
            error = shared.TRANSFER_INPUT_ERROR
            return self.render(request, "transfer_error.html", status=400, error=error)
        shared.remember_sent(session, done)
        return _see_other("/transfer/sent")  # post/redirect/get: a reload sends nothing

    async def transfer_sent(self, request: Request) -> Response:
        session = get_session(request)
        if session.user_id is None:
            return _see_other("/login")
        done = shared.take_sent(session)
        if done is None:  # shown once already (a reload), or never sent
            return _see_other("/account")
        return self.render(request, "transfer.html", transfer=done)

    async def sessions(self, request: Request) -> Response:
        session = get_session(request)
        user = session.user_id
        if user is None:
            return _see_other("/login")
        rows = await get_middleware(request).list_sessions(user, session)
        return self.render(request, "sessions.html", rows=rows, now=self.clock.now())

    async def revoke(self, request: Request) -> Response:
        session = get_session(request)
        user = session.user_id
        if user is None:
            return _see_other("/login")
        ref = (await self.form(request)).get("ref", "").strip()
        if ref and ref == session.ref:
            session.logout()
            return _see_other("/login")
        ok = await get_middleware(request).revoke_session(user, ref, by="user")
        session["flash"] = shared.revoke_flash(ref, ok)
        return _see_other("/sessions")

    async def revoke_others(self, request: Request) -> Response:
        session = get_session(request)
        if session.user_id is None:
            return _see_other("/login")
        session.revoke_other_sessions()
        session["flash"] = shared.REVOKE_OTHERS_FLASH
        return _see_other("/sessions")

    async def logout(self, request: Request) -> Response:
        get_session(request).logout()
        return _see_other("/login")

    # -- attacks ----------------------------------------------------------------------------
    async def attacks(self, request: Request) -> Response:
        context = shared.attacks_context(get_session(request), self.policy)
        return self.render(request, "attacks.html", **context)

    async def comment(self, request: Request) -> Response:
        shared.add_comment(get_session(request), await self.form(request))
        return _see_other("/attacks#xss")

    # -- JSON API ---------------------------------------------------------------------------
    async def api_me(self, request: Request) -> Response:
        user = get_session(request).user_id
        if user is None:
            return JSONResponse({"error": "not-authenticated"}, status_code=401)
        return JSONResponse({"user": user})

    async def api_csrf(self, request: Request) -> Response:
        return JSONResponse({"csrf_token": get_session(request).csrf_token()})

    @json_only  # a JSON API must not accept what a cross-site form can send
    async def api_transfer(self, request: Request) -> Response:
        session = get_session(request)
        if session.user_id is None:
            return JSONResponse({"error": "not-authenticated"}, status_code=401)
        body = await request.body()
        content, status = shared.api_transfer(session, body, self.clock.now())
        return JSONResponse(content, status_code=status)

    # -- the live panel (WebSocket) ---------------------------------------------------------
    async def live(self, websocket: WebSocket) -> None:
        """``/ws``: the signed-in user's name (``{"user": ...}``), then the session's recent
        activity every few seconds. The middleware checked the handshake's origin and session,
        and closes the socket (1008) when the session ends anywhere."""
        session = get_session(websocket)
        user = session.user_id
        if user is None:
            await websocket.close(code=1008)
            return
        middleware = get_middleware(websocket)
        await websocket.accept()

        async def push() -> None:
            while True:
                await websocket.send_json({"activity": await middleware.activity(session)})
                await asyncio.sleep(LIVE_EVERY)

        await websocket.send_json({"user": user})
        pusher = asyncio.create_task(push())
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            pusher.cancel()
            await asyncio.gather(pusher, return_exceptions=True)

    # -- plumbing ---------------------------------------------------------------------------
    async def static_file(self, request: Request) -> Response:
        found = self.static_content(request.path_params["name"])
        if found is None:
            return Response(shared.NOT_FOUND, status_code=404, media_type="text/plain")
        data, media_type = found
        return Response(data, media_type=media_type, headers={"cache-control": "no-cache"})

    async def metrics(self, request: Request) -> Response:
        local = get_context(request).facts.local_peer
        if not self.metrics_allowed(local, request.headers.get("authorization", "")):
            return Response(shared.METRICS_FORBIDDEN, status_code=403, media_type="text/plain")
        exposition = self.metrics_content()
        if exposition is None:
            return Response(shared.METRICS_UNAVAILABLE, status_code=404, media_type="text/plain")
        data, media_type = exposition
        return Response(data, media_type=media_type)


def _noting_ended(app: ASGIApp) -> ASGIApp:
    """``app``, keeping why the visitor's session ended for the sign-in page."""

    async def noting(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            note_ended(scope.get("session"), scope.get("state", {}).get("session_ended"))
        await app(scope, receive, send)

    return noting


def create_app(
    *,
    store: str | AsyncSessionStore,
    policy: Policy,
    users: dict[str, str],
    clock: Clock | None = None,
    evil_url: str | None = None,
    sink: EventSink | None = None,
    attacks: bool = True,
    metrics_token: str | None = None,
) -> ASGIApp:
    """The demo as an ASGI app.

    ``store``: a store URL (``sqlite:///demo.db``, ``redis://127.0.0.1:6379/0``, ``memory://``)
    or a store. ``users``: user name -> :func:`~sessionwarden.demo.users.hash_password` hash.
    ``evil_url``: where the cross-site attacker page is served, linked from ``/attacks``.
    ``sink``: an extra event sink (events also go to JSON logs and Prometheus counters).
    ``metrics_token``: a bearer token that lets other machines read ``/metrics`` (without it,
    only requests from this machine may).
    """
    clock = clock or SystemClock()
    shared.check_users(users)
    sinks, registry = shared.event_sinks(sink)
    demo = _Demo(
        policy=policy,
        users=users,
        clock=clock,
        evil_url=evil_url,
        metrics_registry=registry,
        attacks=attacks,
        metrics_token=metrics_token,
    )
    the_store = open_async_store(store) if isinstance(store, str) else store
    holder: dict[str, SessionWardenMiddleware] = {}

    async def purge_forever() -> None:
        while True:
            await asyncio.sleep(shared.PURGE_EVERY)
            try:
                shared.log_purged(await holder["mw"].purge())
            except Exception:  # a failed purge is retried next time
                shared.log.warning("purge failed", exc_info=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(purge_forever())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await holder["mw"].watcher.aclose()
            await the_store.close()

    routes: list[BaseRoute] = [
        Route(path, getattr(demo, view), methods=[method])
        for path, view, method in shared.routes(attacks=attacks)
    ]
    routes.append(WebSocketRoute("/ws", demo.live))
    inner = Starlette(routes=routes, lifespan=lifespan)
    mw = SessionWardenMiddleware(
        _noting_ended(inner),
        policy=policy,
        store=the_store,
        clock=clock,
        sink=sinks,
        render_refusal=refusal_renderer(demo.env),
    )
    holder["mw"] = mw
    return mw


def create_evil_app(target: str) -> ASGIApp:
    """The cross-site attacker page, posting to ``target`` (the demo's origin)."""
    target = shared.evil_target(target)

    async def page(request: Request) -> Response:
        auto = request.query_params.get("auto", "1") != "0"
        return HTMLResponse(
            shared.evil_page(target, auto=auto), headers={"cache-control": "no-store"}
        )

    return Starlette(routes=[Route("/", page, methods=["GET"])])
