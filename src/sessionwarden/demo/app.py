"""The demo application: a tiny bank that shows every defence of sessionwarden at work.

``create_app`` builds the ASGI app (Starlette behind :class:`SessionWardenMiddleware`), so tests
can serve it in-process; :mod:`sessionwarden.demo.cli` serves it with uvicorn. Every page is a
Jinja2 template with autoescaping; the only script is loaded from a file with the response's CSP
nonce, and the only stylesheet is a file too, so the strict Content-Security-Policy holds.

``create_evil_app`` is the "attacker" page served on a second origin (``--evil-port``): an
auto-submitting form that posts a transfer to the demo from another site.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..asgi import ASGIApp, SessionWardenMiddleware, get_middleware, get_session
from ..clock import Clock, SystemClock
from ..core import Session
from ..events import EventSink, FanOut
from ..html import sanitize_html
from ..monitor import JsonLogSink, agent_family
from ..policy import MonitorPolicy, Policy
from ..records import JSON
from ..stores import AsyncSessionStore, open_async_store
from .users import USERNAME_PATTERN, check_login

__all__ = ["EVENT_LOGGER", "create_app", "create_evil_app", "demo_policy"]

#: The logger the JSON event lines go to; the CLI sends it to stderr.
EVENT_LOGGER = "sessionwarden.events"
_log = logging.getLogger("sessionwarden.demo")

_PKG = "sessionwarden"
_STATIC: dict[str, tuple[str, str]] = {
    # URL name -> (resource path inside the package, content type)
    "sessionwarden.js": ("static/sessionwarden.js", "text/javascript; charset=utf-8"),
    "demo.css": ("demo/static/demo.css", "text/css; charset=utf-8"),
    "attacks.js": ("demo/static/attacks.js", "text/javascript; charset=utf-8"),
}
_MAX_TRANSFERS = 20
_MAX_AMOUNT = Decimal("10000")
_MAX_COMMENTS = 5
_MAX_COMMENT_CHARS = 2000
_MAX_FORM_FIELDS = 50
_PURGE_EVERY = 300.0
LOGIN_FAILED = "Incorrect user name or password."


def demo_policy(
    secret: bytes,
    *,
    idle_timeout: float = 1800.0,
    absolute_timeout: float = 43_200.0,
    rotate_every: float = 900.0,
) -> Policy:
    """The demo's policy: library defaults (a user-agent change revokes the session), at most
    five sessions per user, and the timeouts chosen on the command line."""
    grace = min(10.0, rotate_every / 2) if rotate_every else 10.0
    return Policy(
        secret_keys=(secret,),
        idle_timeout=idle_timeout,
        absolute_timeout=absolute_timeout,
        rotate_every=rotate_every,
        rotation_grace=grace,
        max_sessions_per_user=5,
        monitor=MonitorPolicy(on_high="revoke", agent_change_is_high=True),
    )


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _static_bytes(name: str) -> bytes:
    return resources.files(_PKG).joinpath(_STATIC[name][0]).read_bytes()


def _fmt_time(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    when = dt.datetime.fromtimestamp(float(value), tz=dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso_time(value: object) -> str:
    if not isinstance(value, int | float):
        return ""
    return dt.datetime.fromtimestamp(float(value), tz=dt.UTC).isoformat(timespec="seconds")


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    hours, rest = divmod(s, 3600)
    return f"{hours} h {rest // 60:02d} min" if rest else f"{hours} h"


def _agent(ua: object) -> str:
    if not isinstance(ua, str) or not ua:
        return "unknown"
    family, major = agent_family(ua)
    return f"{family} {major}" if major else family


def _parse_form(body: bytes) -> dict[str, str]:
    """First value of each field of an urlencoded body; junk yields an empty form."""
    try:
        fields = urllib.parse.parse_qs(
            body.decode("utf-8", "replace"),
            keep_blank_values=True,
            max_num_fields=_MAX_FORM_FIELDS,
        )
    except ValueError:
        return {}
    return {k: v[0] for k, v in fields.items() if v}


def _parse_amount(raw: object) -> Decimal | None:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        return None
    try:
        amount = Decimal(str(raw).strip())
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount <= 0 or amount > _MAX_AMOUNT:
        return None
    amount = amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return amount if amount > 0 else None


def _clean_recipient(raw: object) -> str | None:
    if not isinstance(raw, str):
        return None
    to = raw.strip()
    if not to or len(to) > 64 or not to.isprintable():
        return None
    return to


def _list_of_dicts(value: JSON) -> list[dict[str, JSON]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def _list_of_str(value: JSON) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, str)]


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@dataclass(frozen=True, slots=True)
class _Transfer:
    to: str
    amount: str
    at: float

    def to_json(self) -> dict[str, JSON]:
        return {"to": self.to, "amount": self.amount, "at": self.at}


# --------------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------------


class _Demo:
    def __init__(
        self,
        *,
        policy: Policy,
        users: Mapping[str, str],
        clock: Clock,
        evil_url: str | None,
        metrics_registry: Any,
    ) -> None:
        self.policy = policy
        self.users = dict(users)
        self.clock = clock
        self.evil_url = evil_url
        self.metrics_registry = metrics_registry
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader(_PKG, "demo/templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = _fmt_time
        self.env.filters["iso"] = _iso_time
        self.env.filters["duration"] = _duration
        self.env.filters["agent"] = _agent
        self.env.filters["sanitize"] = lambda html: Markup(sanitize_html(str(html)))  # noqa: S704
        self.static = {name: _static_bytes(name) for name in _STATIC}

    # -- rendering --------------------------------------------------------------------------
    def warn_before(self) -> int:
        idle = self.policy.idle_timeout
        return int(max(5.0, min(60.0, idle / 3)))

    def render(
        self, request: Request, template: str, *, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        session = get_session(request)
        user = session.user_id
        flash = session.pop("flash") if "flash" in session else None
        context: dict[str, Any] = {
            "user": user,
            "nonce": request.scope.get("state", {}).get("csp_nonce", ""),
            "csrf_token": session.csrf_token(),
            "idle_timeout": int(self.policy.idle_timeout),
            "warn_before": self.warn_before(),
            "keepalive_url": "/api/me" if user else "/api/csrf",
            "path": request.url.path,
            "flash": flash if isinstance(flash, str) else None,
            "evil_url": self.evil_url,
        }
        context.update(ctx)
        body = self.env.get_template(template).render(context)
        return HTMLResponse(body, status_code=status, headers={"cache-control": "no-store"})

    async def form(self, request: Request) -> dict[str, str]:
        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return {}
        return _parse_form(await request.body())

    # -- pages ------------------------------------------------------------------------------
    async def home(self, request: Request) -> Response:
        return self.render(request, "home.html")

    async def login_page(self, request: Request) -> Response:
        return self.render(request, "login.html", error=None)

    async def login(self, request: Request) -> Response:
        session = get_session(request)
        form = await self.form(request)
        username = form.get("username", "")
        password = form.get("password", "")
        ok = await run_in_threadpool(check_login, self.users, username, password)
        if not ok:
            _log.info("failed sign-in from %s", request.client.host if request.client else "-")
            return self.render(request, "login.html", status=401, error=LOGIN_FAILED)
        if session.user_id != username:
            session.pop("transfers")  # one user's history never carries over to another
        session.login(username)
        session["flash"] = f"Signed in as {username}. Your session ID was replaced on sign-in."
        return _see_other("/account")

    async def account(self, request: Request) -> Response:
        session = get_session(request)
        if session.user_id is None:
            return _see_other("/login")
        mw = get_middleware(request)
        activity = await mw.activity(session)
        transfers = _list_of_dicts(session.get("transfers"))
        return self.render(
            request,
            "account.html",
            session=session,
            transfers=list(reversed(transfers)),
            activity=list(reversed(activity))[:8],
            absolute_timeout=int(self.policy.absolute_timeout),
            rotate_every=int(self.policy.rotate_every),
            form_error=None,
        )

    def _record_transfer(self, session: Session, to: str, amount: Decimal) -> _Transfer:
        transfer = _Transfer(to=to, amount=f"{amount:.2f}", at=self.clock.now())
        history = _list_of_dicts(session.get("transfers"))
        history.append(transfer.to_json())
        session["transfers"] = list(history[-_MAX_TRANSFERS:])
        return transfer

    async def transfer(self, request: Request) -> Response:
        session = get_session(request)
        if session.user_id is None:
            return _see_other("/login")
        form = await self.form(request)
        to = _clean_recipient(form.get("to"))
        amount = _parse_amount(form.get("amount"))
        if to is None or amount is None:
            return self.render(
                request,
                "transfer_error.html",
                status=400,
                error="Enter a recipient (up to 64 characters) and an amount between "
                f"0.01 and {_MAX_AMOUNT}.",
            )
        done = self._record_transfer(session, to, amount)
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
        session["flash"] = (
            f"Session {ref[:12]} was signed out." if ok else "That session was already gone."
        )
        return _see_other("/sessions")

    async def revoke_others(self, request: Request) -> Response:
        session = get_session(request)
        if session.user_id is None:
            return _see_other("/login")
        session.revoke_other_sessions()
        session["flash"] = "Every other session was signed out. This one is the only one left."
        return _see_other("/sessions")

    async def logout(self, request: Request) -> Response:
        get_session(request).logout()
        return _see_other("/login")

    # -- attacks ----------------------------------------------------------------------------
    async def attacks(self, request: Request) -> Response:
        session = get_session(request)
        comments = _list_of_str(session.get("comments"))
        return self.render(
            request,
            "attacks.html",
            comments=comments,
            idle_meta={
                "session-idle-timeout": str(int(self.policy.idle_timeout)),
                "session-warn-before": str(self.warn_before()),
                "session-keepalive-url": "/api/me" if session.user_id else "/api/csrf",
            },
        )

    async def comment(self, request: Request) -> Response:
        session = get_session(request)
        form = await self.form(request)
        if form.get("action") == "clear":
            session.pop("comments")
            session["flash"] = "Comments cleared."
            return _see_other("/attacks#xss")
        text = form.get("comment", "").strip()[:_MAX_COMMENT_CHARS]
        if text:
            comments = _list_of_str(session.get("comments"))
            comments.append(text)
            session["comments"] = list(comments[-_MAX_COMMENTS:])
        return _see_other("/attacks#xss")

    # -- JSON API ---------------------------------------------------------------------------
    async def api_me(self, request: Request) -> Response:
        user = get_session(request).user_id
        if user is None:
            return JSONResponse({"error": "not-authenticated"}, status_code=401)
        return JSONResponse({"user": user})

    async def api_csrf(self, request: Request) -> Response:
        return JSONResponse({"csrf_token": get_session(request).csrf_token()})

    async def api_transfer(self, request: Request) -> Response:
        session = get_session(request)
        if session.user_id is None:
            return JSONResponse({"error": "not-authenticated"}, status_code=401)
        try:
            payload = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict):
            return JSONResponse({"error": "bad-request", "reason": "json-object"}, status_code=400)
        to = _clean_recipient(payload.get("to"))
        amount = _parse_amount(payload.get("amount"))
        if to is None or amount is None:
            return JSONResponse(
                {"error": "bad-request", "reason": "to-and-amount"}, status_code=400
            )
        done = self._record_transfer(session, to, amount)
        return JSONResponse({"ok": True, "transfer": done.to_json()})

    # -- plumbing ---------------------------------------------------------------------------
    async def static_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.static:
            return Response("Not found\n", status_code=404, media_type="text/plain")
        return Response(
            self.static[name],
            media_type=_STATIC[name][1],
            headers={"cache-control": "no-cache"},
        )

    async def metrics(self, request: Request) -> Response:
        if self.metrics_registry is None:
            return Response(
                "metrics need prometheus-client\n", status_code=404, media_type="text/plain"
            )
        import prometheus_client

        data = prometheus_client.generate_latest(self.metrics_registry)
        return Response(data, media_type=prometheus_client.CONTENT_TYPE_LATEST)


def _prometheus_sink() -> tuple[EventSink | None, Any]:
    try:
        from ..monitor import PrometheusSink

        sink = PrometheusSink()
    except ImportError:
        return None, None
    return sink, sink.registry


def create_app(
    *,
    store: str | AsyncSessionStore,
    policy: Policy,
    users: dict[str, str],
    clock: Clock | None = None,
    evil_url: str | None = None,
    sink: EventSink | None = None,
) -> ASGIApp:
    """The demo as an ASGI app.

    ``store``: a store URL (``sqlite:///demo.db``, ``redis://127.0.0.1:6379/0``, ``memory://``)
    or a store. ``users``: user name -> :func:`~sessionwarden.demo.users.hash_password` hash.
    ``evil_url``: where the cross-site attacker page is served, linked from ``/attacks``.
    ``sink``: an extra event sink (events also go to JSON logs and Prometheus counters).
    """
    clock = clock or SystemClock()
    for name in users:
        if not USERNAME_PATTERN.fullmatch(name):
            raise ValueError(f"invalid user name {name!r}")
    prom, registry = _prometheus_sink()
    sinks: list[EventSink] = [JsonLogSink(logging.getLogger(EVENT_LOGGER))]
    if prom is not None:
        sinks.append(prom)
    if sink is not None:
        sinks.append(sink)
    demo = _Demo(
        policy=policy, users=users, clock=clock, evil_url=evil_url, metrics_registry=registry
    )
    the_store = open_async_store(store) if isinstance(store, str) else store
    holder: dict[str, SessionWardenMiddleware] = {}

    async def purge_forever() -> None:
        while True:
            await asyncio.sleep(_PURGE_EVERY)
            try:
                removed = await holder["mw"].purge()
                if removed:
                    _log.info("purged %d expired entries", removed)
            except Exception:  # a failed purge is retried next time
                _log.warning("purge failed", exc_info=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(purge_forever())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await the_store.close()

    Handler = Callable[[Request], Awaitable[Response]]
    routes_spec: list[tuple[str, Handler, list[str]]] = [
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
        ("/static/{name}", demo.static_file, ["GET"]),
    ]
    routes = [Route(path, fn, methods=methods) for path, fn, methods in routes_spec]
    inner = Starlette(routes=routes, lifespan=lifespan)
    mw = SessionWardenMiddleware(
        inner, policy=policy, store=the_store, clock=clock, sink=FanOut(*sinks)
    )
    holder["mw"] = mw
    return mw


# --------------------------------------------------------------------------------------------
# The attacker's page, served on another origin
# --------------------------------------------------------------------------------------------

_EVIL_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>You won a prize!</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 3rem auto;
       padding: 0 1rem; color: #1b1b1b; background: #fff8e6; }}
h1 {{ color: #8a1c1c; }}
code {{ background: #fff; padding: 0 .25em; }}
button {{ font: inherit; padding: .5em 1em; }}
</style>
</head>
<body>
<main>
<h1>Congratulations, you won a prize!</h1>
<p>This page plays the attacker. It lives on <strong>another origin</strong> than the demo and
holds a hidden form that posts a transfer of 1000.00 to <code>mallory</code> to
<code>{target}/transfer</code>, with a made-up CSRF token.</p>
<p>The demo refuses it with <strong>403</strong>: the browser labels the request
<code>Sec-Fetch-Site: cross-site</code> (and sends no <code>SameSite=Lax</code> session cookie
with a cross-site POST), and the token would not match anyway.</p>
<form id="attack" method="post" action="{action}">
<input type="hidden" name="to" value="mallory">
<input type="hidden" name="amount" value="1000">
<input type="hidden" name="csrf_token" value="forged-token">
<button type="submit">Claim my prize</button>
</form>
{autosubmit}
</main>
</body>
</html>
"""

_AUTOSUBMIT = (
    '<p>Submitting automatically&hellip; (<a href="?auto=0">stay on this page</a>)</p>\n'
    "<script>setTimeout(function () { document.getElementById('attack').submit(); }, 600);"
    "</script>"
)


def create_evil_app(target: str) -> ASGIApp:
    """The cross-site attacker page, posting to ``target`` (the demo's origin)."""
    target = target.rstrip("/")
    parts = urllib.parse.urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"target must be an origin like http://127.0.0.1:8000, got {target!r}")

    async def page(request: Request) -> Response:
        auto = request.query_params.get("auto", "1") != "0"
        esc = Markup.escape
        body = _EVIL_PAGE.format(
            target=esc(target),
            action=esc(target + "/transfer"),
            autosubmit=Markup(_AUTOSUBMIT) if auto else "",  # noqa: S704 - constant markup
        )
        return HTMLResponse(body, headers={"cache-control": "no-store"})

    return Starlette(routes=[Route("/", page, methods=["GET"])])
