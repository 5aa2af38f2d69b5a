"""What every front end of the demo shows, whatever the web framework serving it.

The Starlette demo (:mod:`sessionwarden.demo.app`) and the Flask one
(:mod:`sessionwarden.demo.flask_app`) render the same Jinja2 templates, serve the same static
files, answer on the same routes and say the same things; this module holds every
framework-free piece so the two cannot drift apart: the policy, the event sinks, the route
table, the template environment, the context every page gets, the messages, the form and JSON
parsing, the transfer history, the comments of ``/attacks`` and the attacker's page. It imports
no web framework; each app module is only the glue between its framework and these functions.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

from ..clock import Clock
from ..core import Session
from ..dbsc import DbscPolicy
from ..events import EventSink, FanOut
from ..html import sanitize_html
from ..monitor import JsonLogSink, agent_label
from ..policy import HeadersPolicy, HttpsPolicy, MonitorPolicy, Policy, RememberPolicy
from ..records import JSON
from .ended import pop_sentence
from .users import USERNAME_PATTERN

__all__ = [
    "ATTACK_VIEWS",
    "EVENT_LOGGER",
    "FORM_CONTENT_TYPE",
    "LOGGER",
    "LOGIN_FAILED",
    "METRICS_UNAVAILABLE",
    "NOT_FOUND",
    "PURGE_EVERY",
    "REVOKE_OTHERS_FLASH",
    "ROUTES",
    "STATIC",
    "TRANSFER_INPUT_ERROR",
    "DemoViews",
    "Transfer",
    "account_context",
    "add_comment",
    "api_transfer",
    "attacks_context",
    "check_users",
    "demo_policy",
    "event_sinks",
    "evil_page",
    "evil_target",
    "is_form",
    "json_bytes",
    "keepalive_url",
    "log",
    "log_failed_sign_in",
    "log_purged",
    "page_context",
    "parse_form",
    "remember_sent",
    "revoke_flash",
    "routes",
    "sign_in",
    "static_files",
    "take_sent",
    "template_environment",
    "transfer_from",
    "warn_before",
]

#: The logger the JSON event lines go to; the CLI sends it to stderr.
EVENT_LOGGER = "sessionwarden.events"
#: The logger of the demo's own messages (failed sign-ins, purges).
LOGGER = "sessionwarden.demo"
log = logging.getLogger(LOGGER)

_PKG = "sessionwarden"
#: URL name -> (resource path inside the package, content type).
STATIC: Mapping[str, tuple[str, str]] = {
    "sessionwarden.js": ("static/sessionwarden.js", "text/javascript; charset=utf-8"),
    "demo.css": ("demo/static/demo.css", "text/css; charset=utf-8"),
    "attacks.js": ("demo/static/attacks.js", "text/javascript; charset=utf-8"),
    "live.js": ("demo/static/live.js", "text/javascript; charset=utf-8"),
}

#: (path, view method name, HTTP method) of every route of the demo; the one path parameter is
#: written ``{name}`` (the Flask app spells it ``<name>``).
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("/", "home", "GET"),
    ("/login", "login_page", "GET"),
    ("/login", "login", "POST"),
    ("/account", "account", "GET"),
    ("/transfer", "transfer", "POST"),
    ("/transfer/sent", "transfer_sent", "GET"),
    ("/sessions", "sessions", "GET"),
    ("/sessions/revoke", "revoke", "POST"),
    ("/sessions/revoke-others", "revoke_others", "POST"),
    ("/logout", "logout", "POST"),
    ("/attacks", "attacks", "GET"),
    ("/attacks/comment", "comment", "POST"),
    ("/api/me", "api_me", "GET"),
    ("/api/csrf", "api_csrf", "GET"),
    ("/api/transfer", "api_transfer", "POST"),
    ("/metrics", "metrics", "GET"),
    ("/static/{name}", "static_file", "GET"),
)

#: The routes of ``/attacks``, left out by ``--no-attacks`` (its comment sink is unsafe on purpose).
ATTACK_VIEWS = frozenset({"attacks", "comment"})


def routes(*, attacks: bool = True) -> tuple[tuple[str, str, str], ...]:
    """:data:`ROUTES`, without those of ``/attacks`` unless ``attacks``."""
    return tuple(r for r in ROUTES if attacks or r[1] not in ATTACK_VIEWS)


_MAX_TRANSFERS = 20
_MAX_AMOUNT = Decimal("10000")
_MAX_COMMENTS = 5
_MAX_COMMENT_CHARS = 2000
_MAX_FORM_FIELDS = 50
PURGE_EVERY = 300.0

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
LOGIN_FAILED = "Incorrect user name or password."
TRANSFER_INPUT_ERROR = (
    f"Enter a recipient (up to 64 characters) and an amount between 0.01 and {_MAX_AMOUNT}."
)
REVOKE_OTHERS_FLASH = (
    "Every other session was signed out, and this browser got a new session ID:"
    " a copy of its old cookie no longer works."
)
NOT_FOUND = "Not found\n"
METRICS_UNAVAILABLE = "metrics need prometheus-client\n"
#: Where browsers post CSP violation reports (answered by the middleware: ``csp.violation``).
CSP_REPORT_PATH = "/csp-reports"
#: The variable holding the bearer token that lets other machines read ``/metrics``.
METRICS_TOKEN_ENV = "SESSIONWARDEN_METRICS_TOKEN"  # noqa: S105 - the variable name
METRICS_FORBIDDEN = (
    f"/metrics is served to this machine only, or with Authorization: Bearer ${METRICS_TOKEN_ENV}\n"
)


def demo_policy(
    secret: bytes,
    *,
    idle_timeout: float = 1800.0,
    absolute_timeout: float = 43_200.0,
    rotate_every: float = 900.0,
    trusted_proxies: tuple[str, ...] = (),
    dbsc: bool = False,
    allowed_hosts: tuple[str, ...] = (),
) -> Policy:
    """The demo's policy: library defaults (a user-agent change revokes the session), CSP
    violation reports received at :data:`CSP_REPORT_PATH`, at most five sessions per user, the
    timeouts and trusted proxies chosen on the command line, the hosts it answers to (none:
    loopback only), "keep me signed in" for a week away and a month in all (at least the
    normal timeouts) and, with ``dbsc``, device bound sessions offered to browsers that support
    them."""
    grace = min(10.0, rotate_every / 2) if rotate_every else 10.0
    return Policy(
        secret_keys=(secret,),
        idle_timeout=idle_timeout,
        absolute_timeout=absolute_timeout,
        remember=RememberPolicy(max(7 * 86_400, idle_timeout), max(30 * 86_400, absolute_timeout)),
        rotate_every=rotate_every,
        rotation_grace=grace,
        max_sessions_per_user=5,
        allowed_hosts=allowed_hosts,
        monitor=MonitorPolicy(on_high="revoke", agent_change_is_high=True),
        dbsc=DbscPolicy(enabled=dbsc),
        # The JSON API fails over plain HTTP instead of being redirected.
        https=HttpsPolicy(trusted_proxies=trusted_proxies, refuse_paths=("/api",)),
        # What the CSP blocks (the stored-XSS comment of /attacks) is reported here.
        headers=HeadersPolicy(csp_report_path=CSP_REPORT_PATH),
    )


# --------------------------------------------------------------------------------------------
# Start-up: users, event sinks, templates, static files
# --------------------------------------------------------------------------------------------


def check_users(users: Mapping[str, str]) -> None:
    """Refuse a user name the demo's accounts may not have."""
    for name in users:
        if not USERNAME_PATTERN.fullmatch(name):
            raise ValueError(f"invalid user name {name!r}")


