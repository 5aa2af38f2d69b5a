"""What every front end of the demo shows, whatever the web framework serving it.

The Starlette demo (:mod:`sessionwarden.demo.app`) and the Flask one
(:mod:`sessionwarden.demo.flask_app`) render the same Jinja2 templates, serve the same static
files and say the same things; this module holds the framework-free pieces so the two cannot
drift apart: the template environment, the context every page gets, the messages, the form and
JSON parsing, the transfer history, the comments of ``/attacks`` and the attacker's page.

The small parsers and filters are the very functions of :mod:`sessionwarden.demo.app`, imported
from there, so there is one implementation of each.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import jinja2
from markupsafe import Markup

from ..core import Session
from ..html import sanitize_html
from ..policy import Policy
from ..records import JSON
from .app import (
    _AUTOSUBMIT,
    _EVIL_PAGE,
    _MAX_AMOUNT,
    _MAX_COMMENT_CHARS,
    _MAX_COMMENTS,
    _MAX_TRANSFERS,
    _PKG,
    _PURGE_EVERY,
    _STATIC,
    EVENT_LOGGER,
    LOGIN_FAILED,
    _agent,
    _clean_recipient,
    _duration,
    _fmt_time,
    _iso_time,
    _list_of_dicts,
    _list_of_str,
    _parse_amount,
    _parse_form,
    _prometheus_sink,
    _static_bytes,
    _Transfer,
    demo_policy,
)

__all__ = [
    "EVENT_LOGGER",
    "FORM_CONTENT_TYPE",
    "LOGIN_FAILED",
    "PURGE_EVERY",
    "REVOKE_OTHERS_FLASH",
    "STATIC",
    "TRANSFER_INPUT_ERROR",
    "Transfer",
    "account_context",
    "add_comment",
    "attacks_context",
    "clean_recipient",
    "demo_policy",
    "evil_page",
    "json_bytes",
    "keepalive_url",
    "login_flash",
    "page_context",
    "parse_amount",
    "parse_form",
    "prometheus_sink",
    "record_transfer",
    "revoke_flash",
    "static_files",
    "template_environment",
    "warn_before",
]

Transfer = _Transfer
PURGE_EVERY = _PURGE_EVERY
#: URL name -> (resource path inside the package, content type).
STATIC: Mapping[str, tuple[str, str]] = _STATIC
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
TRANSFER_INPUT_ERROR = (
    f"Enter a recipient (up to 64 characters) and an amount between 0.01 and {_MAX_AMOUNT}."
)
REVOKE_OTHERS_FLASH = "Every other session was signed out. This one is the only one left."

parse_form = _parse_form
parse_amount = _parse_amount
clean_recipient = _clean_recipient
prometheus_sink = _prometheus_sink


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


def static_files() -> dict[str, bytes]:
    """URL name -> contents of each static file (read once, at start-up)."""
    return {name: _static_bytes(name) for name in STATIC}


def warn_before(policy: Policy) -> int:
    """Seconds before the idle deadline at which the page script warns."""
    return int(max(5.0, min(60.0, policy.idle_timeout / 3)))


def keepalive_url(session: Session) -> str:
    return "/api/me" if session.user_id else "/api/csrf"


def page_context(
    session: Session, policy: Policy, *, nonce: str, path: str, evil_url: str | None
) -> dict[str, Any]:
    """What ``base.html`` needs on every page. Pops the session's flash message."""
    user = session.user_id
    flash = session.pop("flash") if "flash" in session else None
    return {
        "user": user,
        "nonce": nonce,
        "csrf_token": session.csrf_token(),
        "idle_timeout": int(policy.idle_timeout),
        "warn_before": warn_before(policy),
        "keepalive_url": keepalive_url(session),
        "path": path,
        "flash": flash if isinstance(flash, str) else None,
        "evil_url": evil_url,
    }


def login_flash(username: str) -> str:
    return f"Signed in as {username}. Your session ID was replaced on sign-in."


def revoke_flash(ref: str, ok: bool) -> str:
    return f"Session {ref[:12]} was signed out." if ok else "That session was already gone."


def account_context(
    session: Session, policy: Policy, activity: list[dict[str, JSON]]
) -> dict[str, Any]:
    """The extra context of ``account.html``."""
    transfers = _list_of_dicts(session.get("transfers"))
    return {
        "session": session,
        "transfers": list(reversed(transfers)),
        "activity": list(reversed(activity))[:8],
        "absolute_timeout": int(policy.absolute_timeout),
        "rotate_every": int(policy.rotate_every),
        "form_error": None,
    }


def record_transfer(session: Session, to: str, amount: Decimal, now: float) -> _Transfer:
    """Append a transfer to the session's history (the last few are kept)."""
    transfer = _Transfer(to=to, amount=f"{amount:.2f}", at=now)
    history = _list_of_dicts(session.get("transfers"))
    history.append(transfer.to_json())
    session["transfers"] = list(history[-_MAX_TRANSFERS:])
    return transfer


def attacks_context(session: Session, policy: Policy) -> dict[str, Any]:
    """The extra context of ``attacks.html``."""
    return {
        "comments": _list_of_str(session.get("comments")),
        "idle_meta": {
            "session-idle-timeout": str(int(policy.idle_timeout)),
            "session-warn-before": str(warn_before(policy)),
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


def json_bytes(content: Any) -> bytes:
    """A JSON body, encoded exactly as Starlette's ``JSONResponse`` does."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def evil_page(target: str, *, auto: bool) -> str:
    """The cross-site attacker page, posting a transfer to ``target`` (the demo's origin)."""
    esc = Markup.escape
    return _EVIL_PAGE.format(
        target=esc(target),
        action=esc(target + "/transfer"),
        autosubmit=Markup(_AUTOSUBMIT) if auto else "",  # noqa: S704 - constant markup
    )
