"""What loading and committing share: the engine's settings, its events and its small rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from .. import tokens
from ..clock import Clock, SystemClock
from ..cookies import CookieWriter
from ..events import Event, EventKind, EventSink, NullSink, sink_wants
from ..facts import RequestFacts
from ..policy import Action, Policy
from ..records import JSON, Alias, Lookup, SessionRecord, Tombstone
from .anonymous import AnonymousLedger
from .ended import EXPIRED_ABSOLUTE, EXPIRED_IDLE, REPLACED, expired_tombstone_ttl
from .lifetime import Lifetime, Lifetimes
from .ops import Get, Revoke, RevokeUser, Steps
from .session import Session, ValueLimits

#: The tombstone reason of an ID replaced at login: its cookie is left alone (the browser already
#: holds, or is about to receive, the new one).
LOGIN_ROTATION = "rotated:login"


def remembered(found: Lookup, now: float) -> Lookup:
    """What a lookup still says at ``now``: an alias or tombstone past its ``until`` is
    forgotten (an unknown key), whether or not the store has purged it yet, so every store
    answers alike (Redis drops a key some time after its deadline, the others at the purge)."""
    if isinstance(found, (Alias, Tombstone)) and now >= found.until:
        return None
    return found


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the adapter must do to the response after a commit."""

    set_cookie: str | None = None
    authenticated: bool = False
    logged_out: bool = False
    #: The commit wrote to the store (a successful write ends a write outage).
    wrote: bool = False
    #: ``set_cookie`` is a session's new cookie (a new session, a new ID), not a deletion.
    issued: bool = False


class SiteData(Enum):
    """What a response tells its browser to forget (``Clear-Site-Data``, standards D.1)."""

    #: Nothing: no session ends for this browser here.
    KEEP = "keep"
    #: The session ended for this browser: its cookies and storage (and the cache when the
    #: policy asks).
    CLEAR = "clear"
    #: The session ended and the response sets a new session's cookie: the same, but not the
    #: cookies. A browser applies the header after the response's ``Set-Cookie``, so
    #: ``"cookies"`` would erase the new cookie; the old one goes by its deletion or is
    #: replaced, and the old session is dead on the server either way.
    CLEAR_ALL_BUT_COOKIES = "clear-all-but-cookies"


def site_data_to_clear(
    outcome: Outcome | None, cookie_cleared: bool, ended: str | None
) -> SiteData:
    """The one rule for ``Clear-Site-Data``: a response that ends a session for its browser (a
    logout, or the deletion cookie (``cookie_cleared``) of a presented session that ended:
    expired, signed out, revoked, but not one given a new ID (``ended`` is
    :data:`~.ended.REPLACED`), whose browser holds its successor) clears the site's data, and
    never the cookies beside a new session's cookie (:attr:`SiteData.CLEAR_ALL_BUT_COOKIES`).
    Where the header is sent at all (a secure context) is the adapter's part."""
    if outcome is None or not outcome.logged_out:
        if not cookie_cleared:  # the common response: no session ends here
            return KEEP_SITE_DATA
        if ended is None or ended == REPLACED:
            return KEEP_SITE_DATA
    if outcome is not None and outcome.issued:
        return CLEAR_ALL_BUT_COOKIES
    return _CLEAR_SITE_DATA


# The members as module names, for the check every response makes: on Python 3.11 each look-up
# of a member through its class goes through ``EnumType.__getattr__`` (about 1,000 machine
# instructions); a module name is a dictionary look-up. The members are the same objects.
KEEP_SITE_DATA = SiteData.KEEP
CLEAR_ALL_BUT_COOKIES = SiteData.CLEAR_ALL_BUT_COOKIES
_CLEAR_SITE_DATA = SiteData.CLEAR


#: The outcomes of a commit that has nothing to do.
UNCHANGED_ANONYMOUS = Outcome()
UNCHANGED_SIGNED_IN = Outcome(None, True)


