"""Committing: what a request's session becomes when its response starts.

:func:`plan_commit` decides, without I/O, which of a few things the commit does
(:class:`CommitPlan`); :meth:`Committing.commit` carries that plan out. A commit that loses a
race against a concurrent request (a rotation, a logout, a revocation) is settled by
:meth:`Committing._after_lost_rotation`: follow the successor within the grace window, never
revive a dead session, but let a fresh login start a new one.
"""

from __future__ import annotations

from enum import Enum

from .. import tokens
from ..events import EventKind, sink_wants
from ..facts import RequestFacts
from ..policy import Policy
from ..records import JSON, Alias, RecordUpdate, SessionRecord, Tombstone
from ..stores.base import CapAction, Ended
from .base import LOGIN_ROTATION, UNCHANGED_ANONYMOUS, UNCHANGED_SIGNED_IN, EngineBase, Outcome
from .notices import LOGIN_NOTICE_KINDS, login_notices
from .ops import Delete, Get, Insert, Revoke, Rotate, Steps, Update, UserSessions
from .session import (
    STEP_UP_GRANTED,
    STEP_UP_REFUSED,
    STEP_UP_USED,
    Session,
    StepUpNote,
)


class CommitPlan(Enum):
    """What the commit of one request does."""

    #: No write and no cookie: most requests.
    NOTHING = "nothing"
    #: Write what changed (data, flags, a CSRF secret), end other sessions when asked.
    UPDATE = "update"
    #: As :attr:`UPDATE`, and refresh last-seen, expiry and the activity trail.
    TOUCH = "touch"
    #: A first write: a new session and its cookie.
    CREATE = "create"
    #: A new ID for an explicit reason (login, privilege change); the old ID is tombstoned.
    ROTATE = "rotate"
    #: A new ID because the old one is due; the old ID reaches the new for a grace window.
    ROTATE_PERIODIC = "rotate-periodic"
    #: The session ends: tombstoned, cookie expired.
    LOGOUT = "logout"
    #: As :attr:`LOGOUT`, and the values set after ``logout()`` start a new session (a new
    #: ID, its own CSRF secret, nothing else of the ended one; anonymous, or signed in by a
    #: ``login()`` after the ``logout()``) whose cookie replaces the deletion.
    LOGOUT_AND_CREATE = "logout-and-create"


# The plans as module names, for the checks every commit makes: on Python 3.11 each look-up of
# a member through its class (``CommitPlan.NOTHING``) goes through ``EnumType.__getattr__``'s
# slow attribute hook, about 1,000 machine instructions (3.12 dropped the hook); a module
# name costs a dictionary look-up. The members are the same objects.
_NOTHING = CommitPlan.NOTHING
_UPDATE = CommitPlan.UPDATE
_TOUCH = CommitPlan.TOUCH
_CREATE = CommitPlan.CREATE
_ROTATE = CommitPlan.ROTATE
_ROTATE_PERIODIC = CommitPlan.ROTATE_PERIODIC
_LOGOUT = CommitPlan.LOGOUT
_LOGOUT_AND_CREATE = CommitPlan.LOGOUT_AND_CREATE


_STEP_UP_KINDS = {
    STEP_UP_GRANTED: EventKind.STEP_UP_GRANTED,
    STEP_UP_USED: EventKind.STEP_UP_USED,
    STEP_UP_REFUSED: EventKind.STEP_UP_REFUSED,
}

#: The plans that extend the idle deadline: what a passive request never does.
_EXTENDING = frozenset((_TOUCH, _ROTATE_PERIODIC))


