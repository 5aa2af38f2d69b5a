"""Open connections: whether the session an open WebSocket or event stream was opened with is
still live, and what an application may save over a connection that cannot carry a cookie.

Both are core rules (no I/O of their own): :func:`check_live` is what the watcher of open
connections (:mod:`sessionwarden.live`) runs against the store for every watched session at
each check; :func:`save_without_cookie` is the commit of a session that an application asks for
over an open WebSocket.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..facts import RequestFacts
from ..records import Alias, SessionRecord, Tombstone
from .base import EngineBase, remembered
from .commit import CommitPlan, Committing, plan_commit
from .ops import Get, Steps
from .session import Session


@dataclass(frozen=True, slots=True)
class Liveness:
    """What one check of a watched session found.

    ``key``: the store key the session lives under now (a rotation within its grace window
    moves it); ``None`` when the session may no longer be served over an open connection,
    with ``reason`` saying why: it ended (a tombstone's reason such as ``logout`` or
    ``revoked:user``, ``expired.idle``, ``expired.absolute``, ``unknown``, ``rotated-out``),
    or a risk decision demanded that its user sign in again (:data:`STEP_UP_REQUIRED`)."""

    key: str | None
    reason: str = ""
    #: The earliest time the session can expire if nothing else happens (a timer's deadline).
    deadline: float = 0.0


def check_live(engine: EngineBase, key: str, now: float) -> Steps[Liveness]:
    """Whether the session at ``key`` is still live at ``now``: a live, unexpired record, or
    an alias within its grace window whose target is one (periodic rotation by a request of
    the same session elsewhere), that no risk decision flagged to step up. A record past a
    deadline is ended as a request would end it (its expiry's tombstone, the
    ``session.expired.*`` event). Anything else ends the connection: a flagged session is
    refused on every HTTP request until its user signs in again (which gives it a new ID), so
    its open connections must not go on serving it."""
    found = remembered((yield from Get(key)), now)
    if isinstance(found, Alias):
        if now >= found.grace_until:
            return Liveness(None, "rotated-out")
        key = found.target
        found = yield from Get(key)
    if isinstance(found, Tombstone):
        return Liveness(None, found.reason)
    if not isinstance(found, SessionRecord):
        return Liveness(None, "unknown")
    expired = engine._expiry_reason(found, now)
    if expired is not None:
        # Ended here as a request that found it would end it: the record becomes the expiry's
        # tombstone and the expiry is reported, whether or not a request ever comes.
        yield from engine._end_expired(found, expired, None, now)
        return Liveness(None, expired.value.removeprefix("session."))
    if found.flags.get("step_up"):
        return Liveness(None, STEP_UP_REQUIRED)
    deadline = engine.lifetime_of(found).expires_at(found.created_at, found.last_seen)
    return Liveness(key, deadline=deadline)


#: :attr:`Liveness.reason` of a session a risk decision flagged to step up
#: (``MonitorPolicy`` action ``"step_up"``): every HTTP request of it is refused until the
#: user signs in again, and so are its open connections.
STEP_UP_REQUIRED = "step-up-required"


class CookieNeeded(RuntimeError):
    """Raised by :func:`save_without_cookie` for a change that needs a new cookie (a login, an
    explicit rotation, a new session): only an HTTP response can carry one."""


def save_without_cookie(engine: Committing, session: Session, facts: RequestFacts) -> Steps[bool]:
    """Commit what an application changed in ``session`` over an open WebSocket.

    Data changes are written and ``last_seen`` is refreshed at most once per touch interval,
    as on HTTP. A periodic rotation that is due waits for the next HTTP request (no cookie can
    be sent here); a logout ends the session (the browser's cookie then names a dead session;
    values set after ``logout()`` are dropped: a new session needs a cookie).
    A login or an explicit rotation raises :class:`CookieNeeded`. Returns whether anything
    was written."""
    now = engine.clock.now()
    plan = plan_commit(session, now, engine.policy)
    if plan is CommitPlan.NOTHING:
        return False
    act = session.pending_actions
    signs_in = act is not None and act.login_user is not None  # after a logout too
    if plan in (CommitPlan.CREATE, CommitPlan.ROTATE) or signs_in:
        raise CookieNeeded("a login or a new session ID needs an HTTP response to set its cookie")
    if plan is CommitPlan.LOGOUT or plan is CommitPlan.LOGOUT_AND_CREATE:
        yield from engine._logout(session, facts, now)
        return True
    if plan is CommitPlan.ROTATE_PERIODIC:
        record = session.record
        assert record is not None
        touch = now - record.last_seen >= engine.policy.effective_touch_interval
        plan = CommitPlan.TOUCH if touch else CommitPlan.UPDATE
        if plan is CommitPlan.UPDATE and not session.has_changes():
            return False
    outcome = yield from engine._update(session, facts, now, session.changes(), plan)
    return outcome.wrote
