"""The Flask extension: sessionwarden's server-side session for a Flask application.

    from sessionwarden.integrations.flask import SessionWarden, session as sw_session

    warden = SessionWarden(app, store="sqlite:///sessions.db")   # keys from app.config

It wraps ``app.wsgi_app`` in :class:`~sessionwarden.wsgi.SessionWardenWSGI`, so every response,
Flask's own error pages included, goes through the same guard as the ASGI middleware.

By default Flask's own ``flask.session`` (a signed cookie) is left alone and stays Flask's: this
extension neither reads nor writes it and does not need ``SECRET_KEY``. sessionwarden's session is
:data:`session` here (import it under another name, such as ``sw_session``, to keep the two
apart), :func:`current_session` in code and ``sw_session`` in templates.

With ``flask_session=True`` (or ``SESSIONWARDEN_FLASK_SESSION = True``), ``flask.session`` and so
``flash()`` become that same server-side session (:class:`SessionWardenInterface`), and Flask
never sends its own ``session`` cookie. Opt-in: turning it on moves an existing app's
``flask.session`` data to the server and refuses values that are not JSON.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, ParamSpec, TypeVar

from flask import Flask, Request, Response, abort, current_app, g, redirect, request
from flask.sessions import NullSession, SessionInterface, SessionMixin
from werkzeug.local import LocalProxy
from werkzeug.wrappers import Response as BaseResponse

from ..clock import Clock
from ..content import UNSUPPORTED_MEDIA_TYPE, json_body_refusal, single_content_type
from ..core import HttpsRequired, ReauthenticationRequired, Session, SessionInfo
from ..events import EventSink
from ..guard import Guard, Refusal, RefusalRenderer, RequestContext
from ..methods import ALLOW, METHOD_NOT_ALLOWED, safe_method_refused
from ..policy import Policy
from ..records import JSON, dumps
from ..stores import SessionStore, StoreUnavailable
from ..wsgi import SessionWardenWSGI
from .nextpath import login_location, safe_next

__all__ = [
    "FlaskSession",
    "SessionWarden",
    "SessionWardenInterface",
    "csp_nonce",
    "csrf_token",
    "current_context",
    "current_session",
    "current_user",
    "json_only",
    "login_required",
    "recent_auth_required",
    "safe_next",
    "session",
    "unsafe_methods_only",
]

P = ParamSpec("P")
R = TypeVar("R")

_EXT = "sessionwarden"


@dataclass(frozen=True, slots=True)
class _Installed:
    """What :meth:`SessionWarden.init_app` left on one application."""

    warden: SessionWarden
    middleware: SessionWardenWSGI
    login_url: str | None


class SessionWarden:
    """Install sessionwarden on a Flask app, now (``SessionWarden(app)``) or later
    (``warden = SessionWarden(); warden.init_app(app)`` in an application factory).

    ``policy``: the :class:`~sessionwarden.policy.Policy`; when omitted, one with the defaults and
    ``app.config["SESSIONWARDEN_SECRET_KEYS"]`` (a list of keys of 32+ bytes, the first signs)
    and ``app.config["SESSIONWARDEN_ALLOWED_HOSTS"]`` (see :attr:`Policy.allowed_hosts`).
    ``store``: a store or a store URL; when omitted, ``app.config["SESSIONWARDEN_STORE"]``.
    ``reauth_redirect``: where a browser is sent (303) when a view needs a recent sign-in;
    JSON clients get 401 either way (default: ``app.config.get("SESSIONWARDEN_REAUTH_URL")``).
    ``login_url``: where :func:`login_required` sends anonymous browsers (303, with where they
    were going as a relative ``?next=``; read it back with :func:`safe_next`); without it they
    get 401 (default: ``app.config.get("SESSIONWARDEN_LOGIN_URL")``).

    As with Flask-Login, :meth:`user_loader` registers the function that turns the signed-in
    user ID into your user object (:data:`current_user`), and :meth:`unauthorized_handler` the
    view that answers an anonymous request to a :func:`login_required` view instead.
    ``clock`` and ``sink``: passed to the middleware (tests, audit events).
    ``render_refusal``: renders the refusal pages (:data:`~sessionwarden.guard.RefusalRenderer`).
    ``flask_session``: ``True`` makes ``flask.session`` (and so ``flash()``) this server-side
    session (:class:`SessionWardenInterface`); default
    ``app.config.get("SESSIONWARDEN_FLASK_SESSION", False)``.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        policy: Policy | None = None,
        store: str | SessionStore | None = None,
        clock: Clock | None = None,
        sink: EventSink | None = None,
        reauth_redirect: str | None = None,
        login_url: str | None = None,
        render_refusal: RefusalRenderer | None = None,
        flask_session: bool | None = None,
    ) -> None:
        self.render_refusal = render_refusal
        self.flask_session = flask_session
        self.policy = policy
        self.store = store
        self.clock = clock
        self.sink = sink
        self.reauth_redirect = reauth_redirect
        self.login_url = login_url
        self._load_user: Callable[[str], Any] | None = None
        self._unauthorized: Callable[[], Any] | None = None
        self._apps: list[Flask] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> SessionWardenWSGI:
        """Wrap ``app.wsgi_app``, register template globals and error handlers."""
        if _EXT in app.extensions:
            raise RuntimeError("sessionwarden is already installed on this app")
        config = app.config
        policy = self.policy if self.policy is not None else _policy_from_config(config)
        store = self.store if self.store is not None else config.get("SESSIONWARDEN_STORE")
        if store is None:
            raise RuntimeError(
                "sessionwarden needs a store: pass store= or set SESSIONWARDEN_STORE "
                "(memory://, sqlite:///sessions.db or redis://127.0.0.1:6379/0)"
            )
        reauth = self.reauth_redirect or config.get("SESSIONWARDEN_REAUTH_URL")
        serve_flask_session = self._serves_flask_session(config)
        middleware = SessionWardenWSGI(
            app.wsgi_app,
            policy=policy,
            store=store,
            clock=self.clock,
            sink=self.sink,
            reauth_redirect=reauth,
            render_refusal=self.render_refusal,
            # Debug mode: Flask lets the exception through to the Werkzeug debugger's page.
            app_answers_errors=lambda: app.debug,
        )
        app.wsgi_app = middleware  # type: ignore[method-assign]
        login_url = self.login_url or config.get("SESSIONWARDEN_LOGIN_URL")
        app.extensions[_EXT] = _Installed(self, middleware, login_url)
        app.add_template_global(csrf_token, "csrf_token")
        app.add_template_global(csp_nonce, "csp_nonce")
        app.jinja_env.globals["sw_session"] = session
        app.jinja_env.globals.setdefault("current_user", current_user)
        app.register_error_handler(ReauthenticationRequired, _on_raised)
        app.register_error_handler(HttpsRequired, _on_raised)
        app.register_error_handler(StoreUnavailable, _on_store_unavailable)
        if serve_flask_session:
            app.session_interface = SessionWardenInterface()
        self._apps.append(app)
        return middleware

    def _serves_flask_session(self, config: Mapping[str, Any]) -> bool:
        wanted = self.flask_session
        if wanted is None:
            wanted = config.get("SESSIONWARDEN_FLASK_SESSION", False)
        if not isinstance(wanted, bool):  # "false" from an environment would be true
            raise RuntimeError("SESSIONWARDEN_FLASK_SESSION must be True or False")
        return wanted

    # -- Flask-Login habits ---------------------------------------------------------------------
    def user_loader(self, loader: Callable[[str], Any]) -> Callable[[str], Any]:
        """Register ``loader(user_id) -> user or None`` for :data:`current_user` (a decorator).
        It is called at most once per request, only when ``current_user`` is used."""
        self._load_user = loader
        return loader

    def unauthorized_handler(self, handler: Callable[[], Any]) -> Callable[[], Any]:
        """Register the view that answers an anonymous request to a :func:`login_required`
        view (a decorator); its return value is the response, as for any Flask view."""
        self._unauthorized = handler
        return handler

    # -- the application's calls (a "your devices" page, an admin screen) ------------------------
    def middleware(self, app: Flask | None = None) -> SessionWardenWSGI:
        """The middleware of ``app``, else of the current app, else of the only app."""
        if app is None:
            if current_app:
                return _installed(current_app).middleware
            if len(self._apps) != 1:
                raise RuntimeError("name the app: sessionwarden is installed on several apps")
            app = self._apps[0]
        return _installed(app).middleware

    def list_sessions(self, user_id: str, current: Session | None = None) -> list[SessionInfo]:
        """The user's live sessions, oldest first, ``current`` marked."""
        return self.middleware().list_sessions(user_id, current)

    def revoke_session(self, user_id: str, ref: str, *, by: str = "user") -> bool:
        """End one of the user's sessions, named by its reference (:attr:`SessionInfo.ref`)."""
        return self.middleware().revoke_session(user_id, ref, by=by)

    def revoke_user(
        self, user_id: str, *, by: str = "admin", keep: Session | None = None
    ) -> list[str]:
        """End every session of the user (but ``keep``); returns the references ended."""
        return self.middleware().revoke_user(user_id, by=by, keep=keep)

    def activity(self, session: Session) -> list[dict[str, JSON]]:
        """The session's recent activity trail (time, IP, user agent, path), oldest first."""
        return self.middleware().activity(session)


