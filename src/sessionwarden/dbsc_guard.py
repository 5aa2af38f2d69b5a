"""DBSC in the request pipeline: where the guard calls the pure decisions of :mod:`.dbsc`.

The guard (:mod:`sessionwarden.guard`) calls this at four points, only when
``Policy.dbsc.enabled``:

* :meth:`DbscGuard.admit`, right after the session is loaded: a bound session's in-scope request
  without a valid bound cookie is served as anonymous or its session revoked
  (``DbscPolicy.on_missing``); ``Secure-Session-Skipped`` is reported.
* :meth:`DbscGuard.endpoint`, before the cross-origin and token checks: ``POST`` to the
  registration or refresh path is answered here (the signed proof is its protection). The answer
  goes out through the ordinary commit, so a refresh that is also due for periodic ID rotation
  sets both cookies in one response.
* :meth:`DbscGuard.offer`, before a login is committed: the ``Secure-Session-Registration``
  offer, over HTTPS or to a loopback host only.
* :meth:`DbscGuard.response_headers`: the offer, and the bound cookie's removal when the session
  cookie goes (logout, a revoked or expired session).

The binding is kept in the record's own ``dbsc`` field (:class:`~.dbsc_state.DbscState` as JSON)
and written through :meth:`~sessionwarden.core.Session.bind_device`, so it replicates through
every store and moves with the session when its ID rotates.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cookies import cookie_values
from .core import Loaded, Session, Steps
from .core.base import EngineBase
from .core.ops import Revoke
from .dbsc import (
    DbscNote,
    DbscPolicy,
    DbscRequest,
    check_bound_cookie,
    clear_bound_cookie_header,
    enforce,
    in_scope,
    may_offer,
    refresh,
    registration,
    registration_offer,
    skipped_notes,
)
from .dbsc_state import state_in, to_doc
from .events import EventKind
from .facts import RequestFacts
from .records import SessionRecord, Tombstone

Header = tuple[bytes, bytes]

#: The request headers DBSC reads besides those the guard reads anyway (Origin, Sec-Fetch-Site).
REQUEST_HEADERS = ("secure-session-response", "sec-secure-session-id", "secure-session-skipped")
_DEFAULT_PORTS = {"https": ":443", "http": ":80"}


@dataclass(slots=True)
class DbscAnswer:
    """The response of the registration or refresh endpoint, before the guard's headers."""

    status: int
    headers: list[Header]
    body: bytes


def _encoded(headers: tuple[tuple[str, str], ...]) -> list[Header]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def origin_of(facts: RequestFacts) -> str:
    """This application's origin as the browser names it (``Origin``): scheme and Host,
    without a default port. Behind a proxy, the proxy must pass the original Host on."""
    host = facts.host
    port = _DEFAULT_PORTS.get(facts.scheme)
    if port is not None and host.endswith(port):
        host = host[: -len(port)]
    return f"{facts.scheme}://{host}"


