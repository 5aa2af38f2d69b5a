"""Loading: the session a request presents, checked before the application runs.

Anything doubtful (no cookie, several, a malformed, unknown, expired, revoked or rotated-out ID)
yields an anonymous session, never an error and never an adopted ID.
"""

from __future__ import annotations

from .. import tokens
from ..cookies import cookie_values
from ..events import EventKind
from ..facts import RequestFacts
from ..policy import Action, RiskSignal
from ..records import JSON, Alias, Lookup, RecordUpdate, SessionRecord, Tombstone
from .base import LOGIN_ROTATION, EngineBase, Loaded, remembered
from .ended import (
    ABSOLUTE,
    EXPIRED_ABSOLUTE,
    EXPIRED_IDLE,
    IDLE,
    REPLACED,
    REVOKED_SUSPICIOUS,
    ended_reason,
)
from .ops import Get, Revoke, Steps, Update
from .session import Session

#: Sessions looked up and ended per tossing request (a header may repeat the name many times).
_MAX_TOSSED = 4
#: The event of a request presenting the tombstone of an expiry (any other tombstone: a replay).
_PRESENTED_TOMBSTONE = {
    EXPIRED_IDLE: EventKind.EXPIRED_IDLE,
    EXPIRED_ABSOLUTE: EventKind.EXPIRED_ABSOLUTE,
}