def _prometheus_sink() -> tuple[EventSink | None, Any]:
    try:
        from ..monitor import PrometheusSink

        sink = PrometheusSink()
    except ImportError:
        return None, None
    return sink, sink.registry


def event_sinks(extra: EventSink | None) -> tuple[EventSink, Any]:
    """Where the demo's events go (JSON log lines, Prometheus counters when prometheus-client
    is installed, and ``extra``), and the Prometheus registry (``None`` without it)."""
    prom, registry = _prometheus_sink()
    sinks: list[EventSink] = [JsonLogSink(logging.getLogger(EVENT_LOGGER))]
    if prom is not None:
        sinks.append(prom)
    if extra is not None:
        sinks.append(extra)
    return FanOut(*sinks), registry


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
    """Sessions store a short browser description already; raw user agents (a product token
    has a slash) are described the same way."""
    if not isinstance(ua, str) or not ua:
        return "unknown"
    return agent_label(ua) if "/" in ua else ua


def template_environment() -> jinja2.Environment:
    """The demo's templates: autoescaped, strict about undefined names, with its filters."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(_PKG, "demo/templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _fmt_time
    env.filters["iso"] = _iso_time
    env.filters["duration"] = _duration
    env.filters["agent"] = _agent
    env.filters["sanitize"] = lambda html: Markup(sanitize_html(str(html)))  # noqa: S704
    return env


def _static_bytes(name: str) -> bytes:
    return resources.files(_PKG).joinpath(STATIC[name][0]).read_bytes()


def static_files() -> dict[str, bytes]:
    """URL name -> contents of each static file (read once, at start-up)."""
    return {name: _static_bytes(name) for name in STATIC}


def log_purged(removed: int) -> None:
    if removed:
        log.info("purged %d expired entries", removed)


# --------------------------------------------------------------------------------------------
# Every page
# --------------------------------------------------------------------------------------------


def warn_before(idle: float) -> int:
    """Seconds before the idle deadline (``idle`` seconds) at which the page script warns."""
    return int(max(5.0, min(60.0, idle / 3)))


#: The idle timeout the ``/attacks`` hint suggests, to watch the warning quickly.
QUICK_IDLE = 90.0


def hints(policy: Policy, origin: str) -> dict[str, Any]:
    """What the pages' hints say, computed from the running policy and address: the warning
    time a short idle timeout would give, how often "last seen" moves, the real origin (for
    the replay command) and a port for the attacker's page next to it."""
    parts = urllib.parse.urlsplit(origin)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return {
        "origin": origin,
        "port": port,
        "evil_port_hint": port + 1 if port < 65535 else port - 1,
        "quick_idle": int(QUICK_IDLE),
        "quick_warn_before": warn_before(QUICK_IDLE),
        "touch_every": int(policy.effective_touch_interval),
    }