class DbscGuard:
    """The DBSC calls of one :class:`~sessionwarden.guard.Guard` (see the module doc)."""

    def __init__(self, policy: DbscPolicy, engine: EngineBase, clear_site_data: bool) -> None:
        self.policy = policy
        self.engine = engine
        self.hash_value = engine.keyring.hash_value
        #: Bound cookies issued under a retired secret stay valid until their Max-Age.
        self.legacy = engine.keyring.legacy_value_hashers()
        self._tomb_ttl = engine.policy.effective_tombstone_ttl
        #: Sent with ``{"continue": false}`` when no session is left at all.
        self._clear_site_data: Header | None = (
            (b"clear-site-data", b'"cookies"') if clear_site_data else None
        )

    # -- events -------------------------------------------------------------------------------
    def _emit(
        self, note: DbscNote, facts: RequestFacts, now: float, record: SessionRecord | None
    ) -> None:
        self.engine.emit(
            note.kind,
            facts,
            now,
            key="" if record is None else record.key,
            lineage="" if record is None else record.lineage,
            user_id=None if record is None else record.user_id,
            reason=note.reason,
            detail=note.detail,
        )

    def is_endpoint(self, facts: RequestFacts) -> bool:
        path = facts.path
        return facts.method == "POST" and (
            path == self.policy.register_path or path == self.policy.refresh_path
        )

    def _bound_value(self, facts: RequestFacts) -> str | None:
        """The bound cookie as sent: ``None`` when absent, ``""`` when sent more than once."""
        values = cookie_values(facts.cookie_header, self.policy.cookie_name)
        if not values:
            return None
        return values[0] if len(values) == 1 else ""

    # -- at load ------------------------------------------------------------------------------
    def admit(self, facts: RequestFacts, loaded: Loaded, now: float) -> Steps[Loaded]:
        """Enforce the binding on an in-scope request of a bound session."""
        record = loaded.session.record
        if record is None:
            return loaded
        state = state_in(record.dbsc)
        extra = facts.extra
        if extra is not None:
            for note in skipped_notes(extra.get("secure-session-skipped"), state):
                self._emit(note, facts, now, record)
        if self.is_endpoint(facts) or not in_scope(self.policy, facts.path):
            return loaded
        check = check_bound_cookie(
            state, self._bound_value(facts), now, self.hash_value, self.legacy
        )
        verdict = enforce(self.policy, check)
        if verdict.note is None:
            return loaded
        self._emit(verdict.note, facts, now, record)
        if verdict.action != "revoke":
            # Served as anonymous; the cookie stays (the device itself is refreshing).
            return Loaded(self.engine.new_session(None, now))
        reason = "dbsc:missing-bound-cookie"
        until = now + self._tomb_ttl
        stone = Tombstone(record.key, reason, now, until, record.user_id, record.lineage)
        yield from Revoke(record.key, stone)
        self.engine.emit(
            EventKind.REVOKED,
            facts,
            now,
            record=record,
            reason="policy:missing-bound-cookie",
        )
        return Loaded(self.engine.new_session(None, now), clear_cookie=True)

    # -- the two endpoints --------------------------------------------------------------------
    def endpoint(self, facts: RequestFacts, session: Session | None, now: float) -> DbscAnswer:
        """Answer ``POST`` to the registration or refresh path (see :meth:`is_endpoint`); the
        new binding, if any, is handed to ``session`` for the commit."""
        record = session.record if session is not None else None
        state = None if record is None else state_in(record.dbsc)
        extra = facts.extra or {}
        request = DbscRequest(
            proof=extra.get("secure-session-response"),
            session_id=extra.get("sec-secure-session-id"),
            fetch_site=facts.sec_fetch_site,
            origin=facts.origin,
        )
        decide = registration if facts.path == self.policy.register_path else refresh
        result = decide(self.policy, state, request, now, self.hash_value, origin_of(facts))
        if result.changed and session is not None and record is not None:
            session.bind_device(to_doc(result.state))
        for note in result.notes:
            self._emit(note, facts, now, record)
        headers = _encoded(result.headers)
        if record is None and result.body == {"continue": False} and self._clear_site_data:
            headers.append(self._clear_site_data)
        return DbscAnswer(result.status, headers, result.body_bytes())

    # -- after login --------------------------------------------------------------------------
    def offer(self, facts: RequestFacts, session: Session, now: float) -> Header | None:
        """The registration offer of a login response (HTTPS or loopback only), its challenge
        handed to ``session`` for the commit; ``None`` when this is no login."""
        act = session.pending_actions
        if act is None or act.login_user is None or not may_offer(facts.scheme, facts.host):
            return None
        record = session.record
        # A login that ends the session it arrived with (after logout(), or another user's)
        # starts a new one: the ended session's binding is not carried into its offer.
        state = None if record is None or act.logout else state_in(record.dbsc)
        made = registration_offer(self.policy, state, now, self.hash_value)
        session.bind_device(to_doc(made.state))
        name, value = made.header
        return (name.lower().encode("latin-1"), value.encode("latin-1"))

    def bound_cookie_gone(self, facts: RequestFacts) -> list[Header]:
        """The bound cookie's removal, when the request carried one (the session cookie goes)."""
        if self._bound_value(facts) is None:
            return []
        return _encoded((clear_bound_cookie_header(self.policy),))