def plan_commit(session: Session, now: float, policy: Policy) -> CommitPlan:
    """Decide what the commit of ``session`` at ``now`` does. Pure: reads no clock, no store.
    A detached session (plain HTTP, :attr:`Session.detached`) is never written nor given a
    cookie, whatever the request asked."""
    if session.record is None and session.detached:
        return _NOTHING
    asked = _asked(session)
    if asked is not None:
        return asked
    record = session.record
    if record is None:
        act = session.pending_actions
        token_issued = act is not None and act.token_issued
        return _CREATE if token_issued or session.has_changes() else _NOTHING
    if not session.via_alias:  # a request through an alias leaves timing to its successor
        if policy.rotate_every > 0 and now - record.rotated_at >= policy.rotate_every:
            return _ROTATE_PERIODIC
        if now - record.last_seen >= policy.effective_touch_interval:
            return _TOUCH
    return _UPDATE if session.has_changes() else _NOTHING


def _asked(session: Session) -> CommitPlan | None:
    """The plan the request asked for explicitly (logout, login, rotation), if any."""
    act = session.pending_actions
    if act is None:
        return None
    if act.logout:
        if act.login_user is not None or session.values_after_logout:
            return _LOGOUT_AND_CREATE
        return _LOGOUT
    if act.login_user is not None or act.rotate:
        return _ROTATE if session.record is not None else _CREATE
    return None