def keepalive_url(session: Session) -> str:
    return "/api/me" if session.user_id else "/api/csrf"


def page_context(
    session: Session,
    policy: Policy,
    *,
    nonce: str,
    path: str,
    evil_url: str | None,
    attacks: bool = True,
    origin: str = "http://127.0.0.1:8000",
) -> dict[str, Any]:
    """What ``base.html`` needs on every page. Pops the session's flash message."""
    user = session.user_id
    flash = session.pop("flash") if "flash" in session else None
    return {
        "user": user,
        "nonce": nonce,
        "csrf_token": session.csrf_token(),
        # The session's own: a remembered one's is the remember idle timeout.
        "idle_timeout": int(session.lifetime.idle),
        "warn_before": warn_before(session.lifetime.idle),
        "remember": policy.remember,
        "keepalive_url": keepalive_url(session),
        "path": path,
        "flash": flash if isinstance(flash, str) else None,
        "evil_url": evil_url,
        "attacks": attacks,
        **hints(policy, origin),
    }


class DemoViews:
    """What the views of either app hold, and the framework-free part of them; each app's
    ``_Demo`` adds the views themselves, one method a name of :data:`ROUTES`."""

    def __init__(
        self,
        *,
        policy: Policy,
        users: Mapping[str, str],
        clock: Clock,
        evil_url: str | None,
        metrics_registry: Any,
        attacks: bool = True,
        metrics_token: str | None = None,
    ) -> None:
        self.policy = policy
        self.metrics_token = metrics_token
        self.attacks_on = attacks
        self.users = dict(users)
        self.clock = clock
        self.evil_url = evil_url
        self.metrics_registry = metrics_registry
        self.env = template_environment()
        self.static = static_files()

    def page(
        self,
        session: Session,
        template: str,
        /,
        *,
        nonce: str,
        path: str,
        origin: str = "http://127.0.0.1:8000",
        **ctx: Any,
    ) -> str:
        """``template`` rendered with :func:`page_context` and ``ctx`` (which may hold a
        ``session`` of its own: ``account.html`` shows the session)."""
        context = page_context(
            session,
            self.policy,
            nonce=nonce,
            path=path,
            evil_url=self.evil_url,
            attacks=self.attacks_on,
            origin=origin,
        )
        if template == "login.html":  # why the visitor was signed out, shown once
            context["ended"] = pop_sentence(session)
        context.update(ctx)
        return self.env.get_template(template).render(context)

    def static_content(self, name: str) -> tuple[bytes, str] | None:
        """The static file ``name`` and its content type; ``None`` for an unknown name."""
        if name not in self.static:
            return None
        return self.static[name], STATIC[name][1]

    def metrics_allowed(self, local_peer: bool, authorization: str) -> bool:
        """Whether a request may read ``/metrics``: its direct peer is this machine (not a
        proxy forwarding someone else's request), or it carries ``Authorization: Bearer`` with
        the metrics token (compared in constant time). The counters show sign-in rates and
        refusals: nothing for the public."""
        if local_peer:
            return True
        token = self.metrics_token
        scheme, _, presented = authorization.strip().partition(" ")
        return bool(
            token
            and scheme.lower() == "bearer"
            and hmac.compare_digest(presented.strip().encode(), token.encode())
        )

    def metrics_content(self) -> tuple[bytes, str] | None:
        """The Prometheus exposition and its content type; ``None`` without prometheus-client."""
        if self.metrics_registry is None:
            return None
        import prometheus_client

        data = prometheus_client.generate_latest(self.metrics_registry)
        return data, prometheus_client.CONTENT_TYPE_LATEST


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------


