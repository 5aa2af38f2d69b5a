"""The demo on Flask: the same bank, pages and HTTP contract as the Starlette app, served through
:class:`sessionwarden.integrations.flask.SessionWarden` (the WSGI middleware).

Templates, static files, password hashing, the policy and every message come from the Starlette
demo (through :mod:`sessionwarden.demo.shared`), so both apps show the same thing; the views here
are only the Flask glue. :mod:`sessionwarden.demo.flask_main` serves it with a threaded WSGI
server; :func:`create_app` builds it for tests.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jinja2
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.wrappers import Response as BaseResponse

from ..clock import Clock, SystemClock
from ..events import EventSink, FanOut
from ..integrations.flask import SessionWarden, current_context, current_session
from ..monitor import JsonLogSink
from ..policy import Policy
from ..stores import SessionStore
from . import shared
from .users import USERNAME_PATTERN, check_login

__all__ = ["create_app", "create_evil_app", "start_purging", "warden_of"]

_EXT = "sessionwarden.demo"
_log = logging.getLogger("sessionwarden.demo")


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
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != shared.FORM_CONTENT_TYPE:
        return {}
    return shared.parse_form(request.get_data())


@dataclass(frozen=True, slots=True)
class _State:
    warden: SessionWarden
    metrics_registry: Any


class _Demo:
    """The views. Each mirrors the method of the same name in :mod:`sessionwarden.demo.app`."""

    def __init__(
        self,
        *,
        warden: SessionWarden,
        policy: Policy,
        users: dict[str, str],
        clock: Clock,
        evil_url: str | None,
        metrics_registry: Any,
    ) -> None:
        self.warden = warden
        self.policy = policy
        self.users = users
        self.clock = clock
        self.evil_url = evil_url
        self.metrics_registry = metrics_registry
        self.env: jinja2.Environment = shared.template_environment()
        self.static = shared.static_files()

    # -- rendering --------------------------------------------------------------------------
    def render(self, template: str, *, status: int = 200, **ctx: Any) -> Response:
        context = shared.page_context(
            current_session(),
            self.policy,
            nonce=current_context().nonce,
            path=request.path,
            evil_url=self.evil_url,
        )
        context.update(ctx)
        return _html(self.env.get_template(template).render(context), status)

    # -- pages ------------------------------------------------------------------------------
    def home(self) -> Response:
        return self.render("home.html")

    def login_page(self) -> Response:
        return self.render("login.html", error=None)

    def login(self) -> Response:
        session = current_session()
        form = _form()
        username = form.get("username", "")
        if not check_login(self.users, username, form.get("password", "")):
            _log.info("failed sign-in from %s", request.remote_addr or "-")
            return self.render("login.html", status=401, error=shared.LOGIN_FAILED)
        if session.user_id != username:
            session.pop("transfers")  # one user's history never carries over to another
        session.login(username)
        session["flash"] = shared.login_flash(username)
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
        to = shared.clean_recipient(form.get("to"))
        amount = shared.parse_amount(form.get("amount"))
        if to is None or amount is None:
            return self.render("transfer_error.html", status=400, error=shared.TRANSFER_INPUT_ERROR)
        done = shared.record_transfer(session, to, amount, self.clock.now())
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

    def api_transfer(self) -> Response:
        session = current_session()
        if session.user_id is None:
            return _json({"error": "not-authenticated"}, 401)
        try:
            payload = json.loads(request.get_data())
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict):
            return _json({"error": "bad-request", "reason": "json-object"}, 400)
        to = shared.clean_recipient(payload.get("to"))
        amount = shared.parse_amount(payload.get("amount"))
        if to is None or amount is None:
            return _json({"error": "bad-request", "reason": "to-and-amount"}, 400)
        done = shared.record_transfer(session, to, amount, self.clock.now())
        return _json({"ok": True, "transfer": done.to_json()})

    # -- plumbing ---------------------------------------------------------------------------
    def static_file(self, name: str) -> Response:
        if name not in self.static:
            return Response("Not found\n", status=404, content_type="text/plain; charset=utf-8")
        return Response(
            self.static[name],
            content_type=shared.STATIC[name][1],
            headers={"cache-control": "no-cache"},
        )

    def metrics(self) -> Response:
        if self.metrics_registry is None:
            return Response(
                "metrics need prometheus-client\n",
                status=404,
                content_type="text/plain; charset=utf-8",
            )
        import prometheus_client

        data = prometheus_client.generate_latest(self.metrics_registry)
        return Response(data, content_type=prometheus_client.CONTENT_TYPE_LATEST)


def create_app(
    *,
    store: str | SessionStore,
    policy: Policy,
    users: dict[str, str],
    clock: Clock | None = None,
    evil_url: str | None = None,
    sink: EventSink | None = None,
) -> Flask:
    """The demo as a Flask app; the arguments are those of :func:`sessionwarden.demo.create_app`
    (``store`` is a URL or a synchronous store).

    Expired entries are purged by :func:`start_purging`, which the server entry point starts;
    the store is closed with ``warden_of(app).middleware(app).store.close()``.
    """
    clock = clock or SystemClock()
    for name in users:
        if not USERNAME_PATTERN.fullmatch(name):
            raise ValueError(f"invalid user name {name!r}")
    prom, registry = shared.prometheus_sink()
    sinks: list[EventSink] = [JsonLogSink(logging.getLogger(shared.EVENT_LOGGER))]
    if prom is not None:
        sinks.append(prom)
    if sink is not None:
        sinks.append(sink)

    app = Flask(__name__, static_folder=None)  # the static files are served by a view below
    warden = SessionWarden(app, policy=policy, store=store, clock=clock, sink=FanOut(*sinks))
    demo = _Demo(
        warden=warden,
        policy=policy,
        users=dict(users),
        clock=clock,
        evil_url=evil_url,
        metrics_registry=registry,
    )
    app.extensions[_EXT] = _State(warden, registry)

    View = Callable[..., Response]
    routes: list[tuple[str, View, list[str]]] = [
        ("/", demo.home, ["GET"]),
        ("/login", demo.login_page, ["GET"]),
        ("/login", demo.login, ["POST"]),
        ("/account", demo.account, ["GET"]),
        ("/transfer", demo.transfer, ["POST"]),
        ("/sessions", demo.sessions, ["GET"]),
        ("/sessions/revoke", demo.revoke, ["POST"]),
        ("/sessions/revoke-others", demo.revoke_others, ["POST"]),
        ("/logout", demo.logout, ["POST"]),
        ("/attacks", demo.attacks, ["GET"]),
        ("/attacks/comment", demo.comment, ["POST"]),
        ("/api/me", demo.api_me, ["GET"]),
        ("/api/csrf", demo.api_csrf, ["GET"]),
        ("/api/transfer", demo.api_transfer, ["POST"]),
        ("/metrics", demo.metrics, ["GET"]),
        ("/static/<name>", demo.static_file, ["GET"]),
    ]
    for path, view, methods in routes:
        endpoint = f"{view.__name__}_{methods[0].lower()}"
        app.add_url_rule(path, endpoint, view, methods=methods, provide_automatic_options=False)
    app.register_error_handler(NotFound, _plain_error)
    app.register_error_handler(MethodNotAllowed, _plain_error)
    return app


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
                removed = middleware.purge()
                if removed:
                    _log.info("purged %d expired entries", removed)
            except Exception:  # a failed purge is retried next time
                _log.warning("purge failed", exc_info=True)

    threading.Thread(target=loop, name="sessionwarden-purge", daemon=True).start()
    return stop.set


def create_evil_app(target: str) -> Flask:
    """The cross-site attacker page, posting to ``target`` (the demo's origin)."""
    target = target.rstrip("/")
    parts = urllib.parse.urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"target must be an origin like http://127.0.0.1:8000, got {target!r}")
    app = Flask(__name__ + ".evil", static_folder=None)

    def page() -> Response:
        auto = request.args.get("auto", "1") != "0"
        return _html(shared.evil_page(target, auto=auto))

    app.add_url_rule("/", "page", page, methods=["GET"])
    return app