class Committing(EngineBase):
    """The commit half of the engine."""

    def commit(self, session: Session, facts: RequestFacts) -> Steps[Outcome]:
        """Write what the request changed and decide the cookie. Called when the response
        starts; a commit with nothing to do ends at once, without a store call."""
        now = self.clock.now()
        act = session.pending_actions
        if act is not None:
            if act.alias_refused is not None:
                self._report_alias_refusal(session, facts, now, act.alias_refused)
            if act.step_ups is not None:
                self._report_step_ups(session, facts, now, act.step_ups)
        plan = self._plan(session, now, facts)
        if plan is _NOTHING:
            record = session.record
            if record is None or record.user_id is None:
                return UNCHANGED_ANONYMOUS
            return UNCHANGED_SIGNED_IN
        if plan is _LOGOUT:
            return (yield from self._logout(session, facts, now))
        if plan is _LOGOUT_AND_CREATE:
            yield from self._logout(session, facts, now)
            return (yield from self._create_after_logout(session, facts, now))
        changes = session.changes()
        record = session.record
        if record is not None and self._expiry_reason(record, now) is not None:
            # The session's deadline passed while the request was in flight: a write must not
            # revive it (unless a concurrent request kept it alive meanwhile).
            live = yield from self._still_live(record.key, facts, now)
            if not live:
                return (yield from self._never_revive(session, facts, now, changes))
        if plan is _CREATE:
            return (yield from self._create(session, facts, now, changes))
        if plan is _UPDATE or plan is _TOUCH:
            return (yield from self._update(session, facts, now, changes, plan))
        return (yield from self._rotate(session, facts, now, changes, plan))

    def _plan(self, session: Session, now: float, facts: RequestFacts) -> CommitPlan:
        """:func:`plan_commit`, except that a passive request (``Policy.passive_paths``:
        polling, heartbeats) never extends the idle timeout nor rotates the ID."""
        plan = plan_commit(session, now, self.policy)
        if plan in _EXTENDING and self.policy.is_passive(facts.path):
            return _UPDATE if session.has_changes() else _NOTHING
        return plan

    def _report_alias_refusal(
        self, session: Session, facts: RequestFacts, now: float, action: str
    ) -> None:
        record = session.record
        self.emit(
            EventKind.ALIAS_ACTION_REFUSED,
            facts,
            now,
            key=record.key if record is not None else "",
            lineage=record.lineage if record is not None else "",
            user_id=record.user_id if record is not None else None,
            reason=action,
        )

    def _report_step_ups(
        self, session: Session, facts: RequestFacts, now: float, step_ups: list[StepUpNote]
    ) -> None:
        """One event per step-up grant given, used or refused in the request, in order; the
        operation appears as its digest (the one the session keeps), never by name."""
        record = session.record
        key = record.key if record is not None else ""
        lineage = record.lineage if record is not None else ""
        for outcome, digest, user, reason in step_ups:
            self.emit(
                _STEP_UP_KINDS[outcome],
                facts,
                now,
                key=key,
                lineage=lineage,
                user_id=user,
                reason=reason,
                detail={"operation": digest},
            )

    def _logout(self, session: Session, facts: RequestFacts, now: float) -> Steps[Outcome]:
        record = session.record
        if record is not None:
            successor = yield from self._successor(record.key, now)
            tombstone = self._tombstone(record.key, "logout", now, record)
            ended = yield from Revoke(record.key, tombstone)
            if successor is not None:  # a concurrent request rotated it: end where it went
                moved = self._tombstone(successor, "logout", now, record)
                yield from Revoke(successor, moved)
            elif not ended and record.user_id is not None:
                yield from self._end_moved_login(record, now)
            # Asked to end the other sessions too: signing out everywhere.
            yield from self._end_others(session, facts, now, None, record.user_id)
            self.emit(
                EventKind.LOGGED_OUT,
                facts,
                now,
                record=record,
            )
        return Outcome(self.cookies.clear(), logged_out=True, wrote=record is not None)

    def _create_after_logout(
        self, session: Session, facts: RequestFacts, now: float
    ) -> Steps[Outcome]:
        """After the logout ended the session: the values set after ``logout()`` go into a new
        session made as any other (:meth:`_create`: a new ID and lineage, the CSRF secret
        ``logout()`` or ``login()`` renewed), so "You have been signed out" reaches the next
        page; a ``login()`` after the ``logout()`` signs the new session in (switching users:
        nothing of the ended session, its lineage and device binding included, goes over).
        The outcome is still a logout (the old session's clean-up), with the new cookie instead
        of the deletion."""
        session.record = None
        values = RecordUpdate(set_data=session.values_after_logout)
        created = yield from self._create(session, facts, now, values)
        return Outcome(
            created.set_cookie, created.authenticated, logged_out=True, wrote=True, issued=True
        )

    def _end_moved_login(self, record: SessionRecord, now: float) -> Steps[None]:
        """A logout found its ID already rotated out explicitly by a concurrent request (a
        tombstone does not say where it went): end the user's session of the same login (same
        creation time), so signing out never leaves the successor signed in."""
        for other in (yield from UserSessions(record.user_id or "")):
            if other.created_at == record.created_at:
                ended = self._tombstone(other.key, "logout", now, other)
                yield from Revoke(other.key, ended)

    def _still_live(self, key: str, facts: RequestFacts, now: float) -> Steps[bool]:
        """Whether the stored session (a concurrent request may have touched or moved it since
        this request loaded it) is still within its deadlines; if not, it is ended here, and
        its expiry reported, as a request that found it on arrival would."""
        found = yield from Get(key)
        if isinstance(found, Alias):
            return True  # moved by a concurrent request: the race recovery follows it
        if not isinstance(found, SessionRecord):
            return False
        expired = self._expiry_reason(found, now)
        if expired is None:
            return True
        yield from self._end_expired(found, expired, facts, now)
        return False

    # -- update and touch ---------------------------------------------------------------------
    def _update(
        self,
        session: Session,
        facts: RequestFacts,
        now: float,
        changes: RecordUpdate,
        plan: CommitPlan,
    ) -> Steps[Outcome]:
        record = session.record
        assert record is not None
        if plan is _TOUCH:
            self._touch(record, facts, now, changes)
        act = session.pending_actions
        if act is not None and act.token_issued and not record.csrf_secret:
            changes.meta["csrf_secret"] = session.csrf_secret()
        ended = yield from self._end_others(session, facts, now, record.key, record.user_id)
        if changes.is_empty():
            return Outcome(None, record.user_id is not None, wrote=ended)
        activity_max = self.policy.monitor.activity_max
        ok = yield from Update(record.key, changes, activity_max=activity_max)
        if not ok:
            # A concurrent request may have rotated the ID: follow it within the grace.
            successor = yield from self._successor(record.key, now)
            if successor is not None:
                ok = yield from Update(successor, changes, activity_max=activity_max)
        if not ok:
            return (yield from self._write_lost(record, facts, now))
        return Outcome(None, record.user_id is not None, wrote=True)

    def _write_lost(self, record: SessionRecord, facts: RequestFacts, now: float) -> Steps[Outcome]:
        """The session ended while the request was in flight: its writes are dropped, and its
        cookie goes, unless the ID was replaced at login (the browser holds the new one)."""
        found = yield from Get(record.key)
        at_login = isinstance(found, Tombstone) and found.reason == LOGIN_ROTATION
        self.emit(
            EventKind.WRITE_AFTER_REVOKE,
            facts,
            now,
            record=record,
            reason="replaced-at-login" if at_login else "",
        )
        return Outcome(None if at_login else self.cookies.clear(), wrote=True)

    def _touch(
        self, record: SessionRecord, facts: RequestFacts, now: float, changes: RecordUpdate
    ) -> None:
        """Last seen, the new expiry and an entry of the activity trail."""
        lifetime = self.lifetime_of(record)
        if now - record.last_seen >= lifetime.idle / 2:
            self.emit(
                EventKind.TOUCHED_AFTER_IDLE_GAP,
                facts,
                now,
                record=record,
                detail={"gap": round(now - record.last_seen, 3)},
            )
        changes.meta["last_seen"] = now
        changes.meta["expires_at"] = lifetime.expires_at(record.created_at, now)
        changes.activity = self._activity(facts, now)

    def _activity(self, facts: RequestFacts, now: float) -> dict[str, JSON]:
        return {
            "at": now,
            "ip": facts.client_ip,
            "ua": self.agent_label(facts.user_agent),
            "path": facts.path[:256],
            "method": facts.method,
        }

    def _end_others(
        self,
        session: Session,
        facts: RequestFacts,
        now: float,
        keep: str | None,
        user_id: str | None,
    ) -> Steps[bool]:
        """End the user's sessions but ``keep`` (``None``: all) when the request asked (or the
        policy wants it after a credential change), and report a credential change. Returns
        whether it wrote."""
        act = session.pending_actions
        if act is None or not (act.credentials_changed or act.end_others or act.revoke_others):
            return False
        wanted = act.end_others
        if wanted is None:
            wanted = self.policy.monitor.end_other_sessions_on_credential_change
        ended: list[str] = []
        if wanted and user_id is not None:
            reason = "user:revoke-others" if act.revoke_others else "policy:credential-change"
            ended = yield from self._revoke_user(user_id, reason, facts, now, keep)
        if act.credentials_changed and user_id is not None:
            record = session.record
            key = keep if keep is not None else (record.key if record is not None else "")
            self.emit(
                EventKind.CREDENTIALS_CHANGED,
                facts,
                now,
                key=key,
                lineage=record.lineage if record is not None else "",
                user_id=user_id,
                detail={"ended": len(ended)},
            )
        return bool(wanted) and user_id is not None

    def _notify_login(self, record: SessionRecord, facts: RequestFacts, now: float) -> Steps[None]:
        """``MonitorPolicy.notify_logins``: after a sign-in committed, one listing of the
        user's sessions tells whether it is concurrent with others, and from a new device
        (:func:`~.notices.login_notices`). No store call when off or when no sink wants them."""
        user_id = record.user_id
        if not self.policy.monitor.notify_logins or user_id is None:
            return
        if not any(sink_wants(self.sink, kind) for kind in LOGIN_NOTICE_KINDS):
            return
        listed = yield from UserSessions(user_id)
        others = [r for r in listed if r.key != record.key and self._expiry_reason(r, now) is None]
        for kind, detail in login_notices(record.fingerprint, others):
            self.emit(
                kind,
                facts,
                now,
                key=record.key,
                lineage=record.lineage,
                user_id=user_id,
                detail=detail,
            )

    # -- create -------------------------------------------------------------------------------
    def _create(
        self, session: Session, facts: RequestFacts, now: float, changes: RecordUpdate
    ) -> Steps[Outcome]:
        session_id = tokens.new_session_id()
        key = self.keyring.hash_id(session_id)
        act = session.actions
        lifetime = self.lifetimes.pick(act.remember)
        record = SessionRecord(
            key=key,
            created_at=now,
            last_seen=now,
            expires_at=lifetime.expires_at(now, now),
            rotated_at=now,
            csrf_secret=session.csrf_secret(),
            user_id=act.login_user,
            auth_at=now if act.login_user is not None else None,
            client_ip=facts.client_ip,
            user_agent=self.agent_label(facts.user_agent),
            fingerprint=self._login_fingerprint(facts) if act.login_user is not None else None,
            flags=lifetime.sign_in_flags(tokens.new_lineage()),
            data={**changes.set_data},
            dbsc=act.dbsc[0] if act.dbsc is not None else None,
        )
        cap, on_limit = self._cap(session)
        evicted = yield from Insert(
            record, max_per_user=cap, tombstone_until=now + self._tomb_ttl, on_limit=on_limit
        )
        lineage = record.lineage
        self.emit(EventKind.CREATED, facts, now, key=key, lineage=lineage, user_id=record.user_id)
        if record.user_id is None and not record.data:
            yield from self._bound_anonymous(facts.client_ip, key)
        if act.login_user is not None:
            self.emit(
                EventKind.LOGGED_IN,
                facts,
                now,
                key=key,
                lineage=lineage,
                user_id=act.login_user,
                detail={"remembered": lifetime.remembered},
            )
        self._report_evicted(evicted, facts, now, record.user_id)
        if act.login_user is not None:
            yield from self._notify_login(record, facts, now)
        session.record = record
        cookie = self.cookies.issue(session_id, lifetime.absolute, persistent=lifetime.persistent)
        return Outcome(cookie, record.user_id is not None, wrote=True, issued=True)

    def _cap(self, session: Session) -> tuple[int, CapAction]:
        """The per-user cap the write of ``session`` is held to (by the store, atomically).
        ``"reject"`` refuses sign-ins only: any other write (a periodic rotation, a privilege
        change) neither is refused nor ends the user's other sessions."""
        policy = self.policy
        act = session.pending_actions
        if policy.on_session_limit == "reject" and (act is None or act.login_user is None):
            return 0, policy.on_session_limit
        return policy.max_sessions_per_user, policy.on_session_limit

    def _bound_anonymous(self, client_ip: str, key: str) -> Steps[None]:
        """A new token-only session (a login page's CSRF token): beyond the client's cap, its
        oldest such sessions are deleted if they still hold nothing (no data, no user)."""
        for old in self.anonymous.add(client_ip, key):
            found = yield from Get(old)
            if isinstance(found, SessionRecord) and found.user_id is None and not found.data:
                yield from Delete(old)

    def _report_evicted(
        self, evicted: Ended, facts: RequestFacts, now: float, user_id: str | None
    ) -> None:
        """One ``session.evicted`` per session the per-user cap ended, named by the lineage
        the store read in the same write (``evicted``: key to lineage)."""
        for k, lineage in evicted.items():
            self.emit(
                EventKind.EVICTED,
                facts,
                now,
                key=k,
                lineage=lineage,
                user_id=user_id,
                reason="session-cap",
            )

    # -- rotate -------------------------------------------------------------------------------
    def _rotate(
        self,
        session: Session,
        facts: RequestFacts,
        now: float,
        changes: RecordUpdate,
        plan: CommitPlan,
    ) -> Steps[Outcome]:
        record = session.record
        assert record is not None
        periodic = plan is _ROTATE_PERIODIC
        session_id = tokens.new_session_id()
        new_key = self.keyring.hash_id(session_id)
        changes.meta.update(self._rotated_meta(session, facts, now, record.created_at))
        changes.activity = self._activity(facts, now)
        evicted = yield from self._rotate_op(session, record.key, new_key, changes, now, periodic)
        if evicted is None:
            lost = yield from self._after_lost_rotation(
                session, facts, now, changes, new_key, periodic
            )
            if isinstance(lost, Outcome):
                return lost
            evicted = lost
        return (
            yield from self._rotated(
                session, facts, now, changes, session_id, new_key, evicted, periodic
            )
        )

    def _rotated_meta(
        self, session: Session, facts: RequestFacts, now: float, created_at: float
    ) -> dict[str, JSON]:
        """The fields a rotation sets (a login also its user, fingerprint and fresh flags)."""
        act = session.actions
        login = act.login_user is not None
        record = session.record
        # The absolute timeout of a signed-in session counts from its login, not from the
        # anonymous session (a login page left open) it grew out of. A sign-in picks the
        # lifetime (remembered or not); any other rotation keeps the session's.
        start = now if login else created_at
        if login or record is None:
            lifetime = self.lifetimes.pick(act.remember)
        else:
            lifetime = self.lifetime_of(record)
        meta: dict[str, JSON] = {
            "last_seen": now,
            "rotated_at": now,
            "expires_at": lifetime.expires_at(start, now),
            "client_ip": facts.client_ip,
            "user_agent": self.agent_label(facts.user_agent),
        }
        if login:
            meta["created_at"] = now
            meta["user_id"] = act.login_user
            meta["auth_at"] = now
            meta["csrf_secret"] = session.csrf_secret()
            meta["fingerprint"] = self._login_fingerprint(facts)
            # Fresh flags, but the same lineage: one browser session before and after sign-in
            # (the ID, which fixation is about, still changes); remembered if asked.
            meta["flags"] = lifetime.sign_in_flags(record.lineage) if record is not None else {}
        elif act.reauthenticated:
            # The user proved who they are from this browser and network: it becomes the
            # session's reference fingerprint, as at login.
            meta["auth_at"] = now
            meta["fingerprint"] = self._login_fingerprint(facts)
        return meta

    def _rotate_op(
        self,
        session: Session,
        old_key: str,
        new_key: str,
        changes: RecordUpdate,
        now: float,
        periodic: bool,
    ) -> Steps[Ended | None]:
        """The store call of a rotation: a periodic one leaves an alias with a grace window,
        any other a tombstone."""
        user_id = session.record.user_id if session.record is not None else None
        old_becomes: Alias | Tombstone
        if periodic and self.policy.rotation_grace > 0:
            old_becomes = Alias(
                key=old_key,
                target=new_key,
                at=now,
                grace_until=now + self.policy.rotation_grace,
                until=now + self._tomb_ttl,
                user_id=user_id,
            )
        else:
            login = session.actions.login_user is not None
            reason = LOGIN_ROTATION if login else "rotated:privilege"
            old_becomes = self._tombstone(old_key, reason, now, session.record)
        cap, on_limit = self._cap(session)
        return (
            yield from Rotate(
                old_key,
                new_key,
                changes,
                old_becomes=old_becomes,
                max_per_user=cap,
                tombstone_until=now + self._tomb_ttl,
                activity_max=self.policy.monitor.activity_max,
                on_limit=on_limit,
            )
        )

    def _after_lost_rotation(
        self,
        session: Session,
        facts: RequestFacts,
        now: float,
        changes: RecordUpdate,
        new_key: str,
        periodic: bool,
    ) -> Steps[Outcome | Ended]:
        """Race recovery: someone else moved or ended this session while the request was in
        flight. The outcome of this request, or the evicted keys and lineages of a rotation
        that now succeeded on the successor."""
        record = session.record
        assert record is not None
        successor = yield from self._successor(record.key, now)
        if successor is not None and periodic:
            # A concurrent request rotated it first: that response carries the new ID. Keep
            # this request's writes (without the rotation's own fields) on the successor and
            # leave the cookie alone.
            moved_data = RecordUpdate(set_data=changes.set_data, del_data=changes.del_data)
            ok = moved_data.is_empty() or (
                yield from Update(
                    successor, moved_data, activity_max=self.policy.monitor.activity_max
                )
            )
            if ok:
                # What it asked besides (log out other devices) still happens, around the
                # successor.
                yield from self._end_others(session, facts, now, successor, record.user_id)
                return Outcome(None, record.user_id is not None, wrote=True)
        elif successor is not None:
            # An explicit rotation (login, privilege change) raced a periodic one: it rotates
            # the successor instead.
            evicted = yield from self._rotate_op(
                session, successor, new_key, changes, now, periodic
            )
            if evicted is not None:
                return evicted
        return (yield from self._never_revive(session, facts, now, changes))

    def _never_revive(
        self, session: Session, facts: RequestFacts, now: float, changes: RecordUpdate
    ) -> Steps[Outcome]:
        """The session died while this request was in flight (logout, revocation, expiry, or a
        concurrent explicit rotation, which does not say where it went): it stays dead, and its
        cookie goes; a fresh login still gets a new session. "Log out other devices" or a
        credential change asked by the request still ends the user's sessions, all of them:
        its own is gone, and whichever request moved it first (perhaps a stolen copy of the
        cookie) must not keep the successor."""
        record = session.record
        assert record is not None
        yield from self._end_others(session, facts, now, None, record.user_id)
        if session.actions.login_user is None:
            return (yield from self._write_lost(record, facts, now))
        self.emit(
            EventKind.WRITE_AFTER_REVOKE,
            facts,
            now,
            record=record,
        )
        session.record = None
        fresh = RecordUpdate(set_data={**record.data, **changes.set_data})
        for k in changes.del_data:
            fresh.set_data.pop(k, None)
        return (yield from self._create(session, facts, now, fresh))

    def _rotated(
        self,
        session: Session,
        facts: RequestFacts,
        now: float,
        changes: RecordUpdate,
        session_id: str,
        new_key: str,
        evicted: Ended,
        periodic: bool,
    ) -> Steps[Outcome]:
        """The rotation happened: report it, and the session is the one at its new key
        (``evicted``: the key and lineage of each session the per-user cap evicted)."""
        record = session.record
        assert record is not None
        act = session.actions
        user_id = act.login_user or record.user_id
        lineage = record.lineage
        reason = "explicit"
        if act.login_user is not None:
            reason = "login"
        elif act.revoke_others:
            reason = "revoke-others"
        self.emit(
            EventKind.ROTATED,
            facts,
            now,
            key=new_key,
            lineage=lineage,
            user_id=user_id,
            reason="periodic" if periodic else reason,
            detail={"previous": tokens.ref_of(record.key)},
        )
        if act.login_user is not None:
            self.emit(
                EventKind.LOGGED_IN,
                facts,
                now,
                key=new_key,
                lineage=lineage,
                user_id=act.login_user,
                detail={"remembered": self.lifetimes.pick(act.remember).remembered},
            )
        self._report_evicted(evicted, facts, now, user_id)
        # The request's own values: nothing else holds them, so they are not copied.
        new_record = record.updated(changes, copy_values=False)
        new_record.key = new_key
        session.record = new_record
        yield from self._end_others(session, facts, now, new_key, new_record.user_id)
        if act.login_user is not None:
            yield from self._notify_login(new_record, facts, now)
        lifetime = self.lifetime_of(new_record)
        max_age = new_record.created_at + lifetime.absolute - now
        cookie = self.cookies.issue(session_id, max_age, persistent=lifetime.persistent)
        return Outcome(cookie, new_record.user_id is not None, wrote=True, issued=True)
