"""The guard's refusals: the responses it sends instead of running the application, and the
default pages they show (JSON for API clients, a short plain text for people)."""

from __future__ import annotations

from dataclasses import dataclass

from .core.session import (
    PLAIN_HTTP_REASON,
    STEP_UP_REASON,
    HttpsRequired,
    ReauthenticationRequired,
)
from .hosts import HOW_TO_ALLOW
from .records import JSON, dumps

_REASONS = {
    303: "See Other",
    400: "Bad Request",
    401: "Unauthorized",
    308: "Permanent Redirect",
    403: "Forbidden",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_HUMAN = {
    "bad-request": "Bad request.",
    "host-not-allowed": "Unknown host. " + HOW_TO_ALLOW[0].upper() + HOW_TO_ALLOW[1:],
    "reauthentication-required": "Please sign in again to continue.",
    # An operation's step-up (require_step_up); a risk decision's (reason "step-up-required")
    # is a re-authentication and reads as one.
    STEP_UP_REASON: "Please confirm this operation with your second factor first.",
    "stale-session": "This session moved on; reload the page and try again.",
    "https-required": "This site is only served over HTTPS.",
    "cross-origin": "Cross-site request refused.",
    "csrf": "The form expired or did not come from this site. Reload the page and try again.",
    "too-large": "Request body too large.",
    "method-not-allowed": "This address changes data and cannot be opened with a link.",
    "throttled": "Too many requests with invalid sessions. Try again later.",
    "internal-error": "Something went wrong on our side. Please try again later.",
    "store-unavailable": "Sessions are temporarily unavailable. Please try again shortly.",
    "session-limit": "You are signed in on too many devices. Sign out on one of them, then"
    " sign in here again.",
}


@dataclass(slots=True)
class Refusal:
    """A response the guard sends instead of running the application."""

    status: int
    error: str  # machine-readable class: "csrf", "cross-origin", "throttled", ...
    reason: str = ""  # machine-readable detail
    location: str | None = None
    retry_after: int | None = None
    allow: str | None = None  # the ``Allow`` header of a 405

    @property
    def title(self) -> str:
        """The status phrase, e.g. ``"Forbidden"``."""
        return _REASONS.get(self.status, "Refused")

    @property
    def reauth_required(self) -> bool:
        """Whether the user must sign in again before this session is served (the JSON body's
        ``"reauth_required": true``)."""
        return self.error == "reauthentication-required"

    @property
    def message(self) -> str:
        """The sentence the default page shows a person (it never names the machine detail)."""
        return _HUMAN.get(self.reason) or _HUMAN.get(self.error, self.title)

    def render(
        self, wants_json: bool, custom: RenderedRefusal | None = None
    ) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """Headers and body; JSON for API clients, a short plain text for people, or the
        ``custom`` body of a :data:`RefusalRenderer` (the headers stay the guard's)."""
        hdrs: list[tuple[bytes, bytes]] = []
        if self.location is not None:
            hdrs.append((b"location", self.location.encode("latin-1")))
        if self.retry_after is not None:
            hdrs.append((b"retry-after", str(self.retry_after).encode()))
        if self.allow is not None:
            hdrs.append((b"allow", self.allow.encode("latin-1")))
        if custom is not None:
            body = custom.encoded()
            hdrs.append((b"content-type", custom.content_type.encode("latin-1")))
        elif wants_json:
            fields: dict[str, JSON] = {"error": self.error, "reason": self.reason}
            if self.reauth_required:
                fields["reauth_required"] = True
            body = dumps(fields).encode()
            hdrs.append((b"content-type", b"application/json"))
        else:
            body = f"{self.status} {_REASONS.get(self.status, '')}\n{self.message}\n".encode()
            hdrs.append((b"content-type", b"text/plain; charset=utf-8"))
        hdrs.append((b"content-length", str(len(body)).encode()))
        hdrs.append((b"cache-control", b"no-store"))
        return hdrs, body


@dataclass(frozen=True, slots=True)
class RenderedRefusal:
    """The body of a refusal page from a :data:`RefusalRenderer`. The status, ``Location``,
    ``Retry-After``, ``Cache-Control: no-store`` and the security headers stay the guard's."""

    body: str | bytes
    content_type: str = "text/html; charset=utf-8"

    def encoded(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else bytes(self.body)

    def check(self) -> None:
        """Refuse what could not be sent as it is (a header split, a wrong type)."""
        if not isinstance(self.body, str | bytes) or not isinstance(self.content_type, str):
            raise TypeError("RenderedRefusal needs a str or bytes body and a str content_type")
        if not self.content_type.isprintable() or not self.content_type.isascii():
            raise ValueError("content_type must be printable ASCII")


#: What an application may raise for the adapters to answer (:func:`raised_refusal`).
Raised = ReauthenticationRequired | HttpsRequired


def raised_refusal(exc: Raised, redirect: str | None, wants_json: bool) -> Refusal:
    """The answer to what the application raised: a sign-in over plain HTTP
    (:func:`https_required_refusal`), or a re-authentication and its kinds
    (:func:`reauthentication_refusal`, ``redirect`` being the sign-in page)."""
    if isinstance(exc, HttpsRequired):
        return https_required_refusal()
    return reauthentication_refusal(exc.reason, redirect, wants_json)


def reauthentication_refusal(reason: str, redirect: str | None, wants_json: bool) -> Refusal:
    """The answer to :class:`~sessionwarden.core.ReauthenticationRequired` (``reason``): 401
    for JSON clients (and everyone when no sign-in page is configured), else 303 to
    ``redirect``. A request on a rotated-out ID that asked for a new one
    (:class:`~sessionwarden.core.AliasActionRefused`) gets 409; an operation without its
    step-up grant (:class:`~sessionwarden.core.StepUpRequired`) 403, or 303 for a browser when
    ``redirect`` is set."""
    if reason == "rotated-id":
        return Refusal(409, "stale-session", reason)
    browser = bool(redirect) and not wants_json
    if reason == STEP_UP_REASON and not browser:
        return Refusal(403, "step-up-required", reason)
    if browser:
        return Refusal(303, "reauthentication-required", reason, location=redirect)
    return Refusal(401, "reauthentication-required", reason)


def https_required_refusal() -> Refusal:
    """The answer to :class:`~sessionwarden.core.HttpsRequired` (a sign-in over plain HTTP) and
    to a plain-HTTP request the guard refuses outright (a JSON client, a path under
    ``HttpsPolicy.refuse_paths``): 403 ``https-required``, to every client. Never a redirect:
    neither to HTTPS (a form post's body would not follow it) nor to the sign-in page."""
    return Refusal(403, "https-required", PLAIN_HTTP_REASON)
