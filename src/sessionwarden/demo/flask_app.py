"""The demo on Flask: the same bank, pages and HTTP contract as the Starlette app, served through
:class:`sessionwarden.integrations.flask.SessionWarden` (the WSGI middleware).

Templates, static files, routes, the policy, parsing and every message come from
:mod:`sessionwarden.demo.shared`, as for the Starlette app, so both show the same thing; the views
here are only the Flask glue. :mod:`sessionwarden.demo.flask_main` serves it with a threaded WSGI
server; :func:`create_app` builds it for tests.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.wrappers import Response as BaseResponse

from ..clock import Clock, SystemClock
from ..events import EventSink
from ..integrations.flask import SessionWarden, current_context, current_session, json_only
from ..policy import Policy
from ..stores import SessionStore
from . import shared
from .ended import note_ended, refusal_renderer
from .users import check_login

__all__ = ["create_app", "create_evil_app", "start_purging", "warden_of"]

_EXT = "sessionwarden.demo"
_PATH_PARAM = re.compile(r"\{(\w+)\}")


def _html(body: str, status: int = 200) -> Response:
    return Response(
        body,
        status=status,
        content_type="text/html; charset=utf-8",
        headers={"cache-control": "no-store"},
    )


def _json(content: Any, status: int = 200) -> Response:
    return Response(shared.json_bytes(content), status=status, content_type="application/json")


def _see_other(url: str) -> Response:
    response = Response(b"", status=303, headers={"location": url})
    del response.headers["content-type"]  # as Starlette's RedirectResponse: no body, no type
    return response


def _form() -> dict[str, str]:
    """The urlencoded form (first value of each field), parsed as the Starlette demo does."""
    if not shared.is_form(request.headers.get("content-type", "")):
        return {}
    return shared.parse_form(request.get_data())


@dataclass(frozen=True, slots=True)
class _State:
    warden: SessionWarden
    metrics_registry: Any


class _Demo(shared.DemoViews):
    """The views. Each mirrors the method of the same name in :mod:`sessionwarden.demo.app`."""

    def __init__(self, *, warden: SessionWarden, **state: Any) -> None:
        super().__init__(**state)
        self.warden = warden

    # -- rendering --------------------------------------------------------------------------
    def render(self, template: str, *, status: int = 200, **ctx: Any) -> Response:
        nonce = current_context().nonce
        origin = request.host_url.rstrip("/")
        page = self.page(
            current_session(), template, nonce=nonce, path=request.path, origin=origin, **ctx
        )
        return _html(page, status)

    # -- pages ------------------------------------------------------------------------------
    def home(self) -> Response:
        return self.render("home.html")

    def login_page(self) -> Response:
        return self.render("login.html", error=None, username="")

    def login(self) -> Response:
        form = _form()
        username = form.get("username", "")
        if not check_login(self.users, username, form.get("password", "")):
            shared.log_failed_sign_in(request.remote_addr or "-")
            return self.render(
                "login.html", status=401, error=shared.LOGIN_FAILED, username=username
            )
        shared.sign_in(current_session(), username, remember="remember" in form)
        return _see_other("/account")

    def account(self) -> Response:
        session = current_session()
        if session.user_id is None:
            return _see_other("/login")
        activity = self.warden.activity(session)
        return self.render("account.html", **shared.account_context(session, self.policy, activity))

    def transfer(self) -> Response:
        session = current_session()
        if session.user_id is None:
            return _see_other("/login")
        form = _form()
        done = shared.transfer_from(session, form.get("to"), form.get("amount"), self.clock.now())
        if done is None:
            return self.render("transfer_error.html", status=400, error=shared.TRANSFER_INPUT_ERROR)
        shared.remember_sent(session, done)
        return _see_other("/transfer/sent")  # post/redirect/get: a reload sends nothing

    def transfer_sent(self) -> Response:
        session = current_session()
        if session.user_id is None:
            return _see_other("/login")
        done = shared.take_sent(session)
        if done is None:  # shown once already (a reload), or never sent
            return _see_other("/account")
        return self.render("transfer.html", transfer=done)

    def sessions(self) -> Response:
        session = current_session()
        user = session.user_id
        if user is None:
            return _see_other("/login")
        rows = self.warden.list_sessions(user, session)
        return self.render("sessions.html", rows=rows, now=self.clock.now())

    def revoke(self) -> Response:
        session = current_session()
        user = session.user_id
        if user is None:
            return _see_other("/login")
        ref = _form().get("ref", "").strip()
        if ref and ref == session.ref:
            session.logout()
            return _see_other("/login")
        ok = self.warden.revoke_session(user, ref, by="user")
        session["flash"] = shared.revoke_flash(ref, ok)
        return _see_other("/sessions")

    def revoke_others(self) -> Response:
        session = current_session()
        if session.user_id is None:
            return _see_other("/login")
        session.revoke_other_sessions()
        session["flash"] = shared.REVOKE_OTHERS_FLASH
        return _see_other("/sessions")

    def logout(self) -> Response:
        current_session().logout()
        return _see_other("/login")

    # -- attacks ----------------------------------------------------------------------------
    def attacks(self) -> Response:
        return self.render("attacks.html", **shared.attacks_context(current_session(), self.policy))

    def comment(self) -> Response:
        shared.add_comment(current_session(), _form())
        return _see_other("/attacks#xss")

    # -- JSON API ---------------------------------------------------------------------------
    def api_me(self) -> Response:
        user = current_session().user_id
        if user is None:
            return _json({"error": "not-authenticated"}, 401)
        return _json({"user": user})

    def api_csrf(self) -> Response:
        return _json({"csrf_token": current_session().csrf_token()})

    @json_only  # a JSON API must not accept what a cross-site form can send
    def api_transfer(self) -> Response:
        session = current_session()
        if session.user_id is None:
            return _json({"error": "not-authenticated"}, 401)
        content, status = shared.api_transfer(session, request.get_data(), self.clock.now())
        return _json(content, status)

    # -- plumbing ---------------------------------------------------------------------------
    def static_file(self, name: str) -> Response:
        found = self.static_content(name)
        if found is None:
            return Response(shared.NOT_FOUND, status=404, content_type="text/plain; charset=utf-8")
        data, content_type = found
        return Response(data, content_type=content_type, headers={"cache-control": "no-cache"})

    def metrics(self) -> Response:
        local = current_context().facts.local_peer
        if not self.metrics_allowed(local, request.headers.get("Authorization", "")):
            return Response(
                shared.METRICS_FORBIDDEN, status=403, content_type="text/plain; charset=utf-8"
            )
        exposition = self.metrics_content()
        if exposition is None:
            return Response(
                shared.METRICS_UNAVAILABLE, status=404, content_type="text/plain; charset=utf-8"
            )
        data, content_type = exposition
        return Response(data, content_type=content_type)


def create_app(
    *,
    store: str | SessionStore,
    policy: Policy,
    users: dict[str, str],
    clock: Clock | None = None,
    evil_url: str | None = None,
    sink: EventSink | None = None,
    attacks: bool = True,
    metrics_token: str | None = None,
) -> Flask:
    """The demo as a Flask app; the arguments are those of :func:`sessionwarden.demo.create_app`
    (``store`` is a URL or a synchronous store).

    Expired entries are purged by :func:`start_purging`, which the server entry point starts;
    the store is closed with ``warden_of(app).middleware(app).store.close()``.
    """
    clock = clock or SystemClock()
    shared.check_users(users)
    sinks, registry = shared.event_sinks(sink)

    app = Flask(__name__, static_folder=None)  # the static files are served by a view below
    warden = SessionWarden(
        app,
        policy=policy,
        store=store,
        clock=clock,
        sink=sinks,
        render_refusal=refusal_renderer(shared.template_environment()),
    )
    app.before_request(_note_ended)
    demo = _Demo(
        warden=warden,
        policy=policy,
        users=users,
        clock=clock,
        evil_url=evil_url,
        metrics_registry=registry,
        attacks=attacks,
        metrics_token=metrics_token,
    )
    app.extensions[_EXT] = _State(warden, registry)

    for path, view, method in shared.routes(attacks=attacks):
        app.add_url_rule(
            _PATH_PARAM.sub(r"<\1>", path),
            f"{view}_{method.lower()}",
            getattr(demo, view),
            methods=[method],
            provide_automatic_options=False,
        )
    app.register_error_handler(NotFound, _plain_error)
    app.register_error_handler(MethodNotAllowed, _plain_error)
    return app


def _note_ended() -> None:
    """Keep why the visitor's session ended for the sign-in page."""
    note_ended(current_session(), current_context().session_ended)


