"""Typed events: every session change and every refusal, as plain values.

The core returns them; sinks (:mod:`sessionwarden.monitor`) log them as JSON, count them, store
them in a session's trail or hand them to the application. An event never carries a raw session
ID or token: ``ref`` is the short reference of the keyed hash of the session's current ID (it
changes at every rotation), ``session`` the short keyed hash of the session's lineage (the same
for every event of one session, from its creation through sign-in and every rotation to its end).

Every event also has an ``outcome`` (:data:`OUTCOME_OF`: one of :data:`OUTCOMES`, decided by
its kind alone) and its time both as POSIX seconds (``at``) and as ISO 8601 UTC (``time``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal, Protocol

from .records import JSON


class EventKind(enum.StrEnum):
    CREATED = "session.created"
    ROTATED = "session.rotated"
    TOUCHED_AFTER_IDLE_GAP = "session.touched_after_idle_gap"
    EXPIRED_IDLE = "session.expired.idle"
    EXPIRED_ABSOLUTE = "session.expired.absolute"
    LOGGED_IN = "session.logged_in"
    LOGGED_OUT = "session.logged_out"
    REVOKED = "session.revoked"
    EVICTED = "session.evicted"
    #: A sign-in refused (reason ``session-limit``: its user already had
    #: ``Policy.max_sessions_per_user`` live sessions and ``Policy.on_session_limit`` is
    #: ``"reject"``; ``detail.limit``). Nothing was written; the key is the session the
    #: sign-in came from, the user the one refused.
    LOGIN_REFUSED = "session.login_refused"
    #: ``MonitorPolicy.notify_logins``: a sign-in while its user has other live sessions
    #: (``detail.others``: how many). The key is the new session.
    CONCURRENT_LOGIN = "session.concurrent_login"
    #: ``MonitorPolicy.notify_logins``: a sign-in while its user has other live sessions, none
    #: of them from the same browser family and network (``detail.others``, ``detail.browser``).
    NEW_DEVICE = "session.new_device"
    #: ``Session.credentials_changed``: the application reported a password or second-factor
    #: change (``detail.ended``: how many other sessions of the user it ended). The key is the
    #: session the change was made in, under its new ID.
    CREDENTIALS_CHANGED = "account.credentials_changed"
    REPLAY_REVOKED = "session.replay.revoked"
    REPLAY_ROTATED = "session.replay.rotated"
    UNKNOWN_ID = "session.unknown_id"
    MALFORMED_COOKIE = "session.malformed_cookie"
    COOKIE_TOSSING = "session.cookie_tossing"
    WRITE_AFTER_REVOKE = "session.write_after_revoke"
    STEP_UP_REQUIRED = "session.step_up_required"
    #: ``Session.grant_step_up``: a grant for one operation (``detail.operation``: its digest).
    STEP_UP_GRANTED = "session.step_up.granted"
    #: ``Session.require_step_up`` found the grant and used it up.
    STEP_UP_USED = "session.step_up.used"
    #: ``Session.require_step_up`` refused (reason: ``no-grant``, none or expired, or
    #: ``other-user``, given to another user of the session).
    STEP_UP_REFUSED = "session.step_up.refused"
    ALIAS_ACTION_REFUSED = "session.alias_action_refused"
    CSRF_REFUSED = "csrf.refused"
    CROSS_ORIGIN_REFUSED = "csrf.cross_origin_refused"
    #: ``CsrfPolicy.report_only``: a check would have refused this request (reason: why;
    #: ``detail.check``: ``cross-origin`` or ``token``); it was let through.
    CSRF_WOULD_BLOCK = "csrf.would_block"
    ANOMALY = "anomaly.detected"
    THROTTLED = "client.throttled"
    HTTPS_REDIRECT = "https.redirect"
    STORE_UNAVAILABLE = "store.unavailable"
    STORE_RECOVERED = "store.recovered"
    DBSC_REGISTERED = "dbsc.registered"
    DBSC_REFRESHED = "dbsc.refreshed"
    DBSC_PROOF_FAILED = "dbsc.proof_failed"
    DBSC_MISSING_BOUND_COOKIE = "dbsc.missing_bound_cookie"
    DBSC_SKIPPED = "dbsc.skipped"
    DBSC_TERMINATED = "dbsc.terminated"
    #: Once per process: requests arrive without a client address (a Unix-socket proxy, ASGI
    #: ``client=None``) while defences that need one (throttle, network check) are on.
    CLIENT_ADDRESS_MISSING = "config.client_address_missing"
    #: A WebSocket handshake refused before the application saw it (reason: why).
    WEBSOCKET_REFUSED = "websocket.refused"
    #: An open WebSocket or event stream closed because its session ended (reason: how).
    CONNECTION_CLOSED = "connection.closed"
    #: Once per process: the first request for a host not in ``Policy.allowed_hosts``.
    HOST_REFUSED = "config.host_refused"
    #: Once per process: the first request carrying forwarding headers (``X-Forwarded-*``,
    #: ``Forwarded``) from a peer that is not in ``HttpsPolicy.trusted_proxies``: they were
    #: ignored. Behind a proxy that is a configuration error (every request looks like plain
    #: HTTP from the proxy); otherwise a client forged them.
    PROXY_HEADERS_IGNORED = "config.proxy_headers_ignored"
    #: A CSP violation report received at ``HeadersPolicy.csp_report_path`` (reason: the
    #: directive; detail: document, blocked, directive, disposition, source, line, ...).
    CSP_VIOLATION = "csp.violation"


EventOutcome = Literal["success", "failure", "refused", "ended", "notice"]

#: What an event says happened, for a log query that needs no list of kinds:
#:
#: ``success``  a session change asked for was made: created, signed in, rotated, signed out,
#:              a step-up granted or used, credentials changed, a DBSC binding made or refreshed.
#: ``failure``  a credential presented did not hold (an unknown, malformed or ended session ID,
#:              a rotated-out one after its grace, a DBSC proof or bound cookie), or the store
#:              failed. What the defence then does to the session has its own event.
#: ``refused``  a check refused the request or one action in it (CSRF, cross-origin, a step-up
#:              demand, the session cap, a throttle, a host, a handshake); nothing was changed.
#: ``ended``    a session ended other than by its own sign-out: timed out, revoked (by its user
#:              elsewhere, an operator, the risk check, a credential change, a replay of its
#:              rotated-out ID, a duplicate cookie), evicted, its DBSC session terminated; or
#:              a connection closed because its session may no longer be served.
#: ``notice``   information, nothing refused or changed: a risk signal (its action has its own
#:              event), a report-only CSRF verdict, a login from a new device, a CSP report.
OUTCOMES: Final[tuple[EventOutcome, ...]] = ("success", "failure", "refused", "ended", "notice")

_OUTCOME_KINDS: Final[dict[EventOutcome, tuple[EventKind, ...]]] = {
    "success": (
        EventKind.CREATED,
        EventKind.ROTATED,
        EventKind.LOGGED_IN,
        EventKind.LOGGED_OUT,
        EventKind.CREDENTIALS_CHANGED,
        EventKind.STEP_UP_GRANTED,
        EventKind.STEP_UP_USED,
        EventKind.DBSC_REGISTERED,
        EventKind.DBSC_REFRESHED,
        EventKind.STORE_RECOVERED,
    ),
    "failure": (
        EventKind.UNKNOWN_ID,
        EventKind.MALFORMED_COOKIE,
        EventKind.REPLAY_REVOKED,
        EventKind.REPLAY_ROTATED,
        EventKind.DBSC_PROOF_FAILED,
        EventKind.DBSC_MISSING_BOUND_COOKIE,
        EventKind.STORE_UNAVAILABLE,
    ),
    "refused": (
        EventKind.LOGIN_REFUSED,
        EventKind.COOKIE_TOSSING,
        EventKind.WRITE_AFTER_REVOKE,
        EventKind.STEP_UP_REQUIRED,
        EventKind.STEP_UP_REFUSED,
        EventKind.ALIAS_ACTION_REFUSED,
        EventKind.CSRF_REFUSED,
        EventKind.CROSS_ORIGIN_REFUSED,
        EventKind.THROTTLED,
        EventKind.HTTPS_REDIRECT,
        EventKind.WEBSOCKET_REFUSED,
        EventKind.HOST_REFUSED,
    ),
    "ended": (
        EventKind.EXPIRED_IDLE,
        EventKind.EXPIRED_ABSOLUTE,
        EventKind.REVOKED,
        EventKind.EVICTED,
        EventKind.DBSC_TERMINATED,
        EventKind.CONNECTION_CLOSED,
    ),
    "notice": (
        EventKind.TOUCHED_AFTER_IDLE_GAP,
        EventKind.CONCURRENT_LOGIN,
        EventKind.NEW_DEVICE,
        EventKind.CSRF_WOULD_BLOCK,
        EventKind.ANOMALY,
        EventKind.DBSC_SKIPPED,
        EventKind.CLIENT_ADDRESS_MISSING,
        EventKind.PROXY_HEADERS_IGNORED,
        EventKind.CSP_VIOLATION,
    ),
}

#: The outcome of every kind (each kind has exactly one).
OUTCOME_OF: Final[dict[EventKind, EventOutcome]] = {
    kind: outcome for outcome, kinds in _OUTCOME_KINDS.items() for kind in kinds
}
if len(OUTCOME_OF) != len(EventKind) or sum(map(len, _OUTCOME_KINDS.values())) != len(EventKind):
    raise AssertionError("every EventKind has exactly one outcome")  # pragma: no cover


#: The last whole second :func:`iso_utc` spelled out, and its text: events come in bursts within
#: one second, and the date is most of the cost of the spelling. (A race between threads only
#: spells a second twice.)
_LAST_SECOND: list[tuple[int | None, str]] = [(None, "")]


def iso_utc(at: float, *, fraction: bool = True) -> str | None:
    """POSIX seconds as ISO 8601 in UTC, to the microsecond (``2026-01-31T12:00:00.000000Z``,
    an event's ``time``) or, with ``fraction=False``, to the second (``2026-01-31T12:00:00Z``,
    the ``sessionwarden`` command's tables): the same instant rounded once, to the microsecond,
    so both spell the same second. ``None`` for a value no date has (not finite, beyond year
    9999)."""
    try:
        second, micros = divmod(round(at * 1_000_000), 1_000_000)
        last = _LAST_SECOND[0]
        if last[0] != second:
            text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            last = _LAST_SECOND[0] = (second, text)
        return f"{last[1]}.{micros:06d}Z" if fraction else f"{last[1]}Z"
    except (ValueError, OverflowError, OSError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    at: float
    ref: str = ""  # short keyed-hash reference of the session, never the ID
    #: Short keyed hash of the session's lineage: one value for all events of one session
    #: across its rotations (``ref`` changes at each), never derived from an ID.
    session: str = ""
    user_id: str | None = None
    client_ip: str = ""
    user_agent: str = ""
    path: str = ""
    reason: str = ""
    detail: dict[str, JSON] = field(default_factory=dict)

    @property
    def outcome(self) -> EventOutcome:
        """What the event says happened (:data:`OUTCOMES`), decided by its kind."""
        return OUTCOME_OF[self.kind]

    @property
    def time(self) -> str | None:
        """``at`` as ISO 8601 in UTC (:func:`iso_utc`)."""
        return iso_utc(self.at)

    def to_dict(self) -> dict[str, JSON]:
        return {
            "event": self.kind.value,
            "outcome": self.outcome,
            "at": self.at,
            "time": self.time,
            "ref": self.ref,
            "session": self.session,
            "user": self.user_id,
            "ip": self.client_ip,
            "ua": self.user_agent,
            "path": self.path,
            "reason": self.reason,
            "detail": self.detail,
        }


class EventSink(Protocol):
    """Where events go. A sink may also define ``wants(kind) -> bool``: the engine then builds
    an event only when its sink wants that kind (a muted log level, no sink at all), and a sink
    without ``wants`` gets every event."""

    def emit(self, event: Event) -> None: ...


def sink_wants(sink: EventSink, kind: EventKind) -> bool:
    """Whether ``sink`` takes events of ``kind`` (always, unless it says otherwise)."""
    wants: Callable[[EventKind], bool] | None = getattr(sink, "wants", None)
    return wants is None or wants(kind)


class NullSink:
    __slots__ = ()

    def wants(self, kind: EventKind) -> bool:
        return False

    def emit(self, event: Event) -> None:
        return None


class CallbackSink:
    """Hands every event to the application's own callable (alerting, e-mailing the user)."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[Event], None]) -> None:
        self._fn = fn

    def emit(self, event: Event) -> None:
        self._fn(event)


class FanOut:
    """Several sinks as one; a failing sink never breaks a request or the other sinks."""

    __slots__ = ("_sinks",)

    def __init__(self, *sinks: EventSink) -> None:
        self._sinks = sinks

    def wants(self, kind: EventKind) -> bool:
        for sink in self._sinks:
            try:
                if sink_wants(sink, kind):
                    return True
            except Exception:  # a failing sink is still offered the event (and fails there)
                return True
        return False

    def emit(self, event: Event) -> None:
        for sink in self._sinks:
            try:
                sink.emit(event)
            except Exception:  # noqa: S112 - a sink must never break a request
                continue
