"""The session rules for one policy: load, commit, and the operator's calls.

Sans-I/O: every operation is a generator that yields the typed store operations it needs
(:mod:`sessionwarden.core.ops`) and receives their results, so the rules exist once and the
driver (:mod:`sessionwarden.core.driver`: ``run_sync`` for WSGI and the CLI, ``run_async`` for
ASGI) only executes them. No function here reads a clock of its own, opens a socket or logs.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import tokens
from ..dbsc_state import is_bound
from ..events import EventKind
from ..records import JSON, SessionRecord
from .commit import Committing
from .lifetime import flagged_remembered
from .load import Loading
from .ops import AllSessions, Purge, Revoke, Steps, UserSessions
from .session import Session


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One row of a user's "your devices" page."""

    ref: str
    user_id: str | None
    created_at: float
    last_seen: float
    expires_at: float
    client_ip: str
    user_agent: str
    current: bool
    #: The session is bound to a key on its device (DBSC): a copied cookie is of little use.
    device_bound: bool = False
    #: Its user asked at sign-in to be kept signed in: it lives by ``Policy.remember``.
    remembered: bool = False

    def to_dict(self) -> dict[str, JSON]:
        return {
            "ref": self.ref,
            "user": self.user_id,
            "created_at": self.created_at,
            "last_seen": self.last_seen,
            "expires_at": self.expires_at,
            "ip": self.client_ip,
            "ua": self.user_agent,
            "current": self.current,
            "device_bound": self.device_bound,
            "remembered": self.remembered,
        }


def _info(r: SessionRecord, *, current: bool = False) -> SessionInfo:
    return SessionInfo(
        ref=tokens.ref_of(r.key),
        user_id=r.user_id,
        created_at=r.created_at,
        last_seen=r.last_seen,
        expires_at=r.expires_at,
        client_ip=r.client_ip,
        user_agent=r.user_agent,
        current=current,
        device_bound=is_bound(r.dbsc),
        remembered=flagged_remembered(r.flags),
    )


def _page_cursor(after: str | None) -> tuple[str | None, str | None]:
    """A page cursor as ``(where the store starts, the reference to leave out)``."""
    if after is None:
        return None, None
    kind, _, value = after.partition(":")
    if kind not in ("k", "s") or not value:
        raise ValueError("not a cursor a page returned")
    return value, value if kind == "k" else None


def _next_cursor(records: list[SessionRecord], cursor: str | None) -> str | None:
    """The engine's cursor after a store page: the reference of its last key where the store
    pages by key, the store's own cursor otherwise, ``None`` at the end of the walk."""
    if cursor is None:
        return None
    if records and cursor == records[-1].key:
        return "k:" + tokens.ref_of(cursor)
    return "s:" + cursor


class Engine(Loading, Committing):
    """The session rules for one :class:`~sessionwarden.policy.Policy`, independent of any
    framework and of any store driver: :meth:`load` before the application runs,
    :meth:`commit` when its response starts."""

    # -- operator and "your devices" calls ----------------------------------------------------
    def list_sessions(
        self, user_id: str, current: Session | None = None
    ) -> Steps[list[SessionInfo]]:
        """A user's live sessions, oldest first, with the current one marked."""
        now = self.clock.now()
        records = yield from UserSessions(user_id)
        current_key = current.record.key if current is not None and current.record else None
        return [
            _info(r, current=r.key == current_key)
            for r in records
            if self._expiry_reason(r, now) is None
        ]

    def list_all_sessions(
        self, after: str | None = None, limit: int = 50
    ) -> Steps[tuple[list[SessionInfo], str | None]]:
        """One page of every user's live sessions (the operator's view) and the cursor of the
        next page (``None``: this was the last). Pass the cursor back as ``after``.

        A cursor never holds a store key: where the store pages by key, it is the reference of
        the last session listed (``k:<ref>``) and the next page starts after every key with
        that reference; otherwise it is the store's own (``s:<cursor>``, Redis' SCAN cursor).
        Every session live throughout a walk is listed; a repeat the store reports (Redis) is
        dropped within a page, and expired sessions are left out: the store is read on until the
        page holds ``limit`` sessions or the walk ends, so only the last page is short (on
        Redis a page may hold more, as ``SCAN`` returns). ``ValueError`` for a cursor no page
        returned."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        now = self.clock.now()
        rows: list[SessionInfo] = []
        seen: set[str] = set()
        while True:
            start, skip = _page_cursor(after)
            wanted = limit - len(rows) + (skip is not None)
            records, cursor = yield from AllSessions(start, wanted)
            for r in records:
                if r.key in seen or (skip is not None and tokens.ref_of(r.key) == skip):
                    continue
                seen.add(r.key)
                if self._expiry_reason(r, now) is None:
                    rows.append(_info(r))
            after = _next_cursor(records, cursor)
            # A store page of expired sessions only is not a page to show: read on until the
            # page is full or the walk ends, so only the last page is ever short.
            if after is None or len(rows) >= limit:
                return rows, after

    def find_sessions(self, user_id: str, ref: str) -> Steps[list[SessionRecord]]:
        """The user's sessions whose reference starts with ``ref`` (at least 8 hex digits, so a
        short prefix can never name many sessions by accident)."""
        if len(ref) < 8:
            return []
        records = yield from UserSessions(user_id)
        return [r for r in records if r.key.startswith(ref)]

    def revoke_session(self, user_id: str, ref: str, *, by: str = "user") -> Steps[bool]:
        """Revoke one of a user's sessions by its reference (from :meth:`list_sessions`);
        nothing when the reference names no session or more than one."""
        now = self.clock.now()
        matches = yield from self.find_sessions(user_id, ref)
        if len(matches) != 1:
            return False
        record = matches[0]
        reason = f"revoked:{by}"  # as revoke_user's: the tombstone's and the event's
        ok = yield from Revoke(record.key, self._tombstone(record.key, reason, now, record))
        if ok:
            self.emit(EventKind.REVOKED, None, now, record=record, reason=reason)
        return ok

    def revoke_user(
        self, user_id: str, *, by: str = "admin", keep: Session | None = None
    ) -> Steps[list[str]]:
        """End every session of a user ("log out everywhere", a disabled account)."""
        now = self.clock.now()
        keep_key = keep.record.key if keep is not None and keep.record else None
        keys = yield from self._revoke_user(user_id, f"revoked:{by}", None, now, keep_key)
        return [tokens.ref_of(k) for k in keys]

    def purge(self, batch: int = 1000) -> Steps[int]:
        """Delete expired records and outlived tombstones and aliases."""
        removed = yield from Purge(self.clock.now(), batch=batch)
        return removed