def is_form(content_type: str) -> bool:
    """Whether a ``Content-Type`` header names an urlencoded form."""
    return content_type.split(";", 1)[0].strip().lower() == FORM_CONTENT_TYPE


def parse_form(body: bytes) -> dict[str, str]:
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


# --------------------------------------------------------------------------------------------
# Signing in, the account, transfers, sessions
# --------------------------------------------------------------------------------------------


def log_failed_sign_in(client: str) -> None:
    log.info("failed sign-in from %s", client)


def sign_in(session: Session, username: str, remember: bool = False) -> None:
    """Sign ``username`` in after a correct password (which replaces the session ID);
    ``remember``: "Keep me signed in" was ticked."""
    if session.user_id != username:
        session.pop("transfers")  # one user's history never carries over to another
    session.login(username, remember=remember)
    session["flash"] = f"Signed in as {username}. Your session ID was replaced on sign-in."


def revoke_flash(ref: str, ok: bool) -> str:
    return f"Session {ref} was signed out." if ok else "That session was already gone."


def account_context(
    session: Session, policy: Policy, activity: list[dict[str, JSON]]
) -> dict[str, Any]:
    """The extra context of ``account.html``."""
    transfers = _list_of_dicts(session.get("transfers"))
    return {
        "session": session,
        "transfers": list(reversed(transfers)),
        "activity": list(reversed(activity))[:8],
        "absolute_timeout": int(session.lifetime.absolute),
        "rotate_every": int(policy.rotate_every),
        "form_error": None,
    }


@dataclass(frozen=True, slots=True)
class Transfer:
    to: str
    amount: str
    at: float

    def to_json(self) -> dict[str, JSON]:
        return {"to": self.to, "amount": self.amount, "at": self.at}