def _policy_from_config(config: Mapping[str, Any]) -> Policy:
    keys = config.get("SESSIONWARDEN_SECRET_KEYS")
    if not keys:
        raise RuntimeError(
            "sessionwarden needs keys: pass policy= or set SESSIONWARDEN_SECRET_KEYS "
            "to a list of secrets of at least 32 bytes (the first signs, all verify)"
        )
    if isinstance(keys, str | bytes):
        keys = (keys,)
    hosts = config.get("SESSIONWARDEN_ALLOWED_HOSTS") or ()  # a list, or "a.example,b.example"
    return Policy(
        secret_keys=tuple(k.encode("utf-8") if isinstance(k, str) else k for k in keys),
        allowed_hosts=tuple(filter(None, hosts.split(","))) if isinstance(hosts, str) else hosts,
    )


def _installed(app: Flask) -> _Installed:
    state = app.extensions.get(_EXT)
    if not isinstance(state, _Installed):
        raise RuntimeError("SessionWarden is not installed on this app (call init_app)")
    return state


# -- the current request --------------------------------------------------------------------------
def current_context() -> RequestContext:
    """This request's context: ``.nonce``, ``.csrf_token()``, ``.facts``, ``.session_ended``
    (why the session the request presented ended, if it did)."""
    ctx = request.environ.get("sessionwarden")
    if not isinstance(ctx, RequestContext):
        raise RuntimeError("SessionWarden is not installed on this app")
    return ctx