def _plain_error(exc: HTTPException) -> BaseResponse:
    """An unknown path or method: a one-line plain-text answer, as Starlette's router gives."""
    response = exc.get_response()
    response.set_data(exc.name)
    response.content_type = "text/plain; charset=utf-8"
    return response


def warden_of(app: Flask) -> SessionWarden:
    """The :class:`SessionWarden` installed by :func:`create_app`."""
    state = app.extensions.get(_EXT)
    if not isinstance(state, _State):
        raise RuntimeError("not an app made by sessionwarden.demo.flask_app.create_app")
    return state.warden


def start_purging(app: Flask, every: float = shared.PURGE_EVERY) -> Callable[[], None]:
    """Purge expired entries every ``every`` seconds on a daemon thread; returns a stop
    function. (The Starlette demo does the same in its lifespan.)"""
    middleware = warden_of(app).middleware(app)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                shared.log_purged(middleware.purge())
            except Exception:  # a failed purge is retried next time
                shared.log.warning("purge failed", exc_info=True)

    threading.Thread(target=loop, name="sessionwarden-purge", daemon=True).start()
    return stop.set


def create_evil_app(target: str) -> Flask:
    """The cross-site attacker page, posting to ``target`` (the demo's origin)."""
    target = shared.evil_target(target)
    app = Flask(__name__ + ".evil", static_folder=None)

    def page() -> Response:
        auto = request.args.get("auto", "1") != "0"
        return _html(shared.evil_page(target, auto=auto))

    app.add_url_rule("/", "page", page, methods=["GET"])
    return app