def record_transfer(session: Session, to: str, amount: Decimal, now: float) -> Transfer:
    """Append a transfer to the session's history (the last few are kept)."""
    transfer = Transfer(to=to, amount=f"{amount:.2f}", at=now)
    history = _list_of_dicts(session.get("transfers"))
    history.append(transfer.to_json())
    session["transfers"] = list(history[-_MAX_TRANSFERS:])
    return transfer


def transfer_from(session: Session, to: object, amount: object, now: float) -> Transfer | None:
    """Record the transfer of ``amount`` to ``to`` (raw form or JSON values); ``None``, and
    nothing recorded, when either is invalid."""
    recipient = _clean_recipient(to)
    value = _parse_amount(amount)
    if recipient is None or value is None:
        return None
    return record_transfer(session, recipient, value, now)


#: The session key of the confirmation ``/transfer/sent`` shows once (post/redirect/get).
SENT_KEY = "transfer_sent"


def remember_sent(session: Session, transfer: Transfer) -> None:
    """Keep the confirmation of a transfer for the one page that shows it after the redirect."""
    session[SENT_KEY] = transfer.to_json()


def take_sent(session: Session) -> Transfer | None:
    """The confirmation kept by :func:`remember_sent`, removed: a reload does not show it
    again, and never sends the money again (the POST is not repeated)."""
    kept = session.pop(SENT_KEY) if SENT_KEY in session else None
    if not isinstance(kept, dict):
        return None
    to, amount, at = kept.get("to"), kept.get("amount"), kept.get("at")
    if not isinstance(to, str) or not isinstance(amount, str) or not isinstance(at, int | float):
        return None
    return Transfer(to=to, amount=amount, at=float(at))


def api_transfer(session: Session, body: bytes, now: float) -> tuple[dict[str, JSON], int]:
    """``POST /api/transfer`` of a signed-in session: the JSON answer and its status."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, dict):
        return {"error": "bad-request", "reason": "json-object"}, 400
    done = transfer_from(session, payload.get("to"), payload.get("amount"), now)
    if done is None:
        return {"error": "bad-request", "reason": "to-and-amount"}, 400
    return {"ok": True, "transfer": done.to_json()}, 200


def json_bytes(content: Any) -> bytes:
    """A JSON body, encoded exactly as Starlette's ``JSONResponse`` does."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


# --------------------------------------------------------------------------------------------
# The attacks page
# --------------------------------------------------------------------------------------------


def attacks_context(session: Session, policy: Policy) -> dict[str, Any]:
    """The extra context of ``attacks.html``."""
    return {
        "comments": _list_of_str(session.get("comments")),
        "idle_meta": {
            "session-idle-timeout": str(int(session.lifetime.idle)),
            "session-warn-before": str(warn_before(session.lifetime.idle)),
            "session-keepalive-url": keepalive_url(session),
        },
    }


def add_comment(session: Session, form: Mapping[str, str]) -> None:
    """``POST /attacks/comment``: keep the comment (raw, on purpose) or clear them all."""
    if form.get("action") == "clear":
        session.pop("comments")
        session["flash"] = "Comments cleared."
        return
    text = form.get("comment", "").strip()[:_MAX_COMMENT_CHARS]
    if text:
        comments = _list_of_str(session.get("comments"))
        comments.append(text)
        session["comments"] = list(comments[-_MAX_COMMENTS:])


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


def evil_target(target: str) -> str:
    """``target`` (the demo's origin) without a trailing slash; ``ValueError`` unless it is an
    http(s) origin."""
    target = target.rstrip("/")
    parts = urllib.parse.urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"target must be an origin like http://127.0.0.1:8000, got {target!r}")
    return target


def evil_page(target: str, *, auto: bool) -> str:
    """The cross-site attacker page, posting a transfer to ``target`` (from :func:`evil_target`);
    it submits itself unless ``auto`` is false (``?auto=0``)."""
    esc = Markup.escape
    return _EVIL_PAGE.format(
        target=esc(target),
        action=esc(target + "/transfer"),
        autosubmit=Markup(_AUTOSUBMIT) if auto else "",  # noqa: S704 - constant markup
    )