def current_session() -> Session:
    """This request's sessionwarden session (not ``flask.session``)."""
    found = request.environ.get("sessionwarden.session")
    if not isinstance(found, Session):
        raise RuntimeError("SessionWarden is not installed on this app")
    return found


#: The current request's :class:`~sessionwarden.core.Session`, like ``flask.session`` is for
#: Flask's cookie session. Import it as ``sw_session`` to keep the two apart.
session: Session = LocalProxy(current_session)  # type: ignore[assignment]


# -- flask.session as sessionwarden's session (opt-in) ---------------------------------------------
class SessionWardenInterface(SessionInterface):
    """``app.session_interface`` when ``flask_session`` is on: ``flask.session`` is the request's
    sessionwarden :class:`~sessionwarden.core.Session` (as :class:`FlaskSession`), so
    ``session[...]``, ``flash()`` and ``get_flashed_messages()`` keep their data in the store.

    :meth:`save_session` does nothing: the middleware commits the session and sets its own
    cookie when the response starts, and Flask must never send a ``session`` cookie of its own
    (no ``SECRET_KEY`` is needed). A request that did not pass through the middleware
    (``app.test_request_context()``, the test client's ``session_transaction()``) gets a
    session that can be read (it is empty) but not written, with an error saying why."""

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        del app
        found = request.environ.get("sessionwarden.session")
        if not isinstance(found, Session):
            return _NoSession()  # a null session: Flask never saves it
        return FlaskSession(found)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Nothing to do: the middleware writes the session and its cookie, and gives a
        response whose view read the session ``Vary: Cookie`` (as Flask's own session does),
        as it does on every adapter."""
        del app, session, response


class FlaskSession(SessionMixin):
    """``flask.session`` over a sessionwarden :class:`~sessionwarden.core.Session`: every read
    and write goes to it, so values must be JSON (anything else raises the same
    :class:`TypeError` as ``sw_session``) and the limits of the policy apply.

    ``new``: no session existed when the request arrived. ``modified`` and ``accessed``: as
    Flask's own session keeps them (a value set or deleted; any use). ``permanent`` says
    whether the session's cookie outlives the browser (``CookiePolicy.persistent``, or a
    sign-in with ``remember=True``) and setting it changes nothing: a session's lifetime is
    chosen at sign-in (``sw_session.login(user, remember=True)``) and enforced by the server
    (``PERMANENT_SESSION_LIFETIME`` is not used), and no ``_permanent`` key is stored."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.new = session.is_new
        self.modified = False
        self.accessed = False

    @property
    def permanent(self) -> bool:
        return self.session.lifetime.persistent

    @permanent.setter
    def permanent(self, value: bool) -> None:
        del value  # the lifetime is the sign-in's choice: login(user, remember=True)

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return self.session[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.accessed = True
        self.session[key] = value
        self.modified = True

    def __delitem__(self, key: str) -> None:
        self.accessed = True
        del self.session[key]
        self.modified = True

    def __contains__(self, key: object) -> bool:
        self.accessed = True
        return key in self.session

    def __iter__(self) -> Iterator[str]:
        self.accessed = True
        return iter(self.session)

    def __len__(self) -> int:
        return len(self.session)

    def clear(self) -> None:
        """Remove every value; the user stays signed in (``sw_session.logout()`` signs out)."""
        self.accessed = True
        self.session.clear()
        self.modified = True

    def __repr__(self) -> str:  # never shows an ID
        return f"<FlaskSession over {self.session!r}>"


class _NoSession(NullSession):
    """``flask.session`` of a request that did not pass through the middleware."""

    def _fail(self, *args: Any, **kwargs: Any) -> NoReturn:
        del args, kwargs
        raise RuntimeError(
            "flask.session is sessionwarden's session, and this request has none: it did not "
            "pass through the SessionWarden middleware (app.test_request_context() and "
            "session_transaction() do not); send the request through app.wsgi_app"
        )

    __setitem__ = __delitem__ = clear = pop = popitem = update = setdefault = _fail


_USER_CACHE = "_sessionwarden_user"


def _current_user() -> Any:
    """The user object of the signed-in user (the :meth:`SessionWarden.user_loader`'s answer),
    ``None`` when nobody is signed in or the loader finds no such user."""
    cached = g.get(_USER_CACHE)
    user_id = current_session().user_id
    if isinstance(cached, tuple) and cached[0] == user_id:  # loaded already for this user
        return cached[1]
    loader = _installed(current_app).warden._load_user
    if loader is None:
        raise RuntimeError("current_user needs a loader: decorate one with @warden.user_loader")
    user = None if user_id is None else loader(user_id)
    setattr(g, _USER_CACHE, (user_id, user))
    return user


#: The signed-in user's object, as the :meth:`SessionWarden.user_loader` returns it (``None`` for
#: an anonymous session), like Flask-Login's ``current_user``; also ``current_user`` in templates.
current_user: Any = LocalProxy(_current_user)


def csrf_token() -> str:
    """A freshly masked CSRF token for a form field or an ``X-CSRF-Token`` header."""
    return current_context().csrf_token()


def csp_nonce() -> str:
    """This response's CSP nonce, for ``<script nonce="{{ csp_nonce() }}">``."""
    return current_context().nonce


# -- decorators -----------------------------------------------------------------------------------
def login_required(view: Callable[P, R]) -> Callable[P, R]:
    """Run the view only for a signed-in session. An anonymous request is answered by the
    :meth:`~SessionWarden.unauthorized_handler` when one is registered; otherwise browsers are
    redirected (303) to the ``login_url`` with ``?next=`` the relative path they asked for, and
    JSON clients, and everyone when there is no ``login_url``, get 401."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if current_session().user_id is None:
            abort(_unauthorized())
        return _call(view, *args, **kwargs)

    return wrapper


def _unauthorized() -> BaseResponse:
    installed = _installed(current_app)
    handler = installed.warden._unauthorized
    if handler is not None:
        return current_app.make_response(current_app.ensure_sync(handler)())
    wants_json = current_context().facts.wants_json
    if installed.login_url and not wants_json:
        query = request.query_string.decode("latin-1")
        return redirect(login_location(installed.login_url, request.path, query), 303)
    refusal = Refusal(401, "authentication-required", "not-authenticated")
    return _response(refusal, wants_json)


def recent_auth_required(max_age: float) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the view only if the user signed in (or re-authenticated) within ``max_age`` seconds
    and no risk rule asked for a step-up. Otherwise :class:`ReauthenticationRequired` is raised,
    answered with 401 (JSON clients) or a 303 to ``reauth_redirect``."""
    if isinstance(max_age, bool) or not isinstance(max_age, int | float) or max_age <= 0:
        raise ValueError("max_age must be a positive number of seconds")

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            current_session().require_recent_auth(max_age)
            return _call(view, *args, **kwargs)

        return wrapper

    return decorate


def _call(view: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    # ensure_sync: an ``async def`` view is run the way Flask runs it (flask[async]).
    result: R = current_app.ensure_sync(view)(*args, **kwargs)
    return result


# -- error handlers: the answers the WSGI middleware would give ------------------------------------
def _response(refusal: Refusal, wants_json: bool) -> Response:
    hdrs, body = _installed(current_app).middleware.guard.render(current_context(), refusal)
    return Response(body, status=refusal.status, headers=_str_headers(hdrs))


def _str_headers(hdrs: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in hdrs]


def json_only(view: Callable[P, R]) -> Callable[P, R | Response]:
    """A view decorator: an unsafe request whose body is not JSON gets 415 and the view does not
    run (a JSON API must not accept what a cross-site form can send)."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        if json_body_refusal(
            request.method, single_content_type(request.headers.getlist("content-type"))
        ):
            return Response(dumps(UNSUPPORTED_MEDIA_TYPE), 415, mimetype="application/json")
        return view(*args, **kwargs)

    return wrapper


def unsafe_methods_only(view: Callable[P, R]) -> Callable[P, R | Response]:
    """A view decorator: a GET, HEAD, OPTIONS or TRACE gets 405 (with ``Allow``) and the view
    does not run (a route that changes state must not be reachable by a link or an ``<img>``)."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        if safe_method_refused(request.method):
            body = dumps(METHOD_NOT_ALLOWED)
            return Response(body, 405, {"allow": ALLOW}, mimetype="application/json")
        return view(*args, **kwargs)

    return wrapper


def _on_raised(exc: ReauthenticationRequired | HttpsRequired) -> Response:
    # Flask turns any exception a view raises into a 500 before the middleware could see it, so
    # the answer is built here, the same as the middleware's; the session is still committed.
    ctx = current_context()
    location = _installed(current_app).middleware.reauth_redirect
    refusal = Guard.refusal_for(ctx, exc, location)
    return _response(refusal, ctx.facts.wants_json)


def _on_store_unavailable(exc: StoreUnavailable) -> Response:
    # A management call (list_sessions, revoke_user) in a view met a store outage: fail closed.
    del exc
    refusal = Refusal(503, "store-unavailable", "session-store", retry_after=1)
    return _response(refusal, current_context().facts.wants_json)