class Loading(EngineBase):
    """The load half of the engine."""

    def load(self, facts: RequestFacts) -> Steps[Loaded]:
        """Find the session a request presents; anything doubtful yields an anonymous one."""
        now = self.clock.now()
        presented = self._presented(facts, now)
        if isinstance(presented, Loaded):
            return presented
        if isinstance(presented, list):
            return (yield from self._tossed(presented, facts, now))
        raw, key = presented
        found = yield from Get(key)
        if isinstance(found, SessionRecord):
            return (yield from self._admit(found, False, facts, now))
        return (yield from self._resolve(raw, key, found, facts, now))

    def _presented(self, facts: RequestFacts, now: float) -> Loaded | tuple[str, str] | list[str]:
        """The session ID the request's cookie presents and its store key, every value when it
        presents several (cookie tossing), or the anonymous result when it presents none that
        could exist (no cookie, a malformed one)."""
        values = cookie_values(facts.cookie_header, self.policy.cookie.name)
        if not values:
            return Loaded(self.new_session(None, now))
        if len(values) > 1:
            return values
        raw = values[0]
        if not tokens.is_well_formed_id(raw):
            self.emit(EventKind.MALFORMED_COOKIE, facts, now)
            return Loaded(self.new_session(None, now), clear_cookie=True)
        return raw, self.keyring.hash_id(raw)

    def _tossed(self, values: list[str], facts: RequestFacts, now: float) -> Steps[Loaded]:
        """Several cookies of the session's name: someone planted one (a sibling host's
        ``Domain=<parent>`` cookie, a ``Path`` shadow). The request is anonymous, the cookie is
        cleared on every domain and path it could have been planted on, and every session
        presented is ended, so whatever a cookie jar still holds afterwards is never adopted:
        the server cannot tell the owner's cookie from the planted one."""
        self.emit(EventKind.COOKIE_TOSSING, facts, now, detail={"count": len(values)})
        for raw in values[:_MAX_TOSSED]:
            if not tokens.is_well_formed_id(raw):
                continue
            key = self.keyring.hash_id(raw)
            found = yield from Get(key)
            if isinstance(found, Alias) and now < found.grace_until:
                key = found.target
                found = yield from Get(key)
            if isinstance(found, SessionRecord):
                user_id = found.user_id
                yield from Revoke(key, self._tombstone(key, "cookie-tossing", now, found))
                self.emit(
                    EventKind.REVOKED,
                    facts,
                    now,
                    key=key,
                    lineage=found.lineage,
                    user_id=user_id,
                    reason="cookie-tossing",
                )
        return Loaded(self.new_session(None, now), clear_cookie=True, tossed=True)

    def _resolve(
        self, raw: str, key: str, found: Lookup, facts: RequestFacts, now: float
    ) -> Steps[Loaded]:
        """Nothing under the current secret (try the older ones), a tombstone, or an alias."""
        found = remembered(found, now)
        if found is None:
            for legacy in self.keyring.legacy_hashes(raw):
                found = remembered((yield from Get(legacy)), now)
                if found is not None:
                    key = legacy
                    break
        if found is None:
            self.emit(EventKind.UNKNOWN_ID, facts, now, key=key, reason="unknown-or-expired")
            throttled = self.throttle is not None and self.throttle(facts.client_ip, now)
            if throttled:
                self.emit(EventKind.THROTTLED, facts, now, reason="unknown-session-ids")
            return Loaded(self.new_session(None, now), clear_cookie=True, throttled=throttled)
        if isinstance(found, Tombstone):
            return self._buried(found, key, facts, now)
        via_alias = False
        if isinstance(found, Alias):
            if now >= found.grace_until:
                yield from self._replayed_rotated_id(found, facts, now)
                return Loaded(self.new_session(None, now), clear_cookie=True, ended=REPLACED)
            key, via_alias = found.target, True
            found = yield from Get(key)
            if not isinstance(found, SessionRecord):
                gone = ended_reason(found.reason) if isinstance(found, Tombstone) else None
                return Loaded(self.new_session(None, now), clear_cookie=True, ended=gone)
        assert isinstance(found, SessionRecord)
        return (yield from self._admit(found, via_alias, facts, now))

    def _buried(self, found: Tombstone, key: str, facts: RequestFacts, now: float) -> Loaded:
        """An ended session's ID: anonymous, with the reason. Presenting a revoked or rotated-out
        ID is a replay; presenting an expired one (found by an earlier request) is not: the
        expiry's event again."""
        kind, reason = _PRESENTED_TOMBSTONE.get(found.reason), "again"
        if kind is None:
            rotated = found.reason.startswith("rotated")
            kind = EventKind.REPLAY_ROTATED if rotated else EventKind.REPLAY_REVOKED
            reason = found.reason
        self.emit(
            kind, facts, now, key=key, lineage=found.lineage, user_id=found.user_id, reason=reason
        )
        # An ID replaced at login: the browser's cookie already is (or is about to be) the new
        # one, which clearing the name would delete.
        clear = found.reason != LOGIN_ROTATION
        return Loaded(
            self.new_session(None, now), clear_cookie=clear, ended=ended_reason(found.reason)
        )

    def _admit(
        self, record: SessionRecord, via_alias: bool, facts: RequestFacts, now: float
    ) -> Steps[Loaded]:
        """A live record: expired, risky, or the request's session."""
        expired = self._expiry_reason(record, now)
        if expired is not None:
            yield from self._end_expired(record, expired, facts, now)
            ended = ABSOLUTE if expired is EventKind.EXPIRED_ABSOLUTE else IDLE
            return Loaded(self.new_session(None, now), clear_cookie=True, ended=ended)
        session = self.new_session(record, now, via_alias=via_alias)
        if self.assessor is None or record.user_id is None:
            return Loaded(session)
        decision = self.assessor(record, facts, now)
        if decision.action != "allow":
            revoked = yield from self._respond_to_risk(
                session, decision.action, decision.reason, decision.detail, facts, now
            )
            if revoked:
                return Loaded(
                    self.new_session(None, now), clear_cookie=True, ended=REVOKED_SUSPICIOUS
                )
        if decision.refresh_fingerprint and self.fingerprinter is not None:
            session.network_changed(self.fingerprinter(facts), now)
        return Loaded(session)

    def _replayed_rotated_id(self, alias: Alias, facts: RequestFacts, now: float) -> Steps[None]:
        """A rotated-out ID came back after its grace window: a strong sign that a copy of the
        old cookie is being used elsewhere. The session it became is treated as high risk (the
        event carries its correlation value: the ID presented was one of its IDs)."""
        target = yield from Get(alias.target)
        self.emit(
            EventKind.REPLAY_ROTATED,
            facts,
            now,
            key=alias.key,
            lineage=target.lineage if isinstance(target, SessionRecord) else "",
            user_id=alias.user_id,
            reason="rotated-out-id-after-grace",
        )
        monitor = self.policy.monitor
        action = monitor.on_high
        if monitor.decide is not None:
            signal = RiskSignal(
                reasons=("replay-of-rotated-id",),
                risk="high",
                action=action,
                user_id=alias.user_id,
                ref=tokens.ref_of(alias.target),
                client_ip=facts.client_ip,
                user_agent=facts.user_agent[:256],
            )
            action = monitor.action_for(signal)
        if action not in ("revoke", "step_up"):
            return
        if isinstance(target, SessionRecord):
            yield from self._respond_to_risk(
                Session(target, now), action, "replay-of-rotated-id", {}, facts, now
            )

    def _respond_to_risk(
        self,
        session: Session,
        action: Action,
        reason: str,
        detail: dict[str, JSON],
        facts: RequestFacts,
        now: float,
    ) -> Steps[bool]:
        """Apply the policy's action to a risky session. Returns whether it was revoked.

        A session already flagged to step up is refused on every request until the user signs
        in again: another step-up demand changes nothing, so it is neither reported nor written
        again (one event pair when the flag was set). A revoke is applied whatever the flag."""
        record = session.record
        assert record is not None
        if action == "step_up" and record.flags.get("step_up"):
            return False
        self.emit(
            EventKind.ANOMALY,
            facts,
            now,
            record=record,
            reason=reason,
            detail={**detail, "action": action},
        )
        if action == "revoke":
            yield from Revoke(record.key, self._tombstone(record.key, "anomaly", now, record))
            self.emit(
                EventKind.REVOKED,
                facts,
                now,
                record=record,
                reason="policy:" + reason,
            )
            if self.policy.monitor.revoke_all_on_high and record.user_id is not None:
                yield from self._revoke_user(record.user_id, "policy:" + reason, facts, now, None)
            return True
        if action == "step_up":
            yield from Update(
                record.key, RecordUpdate(meta={"flags": {**record.flags, "step_up": True}})
            )
            marked = record.copy()  # records may be shared (read caches): never change one
            marked.flags["step_up"] = True
            session.record = marked
            self.emit(
                EventKind.STEP_UP_REQUIRED,
                facts,
                now,
                record=record,
                reason=reason,
            )
        return False
