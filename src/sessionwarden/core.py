"""The decisions: load, validate, touch, rotate, log in, log out, revoke.

Sans-I/O: every operation here is a generator that *yields* the store calls it needs as
:class:`Op` values and receives their results, so the rules exist once and the synchronous driver
(:func:`run_sync`, used by WSGI and the CLI) and the asynchronous one (:func:`run_async`, used by
ASGI) only execute calls. No function here reads a clock of its own, opens a socket or logs.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from . import tokens
from .clock import Clock, SystemClock
from .cookies import CookieWriter, cookie_values
from .events import Event, EventKind, EventSink, NullSink
from .facts import RequestFacts
from .policy import Action, Policy
from .records import (
    JSON,
    Alias,
    Lookup,
    RecordUpdate,
    SessionRecord,
    Tombstone,
    clone_json,
    dumps,
)
from .stores.base import AsyncSessionStore, SessionStore

T = TypeVar("T")


class Op(NamedTuple):
    """One store call: method name and arguments."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


Steps = Generator[Op, Any, T]


def run_sync(steps: Steps[T], store: SessionStore) -> T:
    """Execute a core operation against a synchronous store."""
    try:
        op = next(steps)
        while True:
            op = steps.send(getattr(store, op.method)(*op.args, **op.kwargs))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_async(steps: Steps[T], store: AsyncSessionStore) -> T:
    """Execute a core operation against an asynchronous store."""
    try:
        op = next(steps)
        while True:
            op = steps.send(await getattr(store, op.method)(*op.args, **op.kwargs))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class ReauthenticationRequired(Exception):
    """Raised by :meth:`Session.require_recent_auth`; adapters answer 401 or redirect to sign in."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_MUTABLE = (list, dict)


class Session:
    """One request's view of its session: a mapping of JSON values plus the security actions.

    Nothing here touches the store. Changes are recorded and written when the response starts,
    and only the keys that changed are written, so concurrent requests never erase each other.
    """

    __slots__ = (
        "_accessed",
        "_actions",
        "_csrf_secret",
        "_deleted",
        "_is_new",
        "_new_fingerprint",
        "_now",
        "_set",
        "record",
        "via_alias",
    )

    def __init__(self, record: SessionRecord | None, now: float, *, via_alias: bool = False):
        self.record = record
        self._is_new = record is None
        self.via_alias = via_alias
        self._now = now
        self._set: dict[str, JSON] = {}
        self._deleted: set[str] = set()
        #: Lists and dicts handed to the app: their JSON when read, and the app's copy.
        self._accessed: dict[str, tuple[str, JSON]] = {}
        self._csrf_secret: str | None = None
        self._new_fingerprint: dict[str, JSON] | None = None
        self._actions: _Actions | None = None  # most requests ask nothing: made on demand

    # -- mapping -----------------------------------------------------------------------------
    def _lookup(self, key: str) -> tuple[bool, JSON]:
        if key in self._set:
            return True, self._set[key]
        if key in self._deleted or self.record is None or key not in self.record.data:
            return False, None
        value = self.record.data[key]
        if isinstance(value, _MUTABLE):
            # The record may be shared (a store's read cache hands the same one to every
            # request), so the app gets its own copy of a list or dict, the same one each time;
            # a change it makes in place is found at commit.
            working = self._accessed.get(key)
            if working is None:
                working = self._accessed[key] = (dumps(value), clone_json(value))
            return True, working[1]
        return True, value

    def __getitem__(self, key: str) -> JSON:
        found, value = self._lookup(key)
        if not found:
            raise KeyError(key)
        return value

    def get(self, key: str, default: JSON = None) -> JSON:
        found, value = self._lookup(key)
        return value if found else default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._lookup(key)[0]

    def __setitem__(self, key: str, value: JSON) -> None:
        if not isinstance(key, str) or not key:
            raise TypeError("session keys are non-empty strings")
        try:
            dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"session values must be JSON-serialisable: {exc}") from None
        self._set[key] = value
        self._deleted.discard(key)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.pop(key)

    def pop(self, key: str, default: JSON = None) -> JSON:
        found, value = self._lookup(key)
        self._set.pop(key, None)
        self._accessed.pop(key, None)
        if self.record is not None and key in self.record.data:
            self._deleted.add(key)
        return value if found else default

    def setdefault(self, key: str, default: JSON = None) -> JSON:
        found, value = self._lookup(key)
        if found:
            return value
        self[key] = default
        return default

    def update(self, values: dict[str, JSON]) -> None:
        for key, value in values.items():
            self[key] = value

    def clear(self) -> None:
        for key in list(self.keys()):
            self.pop(key)

    def keys(self) -> list[str]:
        base = [] if self.record is None else list(self.record.data)
        keys = [k for k in base if k not in self._deleted]
        keys.extend(k for k in self._set if k not in keys)
        return keys

    def items(self) -> Iterator[tuple[str, JSON]]:
        for key in self.keys():
            yield key, self[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:  # never shows an ID
        return f"<Session ref={self.ref or '-'} user={self.user_id!r}>"

    # -- state ------------------------------------------------------------------------------
    @property
    def actions(self) -> _Actions:
        """What the request asked of the session (login, rotation, ...)."""
        act = self._actions
        if act is None:
            act = self._actions = _Actions()
        return act

    @property
    def ref(self) -> str:
        """Short reference for logs and the "your devices" page (never the ID)."""
        return "" if self.record is None else tokens.ref_of(self.record.key)

    @property
    def user_id(self) -> str | None:
        act = self._actions
        if act is not None:
            if act.login_user is not None:
                return act.login_user
            if act.logout:
                return None
        return None if self.record is None else self.record.user_id

    @property
    def is_authenticated(self) -> bool:
        return self.user_id is not None

    @property
    def auth_at(self) -> float | None:
        act = self._actions
        if act is not None and (act.login_user is not None or act.reauthenticated):
            return self._now
        return None if self.record is None else self.record.auth_at

    @property
    def is_new(self) -> bool:
        """No session existed when this request arrived."""
        return self._is_new

    @property
    def created_at(self) -> float | None:
        return None if self.record is None else self.record.created_at

    @property
    def expires_at(self) -> float | None:
        return None if self.record is None else self.record.expires_at

    @property
    def step_up_required(self) -> bool:
        act = self._actions
        if act is not None and (act.reauthenticated or act.login_user is not None):
            return False
        return bool(self.record is not None and self.record.flags.get("step_up"))

    def data_changes(self) -> RecordUpdate:
        set_data = dict(self._set)
        for key, (before, working) in self._accessed.items():
            if key not in set_data and key not in self._deleted and dumps(working) != before:
                set_data[key] = working
        return RecordUpdate(set_data=set_data, del_data=tuple(sorted(self._deleted)))

    # -- actions ----------------------------------------------------------------------------
    def login(self, user_id: str) -> None:
        """Authenticate: the ID rotates (no fixation), the CSRF secret is renewed, auth time set."""
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id must be a non-empty string")
        self.actions.login_user = user_id
        self.actions.logout = False
        self._csrf_secret = tokens.new_csrf_secret()

    def logout(self) -> None:
        """End the session: deleted server-side, remembered as logged out, cookie expired."""
        self.actions.logout = True
        self.actions.login_user = None
        self._csrf_secret = tokens.new_csrf_secret()

    def rotate(self) -> None:
        """Issue a new ID now (privilege change, sensitive operation); the old one dies at once."""
        self.actions.rotate = True

    def reauthenticated(self) -> None:
        """The user proved who they are again (step-up): rotate and refresh the auth time."""
        self.actions.reauthenticated = True
        self.actions.rotate = True

    def credentials_changed(self, *, end_other_sessions: bool | None = None) -> None:
        """After a password or second-factor change: rotate, and (by default, per policy) end
        every other session of this user."""
        self.actions.rotate = True
        self.actions.credentials_changed = True
        self.actions.end_others = end_other_sessions

    def revoke_other_sessions(self) -> None:
        """ "Log out other devices": every session of this user but this one ends."""
        self.actions.end_others = True
        self.actions.revoke_others = True

    def require_recent_auth(self, max_age: float) -> None:
        """Guard a sensitive operation: raise :class:`ReauthenticationRequired` unless the user
        authenticated within ``max_age`` seconds and no risk rule demanded a step-up."""
        if self.user_id is None:
            raise ReauthenticationRequired("not-authenticated")
        if self.step_up_required:
            raise ReauthenticationRequired("step-up-required")
        auth_at = self.auth_at
        if auth_at is None or self._now - auth_at > max_age:
            raise ReauthenticationRequired("authentication-too-old")

    def csrf_secret(self) -> str:
        """The per-session CSRF secret (creating one marks the session as needing storage)."""
        if self._csrf_secret is None:
            if self.record is not None and self.record.csrf_secret:
                self._csrf_secret = self.record.csrf_secret
            else:
                self._csrf_secret = tokens.new_csrf_secret()
                self.actions.token_issued = True
        return self._csrf_secret

    def csrf_token(self) -> str:
        """A freshly masked CSRF token for a form or a header (differs on every call)."""
        return tokens.mask_token(self.csrf_secret())

    def set_fingerprint(self, fp: dict[str, JSON]) -> None:
        self._new_fingerprint = fp


@dataclass(slots=True)
class _Actions:
    login_user: str | None = None
    logout: bool = False
    rotate: bool = False
    reauthenticated: bool = False
    credentials_changed: bool = False
    end_others: bool | None = None
    revoke_others: bool = False
    token_issued: bool = False
    # set by the core:
    net_changed_at: float | None = None

    def pending(self) -> bool:
        """Whether any action asks the commit to do something."""
        return (
            self.login_user is not None
            or self.logout
            or self.rotate
            or self.reauthenticated
            or self.credentials_changed
            or self.end_others is not None
            or self.revoke_others
            or self.token_issued
            or self.net_changed_at is not None
        )


@dataclass(slots=True)
class Outcome:
    """What the adapter must do to the response after a commit."""

    set_cookie: str | None = None
    authenticated: bool = False
    logged_out: bool = False


@dataclass(slots=True)
class Loaded:
    session: Session
    clear_cookie: bool = False
    throttled: bool = False


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
        }


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


class Engine:
    """The session rules for one :class:`~sessionwarden.policy.Policy`, independent of any
    framework and of any store driver."""

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
        self.clock: Clock = clock or SystemClock()
        self.sink: EventSink = sink or NullSink()
        self.keyring = tokens.Keyring(policy.secret_keys)
        self.cookies = CookieWriter(policy.cookie)
        self.assessor = assessor
        self.fingerprinter = fingerprinter
        #: How a user agent is written into the activity trail (short: the trail is per session).
        self.agent_label: Callable[[str], str] = agent_label or _short_agent
        self.throttle = throttle
        self._touch_interval = policy.effective_touch_interval
        self._tomb_ttl = policy.effective_tombstone_ttl

    # -- helpers ----------------------------------------------------------------------------
    def _emit(
        self,
        kind: EventKind,
        facts: RequestFacts | None,
        now: float,
        *,
        key: str = "",
        user_id: str | None = None,
        reason: str = "",
        detail: dict[str, JSON] | None = None,
    ) -> Event:
        event = Event(
            kind=kind,
            at=now,
            ref=tokens.ref_of(key) if key else "",
            user_id=user_id,
            client_ip=facts.client_ip if facts else "",
            user_agent=(facts.user_agent[:256] if facts else ""),
            path=(facts.path[:512] if facts else ""),
            reason=reason,
            detail=detail or {},
        )
        self.sink.emit(event)
        return event

    def expires_at(self, created_at: float, last_seen: float) -> float:
        return min(last_seen + self.policy.idle_timeout, created_at + self.policy.absolute_timeout)

    def _tombstone(self, key: str, reason: str, now: float, user_id: str | None) -> Tombstone:
        return Tombstone(
            key=key, reason=reason, at=now, until=now + self._tomb_ttl, user_id=user_id
        )

    def _expiry_reason(self, record: SessionRecord, now: float) -> EventKind | None:
        if now >= record.created_at + self.policy.absolute_timeout:
            return EventKind.EXPIRED_ABSOLUTE
        if now >= record.last_seen + self.policy.idle_timeout or now >= record.expires_at:
            return EventKind.EXPIRED_IDLE
        return None

    # -- load -------------------------------------------------------------------------------
    def load(self, facts: RequestFacts) -> Steps[Loaded]:
        """Find the session a request presents; anything doubtful yields an anonymous one."""
        now = self.clock.now()
        presented = self._presented(facts, now)
        if isinstance(presented, Loaded):
            return presented
        raw, key = presented
        found = yield Op("get", (key,), {})
        loaded = self._found(raw, key, found, facts, now)
        if isinstance(loaded, Loaded):
            return loaded
        return (yield from loaded)

    def load_inline(
        self, facts: RequestFacts, read: Callable[[str], Lookup], now: float | None = None
    ) -> Loaded | Steps[Loaded]:
        """:meth:`load` for a store whose reads are plain calls (memory, SQLite): ``read`` does
        the first one. The common request (no cookie, or a live session the risk check lets
        through) is decided here; any other gets the rest of :meth:`load` as steps to run.
        ``now``: the request's time when the caller already read the clock."""
        if now is None:
            now = self.clock.now()
        presented = self._presented(facts, now)
        if isinstance(presented, Loaded):
            return presented
        raw, key = presented
        return self._found(raw, key, read(key), facts, now)

    def _presented(self, facts: RequestFacts, now: float) -> Loaded | tuple[str, str]:
        """The session ID the request's cookie presents and its store key, or the anonymous
        result when it presents none that could exist (no cookie, several, a malformed one)."""
        values = cookie_values(facts.cookie_header, self.policy.cookie.name)
        if not values:
            return Loaded(Session(None, now))
        if len(values) > 1:
            self._emit(EventKind.COOKIE_TOSSING, facts, now, detail={"count": len(values)})
            return Loaded(Session(None, now), clear_cookie=True)
        raw = values[0]
        if not tokens.is_well_formed_id(raw):
            self._emit(EventKind.MALFORMED_COOKIE, facts, now)
            return Loaded(Session(None, now), clear_cookie=True)
        return raw, self.keyring.hash_id(raw)

    def _found(
        self, raw: str, key: str, found: Lookup, facts: RequestFacts, now: float
    ) -> Loaded | Steps[Loaded]:
        """What the store had at ``key``: a live record is admitted at once, anything else
        needs the steps of :meth:`_resolve`."""
        if isinstance(found, SessionRecord):
            return self._admit(found, False, facts, now)
        return self._resolve(raw, key, found, facts, now)

    def _resolve(
        self, raw: str, key: str, found: Lookup, facts: RequestFacts, now: float
    ) -> Steps[Loaded]:
        """Nothing under the current secret (try the older ones), a tombstone, or an alias."""
        if found is None:
            for legacy in self.keyring.legacy_hashes(raw):
                found = yield Op("get", (legacy,), {})
                if found is not None:
                    key = legacy
                    break
        if found is None:
            self._emit(EventKind.UNKNOWN_ID, facts, now, key=key, reason="unknown-or-expired")
            throttled = self.throttle is not None and self.throttle(facts.client_ip, now)
            if throttled:
                self._emit(EventKind.THROTTLED, facts, now, reason="unknown-session-ids")
            return Loaded(Session(None, now), clear_cookie=True, throttled=throttled)
        if isinstance(found, Tombstone):
            kind = (
                EventKind.REPLAY_ROTATED
                if found.reason.startswith("rotated")
                else EventKind.REPLAY_REVOKED
            )
            self._emit(kind, facts, now, key=key, user_id=found.user_id, reason=found.reason)
            return Loaded(Session(None, now), clear_cookie=True)
        via_alias = False
        if isinstance(found, Alias):
            if now >= found.grace_until:
                yield from self._replayed_rotated_id(found, facts, now)
                return Loaded(Session(None, now), clear_cookie=True)
            key, via_alias = found.target, True
            found = yield Op("get", (key,), {})
            if not isinstance(found, SessionRecord):
                return Loaded(Session(None, now), clear_cookie=True)
        assert isinstance(found, SessionRecord)
        admitted = self._admit(found, via_alias, facts, now)
        if isinstance(admitted, Loaded):
            return admitted
        return (yield from admitted)

    def _admit(
        self, record: SessionRecord, via_alias: bool, facts: RequestFacts, now: float
    ) -> Loaded | Steps[Loaded]:
        """A live record: expired, risky (steps follow), or the request's session."""
        expired = self._expiry_reason(record, now)
        if expired is not None:
            return self._expire(record, expired, facts, now)
        session = Session(record, now, via_alias=via_alias)
        if self.assessor is None or record.user_id is None:
            return Loaded(session)
        decision = self.assessor(record, facts, now)
        if decision.action != "allow":
            return self._risky(session, decision, facts, now)
        self._refresh_fingerprint(session, decision, facts, now)
        return Loaded(session)

    def _expire(
        self, record: SessionRecord, reason: EventKind, facts: RequestFacts, now: float
    ) -> Steps[Loaded]:
        yield Op("delete", (record.key,), {})
        self._emit(reason, facts, now, key=record.key, user_id=record.user_id)
        return Loaded(Session(None, now), clear_cookie=True)

    def _risky(
        self, session: Session, decision: RiskDecision, facts: RequestFacts, now: float
    ) -> Steps[Loaded]:
        revoked = yield from self._respond_to_risk(
            session, decision.action, decision.reason, decision.detail, facts, now
        )
        if revoked:
            return Loaded(Session(None, now), clear_cookie=True)
        self._refresh_fingerprint(session, decision, facts, now)
        return Loaded(session)

    def _refresh_fingerprint(
        self, session: Session, decision: RiskDecision, facts: RequestFacts, now: float
    ) -> None:
        if decision.refresh_fingerprint and self.fingerprinter is not None:
            session.set_fingerprint(self.fingerprinter(facts))
            session.actions.net_changed_at = now

    def _replayed_rotated_id(self, alias: Alias, facts: RequestFacts, now: float) -> Steps[None]:
        """A rotated-out ID came back after its grace window: a strong sign that a copy of the
        old cookie is being used elsewhere. The session it became is treated as high risk."""
        self._emit(
            EventKind.REPLAY_ROTATED,
            facts,
            now,
            key=alias.key,
            user_id=alias.user_id,
            reason="rotated-out-id-after-grace",
        )
        action = self.policy.monitor.on_high
        if action not in ("revoke", "step_up"):
            return
        target = yield Op("get", (alias.target,), {})
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
        """Apply the policy's action to a risky session. Returns whether it was revoked."""
        record = session.record
        assert record is not None
        self._emit(
            EventKind.ANOMALY,
            facts,
            now,
            key=record.key,
            user_id=record.user_id,
            reason=reason,
            detail={**detail, "action": action},
        )
        if action == "revoke":
            yield Op(
                "revoke",
                (record.key, self._tombstone(record.key, "anomaly", now, record.user_id)),
                {},
            )
            self._emit(
                EventKind.REVOKED,
                facts,
                now,
                key=record.key,
                user_id=record.user_id,
                reason="policy:" + reason,
            )
            if self.policy.monitor.revoke_all_on_high and record.user_id is not None:
                yield from self._revoke_user(record.user_id, "policy:" + reason, facts, now, None)
            return True
        if action == "step_up":
            yield Op(
                "update",
                (record.key, RecordUpdate(meta={"flags": {**record.flags, "step_up": True}})),
                {},
            )
            marked = record.copy()  # records may be shared (read caches): never change one
            marked.flags["step_up"] = True
            session.record = marked
            self._emit(
                EventKind.STEP_UP_REQUIRED,
                facts,
                now,
                key=record.key,
                user_id=record.user_id,
                reason=reason,
            )
        return False

    def _revoke_user(
        self, user_id: str, reason: str, facts: RequestFacts | None, now: float, keep: str | None
    ) -> Steps[list[str]]:
        keys: list[str] = yield Op(
            "revoke_user",
            (user_id,),
            {"reason": reason, "at": now, "until": now + self._tomb_ttl, "keep": keep},
        )
        for k in keys:
            self._emit(EventKind.REVOKED, facts, now, key=k, user_id=user_id, reason=reason)
        return keys

    # -- commit -----------------------------------------------------------------------------
    def settled(self, session: Session) -> Outcome | None:
        """The outcome of a commit that would do nothing (no change, no touch or rotation due),
        without running it; ``None`` when :meth:`commit` must run. Most requests end here."""
        if session._set or session._deleted or session._accessed:
            return None
        act = session._actions
        if session._new_fingerprint is not None or (act is not None and act.pending()):
            return None
        record = session.record
        if record is None:
            return Outcome()
        if not session.via_alias:
            now = self.clock.now()
            if now - record.last_seen >= self._touch_interval:
                return None
            if self.policy.rotate_every > 0 and now - record.rotated_at >= self.policy.rotate_every:
                return None
        return Outcome(None, record.user_id is not None)

    def commit(self, session: Session, facts: RequestFacts) -> Steps[Outcome]:
        """Write what the request changed and decide the cookie. Called when the response starts."""
        now = self.clock.now()
        act = session.actions
        record = session.record
        out = Outcome()

        if act.logout:
            if record is not None:
                yield Op(
                    "revoke",
                    (record.key, self._tombstone(record.key, "logout", now, record.user_id)),
                    {},
                )
                self._emit(EventKind.LOGGED_OUT, facts, now, key=record.key, user_id=record.user_id)
            out.set_cookie = self.cookies.clear()
            out.logged_out = True
            return out

        changes = session.data_changes()
        meta = changes.meta
        if session._new_fingerprint is not None:
            meta["fingerprint"] = session._new_fingerprint
        flags_changed = False
        flags = dict(record.flags) if record is not None else {}
        if act.reauthenticated and flags.pop("step_up", None) is not None:
            flags_changed = True
        if act.net_changed_at is not None:
            flags["net_at"] = act.net_changed_at
            flags_changed = True
        if act.login_user is not None:
            flags.pop("step_up", None)
            flags_changed = flags_changed or record is not None
        if flags_changed:
            meta["flags"] = flags

        periodic = (
            record is not None
            and not session.via_alias
            and self.policy.rotate_every > 0
            and now - record.rotated_at >= self.policy.rotate_every
        )
        explicit = act.login_user is not None or act.rotate
        if explicit or periodic:
            return (
                yield from self._rotate(
                    session, facts, now, changes, periodic_only=not explicit, out=out
                )
            )

        if record is None:
            if changes.is_empty() and not act.token_issued:
                return out  # nothing to keep: no record, no cookie
            return (yield from self._create(session, facts, now, changes, out))

        touch_due = now - record.last_seen >= self._touch_interval and not session.via_alias
        if touch_due:
            if now - record.last_seen >= self.policy.idle_timeout / 2:
                self._emit(
                    EventKind.TOUCHED_AFTER_IDLE_GAP,
                    facts,
                    now,
                    key=record.key,
                    user_id=record.user_id,
                    detail={"gap": round(now - record.last_seen, 3)},
                )
            meta["last_seen"] = now
            meta["expires_at"] = self.expires_at(record.created_at, now)
            changes.activity = self._activity(facts, now)
        if act.token_issued and not record.csrf_secret:
            meta["csrf_secret"] = session.csrf_secret()
        if act.credentials_changed or act.end_others or act.revoke_others:
            yield from self._end_others(session, facts, now, record.key, record.user_id)
        if not changes.is_empty():
            ok = yield Op(
                "update", (record.key, changes), {"activity_max": self.policy.monitor.activity_max}
            )
            if not ok:
                # A concurrent request may have rotated the ID: follow it within the grace.
                successor = yield from self._successor(record.key, now)
                if successor is not None:
                    ok = yield Op(
                        "update",
                        (successor, changes),
                        {"activity_max": self.policy.monitor.activity_max},
                    )
            if not ok:
                self._emit(
                    EventKind.WRITE_AFTER_REVOKE, facts, now, key=record.key, user_id=record.user_id
                )
                out.set_cookie = self.cookies.clear()
                return out
        out.authenticated = record.user_id is not None
        return out

    def _login_fingerprint(self, facts: RequestFacts) -> dict[str, JSON] | None:
        return self.fingerprinter(facts) if self.fingerprinter is not None else None

    def _activity(self, facts: RequestFacts, now: float) -> dict[str, JSON]:
        return {
            "at": now,
            "ip": facts.client_ip,
            "ua": self.agent_label(facts.user_agent),
            "path": facts.path[:256],
            "method": facts.method,
        }

    def _new_record_meta(
        self, session: Session, facts: RequestFacts, now: float, created_at: float
    ) -> dict[str, JSON]:
        act = session.actions
        meta: dict[str, JSON] = {
            "last_seen": now,
            "rotated_at": now,
            "expires_at": self.expires_at(created_at, now),
            "client_ip": facts.client_ip,
            "user_agent": self.agent_label(facts.user_agent),
        }
        if act.login_user is not None:
            meta["user_id"] = act.login_user
            meta["auth_at"] = now
            meta["csrf_secret"] = session.csrf_secret()
        elif act.reauthenticated:
            # The user proved who they are from this browser and network: it becomes the
            # session's reference fingerprint, as at login.
            meta["auth_at"] = now
            meta["fingerprint"] = self._login_fingerprint(facts)
        return meta

    def _create(
        self,
        session: Session,
        facts: RequestFacts,
        now: float,
        changes: RecordUpdate,
        out: Outcome,
    ) -> Steps[Outcome]:
        session_id = tokens.new_session_id()
        key = self.keyring.hash_id(session_id)
        act = session.actions
        record = SessionRecord(
            key=key,
            created_at=now,
            last_seen=now,
            expires_at=self.expires_at(now, now),
            rotated_at=now,
            csrf_secret=session.csrf_secret(),
            user_id=act.login_user,
            auth_at=now if act.login_user is not None else None,
            client_ip=facts.client_ip,
            user_agent=self.agent_label(facts.user_agent),
            fingerprint=self._login_fingerprint(facts) if act.login_user is not None else None,
            data={**changes.set_data},
        )
        evicted = yield Op(
            "insert",
            (record,),
            {
                "max_per_user": self.policy.max_sessions_per_user,
                "tombstone_until": now + self._tomb_ttl,
            },
        )
        self._emit(EventKind.CREATED, facts, now, key=key, user_id=record.user_id)
        if act.login_user is not None:
            self._emit(EventKind.LOGGED_IN, facts, now, key=key, user_id=act.login_user)
        self._report_evicted(evicted, facts, now, record.user_id)
        session.record = record
        out.set_cookie = self.cookies.issue(session_id, self.policy.absolute_timeout)
        out.authenticated = record.user_id is not None
        return out

    def _report_evicted(
        self, evicted: list[str] | None, facts: RequestFacts, now: float, user_id: str | None
    ) -> None:
        for k in evicted or ():
            self._emit(EventKind.EVICTED, facts, now, key=k, user_id=user_id, reason="session-cap")

    def _rotate(
        self,
        session: Session,
        facts: RequestFacts,
        now: float,
        changes: RecordUpdate,
        *,
        periodic_only: bool,
        out: Outcome,
    ) -> Steps[Outcome]:
        record = session.record
        act = session.actions
        if record is None:
            return (yield from self._create(session, facts, now, changes, out))
        session_id = tokens.new_session_id()
        new_key = self.keyring.hash_id(session_id)
        meta = changes.meta
        meta.update(self._new_record_meta(session, facts, now, record.created_at))
        if act.login_user is not None:
            meta["fingerprint"] = self._login_fingerprint(facts)
            meta["flags"] = {}
        moved_data = RecordUpdate(set_data=changes.set_data, del_data=changes.del_data)
        changes.activity = self._activity(facts, now)
        old_key = record.key
        evicted = yield from self._rotate_op(session, old_key, new_key, changes, now, periodic_only)
        if evicted is None:
            # Someone else moved or ended this session while the request was in flight.
            successor = yield from self._successor(old_key, now)
            if successor is not None and periodic_only:
                # A concurrent request rotated it first: that response carries the new ID.
                # Keep this request's writes on the successor and leave the cookie alone.
                ok = moved_data.is_empty() or (
                    yield Op(
                        "update",
                        (successor, moved_data),
                        {"activity_max": self.policy.monitor.activity_max},
                    )
                )
                if ok:
                    out.authenticated = record.user_id is not None
                    return out
            elif successor is not None:
                # An explicit rotation (login, privilege change) raced a periodic one: it
                # rotates the successor instead.
                old_key = successor
                evicted = yield from self._rotate_op(
                    session, old_key, new_key, changes, now, periodic_only
                )
        if evicted is None:
            # The session died while this request was in flight (logout, revocation). Never
            # revive it; a fresh login still gets a new session.
            self._emit(
                EventKind.WRITE_AFTER_REVOKE, facts, now, key=record.key, user_id=record.user_id
            )
            if act.login_user is not None:
                session.record = None
                fresh = RecordUpdate(set_data={**(record.data), **changes.set_data})
                for k in changes.del_data:
                    fresh.set_data.pop(k, None)
                return (yield from self._create(session, facts, now, fresh, out))
            out.set_cookie = self.cookies.clear()
            return out
        user_id = meta.get("user_id", record.user_id)
        self._emit(
            EventKind.ROTATED,
            facts,
            now,
            key=new_key,
            user_id=user_id if isinstance(user_id, str) else None,
            reason="periodic" if periodic_only else ("login" if act.login_user else "explicit"),
            detail={"previous": tokens.ref_of(record.key)},
        )
        if act.login_user is not None:
            self._emit(EventKind.LOGGED_IN, facts, now, key=new_key, user_id=act.login_user)
        self._report_evicted(evicted, facts, now, act.login_user or record.user_id)
        new_record = SessionRecord(
            key=new_key,
            created_at=record.created_at,
            last_seen=now,
            expires_at=self.expires_at(record.created_at, now),
            rotated_at=now,
            csrf_secret=record.csrf_secret,
            user_id=record.user_id,
            auth_at=record.auth_at,
            client_ip=facts.client_ip,
            user_agent=self.agent_label(facts.user_agent),
            fingerprint=record.fingerprint,
            flags=dict(record.flags),
            data=dict(record.data),
        )
        new_record.apply(changes)
        session.record = new_record
        if act.credentials_changed or act.end_others or act.revoke_others:
            yield from self._end_others(session, facts, now, new_key, new_record.user_id)
        out.set_cookie = self.cookies.issue(
            session_id, record.created_at + self.policy.absolute_timeout - now
        )
        out.authenticated = new_record.user_id is not None
        return out

    def _rotate_op(
        self,
        session: Session,
        old_key: str,
        new_key: str,
        changes: RecordUpdate,
        now: float,
        periodic_only: bool,
    ) -> Steps[list[str] | None]:
        """The store call of a rotation: a periodic one leaves an alias with a grace window,
        any other a tombstone."""
        act = session.actions
        user_id = session.record.user_id if session.record is not None else None
        old_becomes: Alias | Tombstone
        if periodic_only and self.policy.rotation_grace > 0:
            old_becomes = Alias(
                key=old_key,
                target=new_key,
                at=now,
                grace_until=now + self.policy.rotation_grace,
                until=now + self._tomb_ttl,
                user_id=user_id,
            )
        else:
            reason = "rotated:login" if act.login_user is not None else "rotated:privilege"
            old_becomes = self._tombstone(old_key, reason, now, user_id)
        evicted: list[str] | None = yield Op(
            "rotate",
            (old_key, new_key, changes),
            {
                "old_becomes": old_becomes,
                "max_per_user": self.policy.max_sessions_per_user,
                "tombstone_until": now + self._tomb_ttl,
                "activity_max": self.policy.monitor.activity_max,
            },
        )
        return evicted

    def _successor(self, key: str, now: float) -> Steps[str | None]:
        """Where a key went if a concurrent request rotated it within the grace window."""
        found = yield Op("get", (key,), {})
        if isinstance(found, Alias) and now < found.grace_until:
            return found.target
        return None

    def _end_others(
        self,
        session: Session,
        facts: RequestFacts,
        now: float,
        keep: str,
        user_id: str | None,
    ) -> Steps[None]:
        act = session.actions
        wanted = act.end_others
        if wanted is None:
            wanted = self.policy.monitor.end_other_sessions_on_credential_change
        if not wanted or user_id is None:
            return
        reason = "user:revoke-others" if act.revoke_others else "policy:credential-change"
        yield from self._revoke_user(user_id, reason, facts, now, keep)

    # -- operator and "your devices" calls ----------------------------------------------------
    def list_sessions(
        self, user_id: str, current: Session | None = None
    ) -> Steps[list[SessionInfo]]:
        """A user's live sessions, oldest first, with the current one marked."""
        now = self.clock.now()
        records: list[SessionRecord] = yield Op("user_sessions", (user_id,), {})
        current_key = current.record.key if current is not None and current.record else None
        return [
            SessionInfo(
                ref=tokens.ref_of(r.key),
                user_id=r.user_id,
                created_at=r.created_at,
                last_seen=r.last_seen,
                expires_at=r.expires_at,
                client_ip=r.client_ip,
                user_agent=r.user_agent,
                current=r.key == current_key,
            )
            for r in records
            if self._expiry_reason(r, now) is None
        ]

    def find_sessions(self, user_id: str, ref: str) -> Steps[list[SessionRecord]]:
        """The user's sessions whose reference starts with ``ref`` (at least 8 hex digits, so a
        short prefix can never name many sessions by accident)."""
        if len(ref) < 8:
            return []
        records: list[SessionRecord] = yield Op("user_sessions", (user_id,), {})
        return [r for r in records if r.key.startswith(ref)]

    def revoke_session(self, user_id: str, ref: str, *, by: str = "user") -> Steps[bool]:
        """Revoke one of a user's sessions by its reference (from :meth:`list_sessions`);
        nothing when the reference names no session or more than one."""
        now = self.clock.now()
        matches = yield from self.find_sessions(user_id, ref)
        if len(matches) != 1:
            return False
        record = matches[0]
        ok: bool = yield Op(
            "revoke", (record.key, self._tombstone(record.key, f"revoked:{by}", now, user_id)), {}
        )
        if ok:
            self._emit(
                EventKind.REVOKED, None, now, key=record.key, user_id=user_id, reason=f"{by}"
            )
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
        removed: int = yield Op("purge", (self.clock.now(),), {"batch": batch})
        return removed


def _short_agent(user_agent: str) -> str:
    return user_agent[:64]