@dataclass(slots=True)
class Loaded:
    """What loading found: the request's session, and whether its cookie must go."""

    session: Session
    clear_cookie: bool = False
    throttled: bool = False
    #: Several session cookies arrived: clear the name on every domain and path it could be on.
    tossed: bool = False
    #: Why the presented session ended (see :mod:`.ended`), or ``None``: none was presented,
    #: it is live, or the store knows nothing of the ID.
    ended: str | None = None


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """What a risk assessor concluded about one request of a signed-in session."""

    action: Action
    reason: str = ""
    detail: dict[str, JSON] = field(default_factory=dict)
    #: The change is tolerated (a new network): store the new fingerprint and remember when.
    refresh_fingerprint: bool = False


Assessor = Callable[[SessionRecord, RequestFacts, float], RiskDecision]
Fingerprinter = Callable[[RequestFacts], dict[str, JSON]]


def _short_agent(user_agent: str) -> str:
    return user_agent[:64]


class EngineBase:
    """The settings of one :class:`~sessionwarden.policy.Policy` and the rules both halves of
    the engine (loading, committing) use."""

    def __init__(
        self,
        policy: Policy,
        *,
        clock: Clock | None = None,
        sink: EventSink | None = None,
        assessor: Assessor | None = None,
        fingerprinter: Fingerprinter | None = None,
        throttle: Callable[[str, float], bool] | None = None,
        agent_label: Callable[[str], str] | None = None,
    ) -> None:
        self.policy = policy
        #: The normal lifetime and the remember one (:mod:`.lifetime`).
        self.lifetimes = Lifetimes.of(policy)
        self.clock: Clock = clock or SystemClock()
        self.sink: EventSink = sink or NullSink()
        self.keyring = tokens.Keyring(policy.secret_keys)
        self.cookies = CookieWriter(policy.cookie)
        self.assessor = assessor
        self.fingerprinter = fingerprinter
        #: How a user agent is written into the activity trail (short: the trail is per session).
        self.agent_label: Callable[[str], str] = agent_label or _short_agent
        self.throttle = throttle
        self._tomb_ttl = policy.effective_tombstone_ttl
        self._expired_ttl = expired_tombstone_ttl(policy.idle_timeout, self._tomb_ttl)
        self.anonymous = AnonymousLedger(policy.anonymous_per_client)
        self.limits = ValueLimits(
            policy.max_value_depth, policy.max_value_bytes, policy.max_session_bytes
        )

    def new_session(
        self,
        record: SessionRecord | None,
        now: float,
        *,
        via_alias: bool = False,
        detached: bool = False,
    ) -> Session:
        """A request's session under this policy's value limits (``detached``: see
        :attr:`Session.detached`)."""
        return Session(
            record,
            now,
            via_alias=via_alias,
            limits=self.limits,
            detached=detached,
            lifetimes=self.lifetimes,
        )

    def emit(
        self,
        kind: EventKind,
        facts: RequestFacts | None,
        now: float,
        *,
        record: SessionRecord | None = None,
        key: str = "",
        lineage: str = "",
        user_id: str | None = None,
        reason: str = "",
        detail: dict[str, JSON] | None = None,
    ) -> Event | None:
        """Send one audit event to the sink (IDs appear only as their short reference, the
        session's lineage only as its short keyed hash); the event is built only if the sink
        wants its kind (``None`` when not). ``record``: the session the event is about, whose
        key, lineage and user it takes instead of ``key``, ``lineage`` and ``user_id``."""
        if not sink_wants(self.sink, kind):
            return None
        if record is not None:
            key, lineage, user_id = record.key, record.lineage, record.user_id
        event = Event(
            kind=kind,
            at=now,
            ref=tokens.ref_of(key) if key else "",
            session=self.correlation_of(lineage) if lineage else "",
            user_id=user_id,
            client_ip=facts.client_ip if facts else "",
            user_agent=(facts.user_agent[:256] if facts else ""),
            path=(facts.path[:512] if facts else ""),
            reason=reason,
            detail=detail or {},
        )
        self.sink.emit(event)
        return event

    def correlation_of(self, lineage: str) -> str:
        """The loggable correlation value of a session's lineage: its keyed hash (the server's
        current secret), shortened like a reference."""
        return self.keyring.hash_value("session-lineage", lineage)[: tokens.REF_LENGTH]

    def lifetime_of(self, record: SessionRecord) -> Lifetime:
        """The lifetime ``record`` lives by (remembered or not, under this policy)."""
        return self.lifetimes.of_flags(record.flags)

    def _tombstone(
        self, key: str, reason: str, now: float, record: SessionRecord | None
    ) -> Tombstone:
        """What ``key`` becomes when the session ``record`` ends there (its user and lineage,
        so a replay of the ID is reported with the session's correlation value)."""
        return Tombstone(
            key=key,
            reason=reason,
            at=now,
            until=now + self._tomb_ttl,
            user_id=record.user_id if record is not None else None,
            lineage=record.lineage if record is not None else "",
        )

    def _expiry_reason(self, record: SessionRecord, now: float) -> EventKind | None:
        lifetime = self.lifetimes.of_flags(record.flags)  # as lifetime_of (every request)
        if now >= record.created_at + lifetime.absolute:
            return EventKind.EXPIRED_ABSOLUTE
        if now >= record.last_seen + lifetime.idle or now >= record.expires_at:
            return EventKind.EXPIRED_IDLE
        return None

    def _end_expired(
        self, record: SessionRecord, kind: EventKind, facts: RequestFacts | None, now: float
    ) -> Steps[None]:
        """End ``record``, found past a deadline (``kind``, from :meth:`_expiry_reason`) by a
        request as it arrived (``facts``), by its commit (its deadline passed while the request
        was in flight) or by the check of open connections (``facts`` ``None``), and report it.

        The record becomes a short-lived tombstone of the expiry, so the requests presenting
        its ID after this one learn why it ended too, and nothing can write it back to life.
        The expiry is reported here and only here, once per session ended: by whichever finder
        ended it, with the record's correlation values; a finder that raced another (both read
        the live record) finds the record already gone and reports nothing. A request
        presenting the ID later gets the event again, with reason ``again``
        (:meth:`~sessionwarden.core.load.Loading._buried`)."""
        reason = EXPIRED_ABSOLUTE if kind is EventKind.EXPIRED_ABSOLUTE else EXPIRED_IDLE
        tombstone = Tombstone(
            key=record.key,
            reason=reason,
            at=now,
            until=now + self._expired_ttl,
            user_id=record.user_id,
            lineage=record.lineage,
        )
        if (yield from Revoke(record.key, tombstone)):
            self.emit(kind, facts, now, record=record)

    def _login_fingerprint(self, facts: RequestFacts) -> dict[str, JSON] | None:
        return self.fingerprinter(facts) if self.fingerprinter is not None else None

    def _successor(self, key: str, now: float) -> Steps[str | None]:
        """Where a key went if a concurrent request rotated it within the grace window."""
        found = yield from Get(key)
        if isinstance(found, Alias) and now < found.grace_until:
            return found.target
        return None

    def _revoke_user(
        self, user_id: str, reason: str, facts: RequestFacts | None, now: float, keep: str | None
    ) -> Steps[list[str]]:
        """End every session of ``user_id`` but ``keep``; one ``session.revoked`` each, named
        by the lineage the store read as it ended the session (no listing first)."""
        ended = yield from RevokeUser(
            user_id, reason=reason, at=now, until=now + self._tomb_ttl, keep=keep
        )
        for k, lineage in ended.items():
            self.emit(
                EventKind.REVOKED,
                facts,
                now,
                key=k,
                lineage=lineage,
                user_id=user_id,
                reason=reason,
            )
        return list(ended)
