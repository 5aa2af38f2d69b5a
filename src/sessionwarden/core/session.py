"""A request's session: a mapping of JSON values plus the security actions the app asks for.

Nothing here touches the store or reads a clock. Changes are recorded and written by the commit
(:mod:`sessionwarden.core.commit`) when the response starts, and only the keys that changed are
written, so concurrent requests never erase each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from .. import tokens
from ..records import JSON, LINEAGE_FLAG, RecordUpdate, SessionRecord, clone_json, dumps
from .lifetime import DEFAULT_LIFETIMES, Lifetime, Lifetimes


class ReauthenticationRequired(Exception):
    """Raised by :meth:`Session.require_recent_auth`; adapters answer 401 or redirect to sign in."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AliasActionRefused(ReauthenticationRequired):
    """Raised when a request that arrived on a rotated-out ID (inside its grace window, see
    :attr:`Session.via_alias`) asks to rotate, log in, re-authenticate or change credentials:
    such a request may read, but whoever holds only the old ID must never get a fresh one.
    Adapters answer 409; the commit reports it (``session.alias_action_refused``)."""

    def __init__(self, action: str) -> None:
        super().__init__("rotated-id")
        self.action = action


class StepUpRequired(ReauthenticationRequired):
    """Raised by :meth:`Session.require_step_up`: this operation needs a further factor first.
    Adapters answer 403 ``{"error": "step-up-required", "reason": "operation"}`` (a browser is
    redirected to the re-authentication page when one is configured)."""

    def __init__(self, operation: str) -> None:
        super().__init__(STEP_UP_REASON)
        self.operation = operation


class HttpsRequired(Exception):
    """Raised by :meth:`Session.login` on a request served without a session layer: plain HTTP
    outside a secure context (a public host with ``HttpsPolicy.redirect`` off, or a proxy
    that is not in ``HttpsPolicy.trusted_proxies``). A session is never created over plain
    HTTP, so a sign-in there is refused rather than silently forgotten. Adapters answer 403
    ``{"error": "https-required", "reason": "plain-http"}`` with no cookie, to every client
    (never a redirect to the sign-in page).

    Not a :class:`ReauthenticationRequired`: signing in again cannot help, the request has to
    come over HTTPS, and an application that answers :class:`ReauthenticationRequired` by
    sending the user to its sign-in page would send them to a form that fails the same way.
    An ``except ReauthenticationRequired`` no longer catches it: it reaches the adapter (or the
    Flask and Starlette handlers sessionwarden installs), which answers the 403 above; an
    application that wants to answer it itself catches :class:`HttpsRequired`. ``reason`` is
    :data:`PLAIN_HTTP_REASON`, the JSON body's ``reason``."""

    def __init__(self) -> None:
        super().__init__(PLAIN_HTTP_REASON)
        self.reason = PLAIN_HTTP_REASON


#: The reason of :class:`StepUpRequired`.
STEP_UP_REASON = "operation-step-up"
#: The reason of :class:`HttpsRequired`.
PLAIN_HTTP_REASON = "plain-http"
#: The session key holding step-up grants: operation digest -> [user, expiry].
STEP_UP_KEY = "sessionwarden.step_up"
#: What :attr:`Actions.step_ups` records: a grant given, a grant used, an operation refused.
STEP_UP_GRANTED = "granted"
STEP_UP_USED = "used"
STEP_UP_REFUSED = "refused"
#: One of them: (outcome, operation digest, user, reason).
StepUpNote = tuple[str, str, str, str]
#: Grants one session keeps at most (the soonest to expire go first).
_MAX_GRANTS = 8


def _operation_digest(operation: str) -> str:
    return hashlib.sha256(operation.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class SessionValueError(ValueError):
    """A session value (or the session's data in all) is deeper or larger than the policy's
    ``max_value_depth`` / ``max_value_bytes`` / ``max_session_bytes`` allows."""


@dataclass(frozen=True, slots=True)
class ValueLimits:
    """How deep and how large session values may be (from the policy)."""

    depth: int = 32
    value_bytes: int = 65_536
    session_bytes: int = 262_144

    def check(self, changed: dict[str, JSON], data: dict[str, JSON]) -> None:
        """Raise :class:`SessionValueError` when a value of ``changed`` is too deep or too
        large, or ``data`` (the session's data with those values in it) is too large in all;
        :class:`TypeError` when something is not JSON.

        One JSON encoding, of ``data``, in the common case: a value's JSON is part of the
        data's, so the values are encoded on their own only when the data's JSON is larger
        than one value may be."""
        for key, value in changed.items():
            if isinstance(value, _MUTABLE):  # a scalar is one level deep
                self._check_depth(key, value)
        size = _json_size(data)
        if size > self.value_bytes:
            for key, value in changed.items():
                value_size = _json_size(value)
                if value_size > self.value_bytes:
                    raise SessionValueError(
                        f"session value {key!r} is {value_size} bytes of JSON"
                        f" (at most {self.value_bytes})"
                    )
        if size > self.session_bytes:
            raise SessionValueError(
                f"session data would be {size} bytes of JSON (at most {self.session_bytes})"
            )

    def _check_depth(self, key: str, value: JSON) -> None:
        """Iterative, so a hostile depth cannot recurse; checked before any encoding."""
        stack: list[tuple[JSON, int]] = [(value, 0)]
        while stack:
            item, depth = stack.pop()
            if isinstance(item, dict | list):
                depth += 1
                if depth > self.depth:
                    raise SessionValueError(
                        f"session value {key!r} is nested too deep (more than {self.depth} levels)"
                    )
                children = item.values() if isinstance(item, dict) else item
                stack.extend((v, depth) for v in children)


def _json_size(value: JSON) -> int:
    """Bytes of ``value``'s stored JSON; :class:`TypeError` when it is not JSON."""
    try:
        return len(dumps(value).encode("utf-8", "surrogatepass"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"session values must be JSON-serialisable: {exc}") from None


DEFAULT_LIMITS = ValueLimits()

_MUTABLE = (list, dict)


class Session:
    """One request's view of its session: a mapping of JSON values plus the security actions
    (nothing here touches the store: the commit writes the keys that changed)."""

    __slots__ = (
        "_accessed",
        "_actions",
        "_after_logout",
        "_csrf_secret",
        "_deleted",
        "_is_new",
        "_lifetimes",
        "_limits",
        "_new_fingerprint",
        "_now",
        "_set",
        "detached",
        "read",
        "record",
        "via_alias",
    )

    def __init__(
        self,
        record: SessionRecord | None,
        now: float,
        *,
        via_alias: bool = False,
        limits: ValueLimits = DEFAULT_LIMITS,
        detached: bool = False,
        lifetimes: Lifetimes = DEFAULT_LIFETIMES,
    ):
        self.record = record
        self._limits = limits
        self._lifetimes = lifetimes
        self._is_new = record is None
        self.via_alias = via_alias
        #: Served over plain HTTP outside a secure context: always anonymous, never stored,
        #: no cookie set or cleared (:func:`~sessionwarden.core.commit.plan_commit`), and
        #: :meth:`login` raises :class:`HttpsRequired`. The app may read and write it as usual;
        #: what it writes is dropped with the request.
        self.detached = detached
        self._now = now
        self._set: dict[str, JSON] = {}
        self._deleted: set[str] = set()
        #: Lists and dicts handed to the app: their JSON when read, and the app's copy.
        self._accessed: dict[str, tuple[str, JSON]] = {}
        self._csrf_secret: str | None = None
        self._new_fingerprint: dict[str, JSON] | None = None
        self._actions: Actions | None = None  # most requests ask nothing: made on demand
        #: The values set since :meth:`logout` (``None``: no logout asked).
        self._after_logout: dict[str, JSON] | None = None
        #: The app read the session's data or user: the response varies on ``Cookie``.
        self.read = False

    # -- mapping -----------------------------------------------------------------------------
    def _lookup(self, key: str) -> tuple[bool, JSON]:
        self.read = True
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
        data = self._view()
        data[key] = value
        self._limits.check({key: value}, data)
        self._set[key] = value
        self._deleted.discard(key)
        if self._after_logout is not None:
            self._after_logout[key] = value

    def _view(self) -> dict[str, JSON]:
        """The data as the request sees it now (the app's copies of lists and dicts included)."""
        record, deleted = self.record, self._deleted
        data: dict[str, JSON] = {} if record is None else dict(record.data)
        for key in deleted:
            data.pop(key, None)
        for key, (_, working) in self._accessed.items():
            data[key] = working
        data.update(self._set)
        return data

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.pop(key)

    def pop(self, key: str, default: JSON = None) -> JSON:
        found, value = self._lookup(key)
        self._set.pop(key, None)
        self._accessed.pop(key, None)
        if self._after_logout is not None:
            self._after_logout.pop(key, None)
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
        self.read = True
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
    def actions(self) -> Actions:
        """What the request asked of the session (login, rotation, ...)."""
        act = self._actions
        if act is None:
            act = self._actions = Actions()
        return act

    @property
    def ref(self) -> str:
        """Short reference for logs and the "your devices" page (never the ID)."""
        return "" if self.record is None else tokens.ref_of(self.record.key)

    @property
    def user_id(self) -> str | None:
        self.read = True
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
    def remembered(self) -> bool:
        """Whether the session lives by the remember lifetime: its user asked to be remembered
        at sign-in (in this request or the one that signed it in)."""
        return self.lifetime.remembered

    @property
    def lifetime(self) -> Lifetime:
        """The timeouts this session lives by (``lifetime.idle``: what an idle-timeout warning
        counts down), as of this request's sign-in or sign-out."""
        act, record = self._actions, self.record
        if act is not None and (act.login_user is not None or act.logout):
            return self._lifetimes.pick(act.remember)
        return self._lifetimes.of_flags(record.flags if record is not None else {})

    @property
    def step_up_required(self) -> bool:
        act = self._actions
        if act is not None and (act.reauthenticated or act.login_user is not None):
            return False
        return bool(self.record is not None and self.record.flags.get("step_up"))

    def data_changes(self) -> RecordUpdate:
        """What the request changed; a list or dict changed in place (read and changed, or set
        and then changed: ``setdefault("cart", []).append(item)``) past the policy's limits
        raises :class:`SessionValueError` here, and one no longer JSON :class:`TypeError`."""
        set_data = dict(self._set)
        changed_in_place = {
            key: working
            for key, (before, working) in self._accessed.items()
            if key not in set_data and key not in self._deleted and dumps(working) != before
        }
        for key, value in set_data.items():
            if isinstance(value, _MUTABLE):
                changed_in_place[key] = value
        if changed_in_place:
            self._limits.check(changed_in_place, self._view())
            set_data.update(changed_in_place)
        deleted = tuple(sorted(self._deleted)) if self._deleted else ()
        return RecordUpdate(set_data=set_data, del_data=deleted)

    # -- actions ----------------------------------------------------------------------------
    def login(self, user_id: str, *, remember: bool = False) -> None:
        """Authenticate: the ID rotates (no fixation), the CSRF secret is renewed, auth time set;
        an anonymous session's data (a cart) and the same user's own stay. ``remember``: the
        session lives by ``Policy.remember`` (``ValueError`` when it has none) with a
        persistent cookie. On a session signed in as another user (a shared computer), or
        after :meth:`logout` (switching users), that session ends as a logout ends it and the
        sign-in is a new session holding the values set since alone: nothing of the ended
        session (its data, step-up grants, lineage, device binding) goes over."""
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id must be a non-empty string")
        if not isinstance(remember, bool):
            raise TypeError("remember must be True or False (a checkbox: 'remember' in form)")
        if remember and self._lifetimes.remember is None:
            raise ValueError("remember=True needs Policy(remember=RememberPolicy(...))")
        if self.detached:
            raise HttpsRequired()
        self._refuse_on_alias("login")
        if self.user_id not in (None, user_id):
            self.logout()  # another user signing in on this browser: the first one's ends
        act = self.actions
        act.login_user = user_id
        act.remember = remember
        self._csrf_secret = tokens.new_csrf_secret()

    def logout(self) -> None:
        """End the session: deleted server-side, remembered as logged out, cookie expired.

        From here on the session reads as empty (as a flushed session does): nothing of the
        ended session's data is read again in this request, so none of it (an unread message,
        the signed-out user's values) can be copied into what follows. A value set after this
        call ("You have been signed out" for the next page) starts a new anonymous session
        holding those values alone: a new ID, no user, nothing else of the ended session
        (:attr:`values_after_logout`), and the CSRF secret renewed here. Deleting values, or
        setting none, starts nothing."""
        self.clear()
        act = self.actions
        act.logout = True
        act.login_user = None
        act.remember = False
        act.dbsc = None  # a device binding belongs to the session that ends
        self._after_logout = {}
        self._csrf_secret = tokens.new_csrf_secret()

    @property
    def values_after_logout(self) -> dict[str, JSON]:
        """The values set (and not removed again) since :meth:`logout`: what the new anonymous
        session starts with. Empty when no logout was asked or nothing was set after it; never
        a step-up grant (those belong to the signed-in user)."""
        if not self._after_logout:
            return {}
        return {k: v for k, v in self._after_logout.items() if k != STEP_UP_KEY}

    def rotate(self) -> None:
        """Issue a new ID now (privilege change, sensitive operation); the old one dies at once."""
        self._refuse_on_alias("rotate")
        self.actions.rotate = True

    def reauthenticated(self) -> None:
        """The user proved who they are again (step-up): rotate and refresh the auth time."""
        self._refuse_on_alias("reauthenticated")
        self.actions.reauthenticated = True
        self.actions.rotate = True

    def credentials_changed(self, *, end_other_sessions: bool | None = None) -> None:
        """After a password or second-factor change: rotate, and (by default, per policy) end
        every other session of this user. The commit reports ``account.credentials_changed``
        (the application's hook can tell the user)."""
        self._refuse_on_alias("credentials_changed")
        self.actions.rotate = True
        self.actions.credentials_changed = True
        self.actions.end_others = end_other_sessions

    def _refuse_on_alias(self, action: str) -> None:
        """A request on a rotated-out ID may read but not mint a new ID (it may be a thief's
        copy): raise :class:`AliasActionRefused`, remembered for the commit to report."""
        if self.via_alias:
            self.actions.alias_refused = action
            raise AliasActionRefused(action)

    def revoke_other_sessions(self) -> None:
        """ "Log out other devices": every session of this user but this one ends, and this one
        gets a new ID in the same response (the old one dies at once, no grace window), so a
        stolen copy of the current cookie ends too.

        A request on a rotated-out ID (inside its grace window, :attr:`via_alias`) may not mint
        a new ID, and cannot tell whether the current one went to this browser or to a thief:
        it signs out everywhere instead, this session included."""
        self.actions.end_others = True
        self.actions.revoke_others = True
        if self.via_alias:
            self.logout()
        else:
            self.actions.rotate = True

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

    def grant_step_up(self, operation: str, ttl: float = 300.0) -> None:
        """The user just proved a further factor for ``operation``: one later request of this
        session and this user may perform exactly that operation (:meth:`require_step_up`)
        within ``ttl`` seconds. Name the operation with what makes it sensitive, e.g.
        ``f"transfer:{to}:{amount}"``: a grant for one recipient or amount is worth nothing
        for another. Kept in the session (server-side) under :data:`STEP_UP_KEY`.

        Proving a factor is an authentication, so the ID rotates too (the old one dies at
        once, as with :meth:`reauthenticated`): a copy of the cookie taken before the step-up
        never holds the grant."""
        if not isinstance(operation, str) or not operation:
            raise ValueError("operation must be a non-empty string")
        user = self.user_id
        if user is None:
            raise ReauthenticationRequired("not-authenticated")
        self._refuse_on_alias("grant_step_up")
        self.actions.rotate = True
        grants = self._step_up_grants()
        digest = _operation_digest(operation)
        grants[digest] = (user, self._now + ttl)
        if len(grants) > _MAX_GRANTS:  # the soonest to expire go
            kept = sorted(grants, key=lambda d: grants[d][1])[-_MAX_GRANTS:]
            grants = {d: grants[d] for d in kept}
        self[STEP_UP_KEY] = {d: [u, at] for d, (u, at) in grants.items()}
        self._step_up_audit(STEP_UP_GRANTED, digest, user, "")

    def require_step_up(self, operation: str) -> None:
        """Guard a highly sensitive operation: raise :class:`StepUpRequired` unless this
        session holds an unexpired grant (:meth:`grant_step_up`) for exactly ``operation``,
        given to the user signed in now. The grant is used up."""
        user = self.user_id
        if user is None:
            raise ReauthenticationRequired("not-authenticated")
        grants = self._step_up_grants()
        digest = _operation_digest(operation)
        grant = grants.pop(digest, None)
        if STEP_UP_KEY in self:  # the used grant and the expired ones go
            self[STEP_UP_KEY] = {d: [u, at] for d, (u, at) in grants.items()}
        if grant is None or grant[0] != user:
            self._step_up_audit(
                STEP_UP_REFUSED, digest, user, "no-grant" if grant is None else "other-user"
            )
            raise StepUpRequired(operation)
        self._step_up_audit(STEP_UP_USED, digest, user, "")

    def _step_up_audit(self, outcome: str, digest: str, user: str, reason: str) -> None:
        """Remember a grant, a use or a refusal for the commit to report (one event each)."""
        act = self.actions
        if act.step_ups is None:
            act.step_ups = []
        act.step_ups.append((outcome, digest, user, reason))

    def _step_up_grants(self) -> dict[str, tuple[str, float]]:
        """The unexpired grants of the session (junk in the key counts as none)."""
        found = self.get(STEP_UP_KEY)
        grants: dict[str, tuple[str, float]] = {}
        if isinstance(found, dict):
            for digest, grant in found.items():
                if isinstance(grant, list) and len(grant) == 2:
                    user, until = grant
                    live = isinstance(until, int | float) and until > self._now
                    if isinstance(user, str) and live:
                        grants[digest] = (user, float(until))  # type: ignore[arg-type]
        return grants

    def csrf_secret(self) -> str:
        """The per-session CSRF secret (creating one marks the session as needing storage)."""
        if self._csrf_secret is None:
            if self.record is not None and self.record.csrf_secret:
                self._csrf_secret = self.record.csrf_secret
            else:
                self._csrf_secret = tokens.new_csrf_secret()
                self.actions.token_issued = True
        return self._csrf_secret

    @property
    def csrf_used(self) -> bool:
        """Whether this request read the CSRF secret (a token was made for its response) or
        renewed it (sign-in, sign-out): the response holds something of this session's."""
        return self._csrf_secret is not None

    def csrf_token(self) -> str:
        """A freshly masked CSRF token for a form or a header (differs on every call)."""
        return tokens.mask_token(self.csrf_secret())

    def bind_device(self, state: dict[str, JSON] | None) -> None:
        """Store the session's DBSC binding (``None``: drop it) for the commit to write."""
        self.actions.dbsc = (state,)

    def network_changed(self, fp: dict[str, JSON], now: float) -> None:
        """The risk check tolerated a new network: keep its fingerprint and remember when."""
        self._new_fingerprint = fp
        self.actions.net_changed_at = now

    # -- for the commit ---------------------------------------------------------------------
    @property
    def pending_actions(self) -> Actions | None:
        """What the request asked of the session, or ``None`` when it asked nothing."""
        return self._actions

    def has_changes(self) -> bool:
        """Whether the commit has anything to write besides a touch or a rotation."""
        if self._set or self._deleted or self._new_fingerprint is not None:
            return True
        act = self._actions
        if act is not None and act.pending():
            return True
        return any(
            key not in self._deleted and dumps(working) != before
            for key, (before, working) in self._accessed.items()
        )

    def changes(self) -> RecordUpdate:
        """The data, fingerprint and flags the commit writes."""
        update = self.data_changes()
        if self._new_fingerprint is not None:
            update.meta["fingerprint"] = self._new_fingerprint
        flags = self._merged_flags()
        if flags is not None:
            update.meta["flags"] = flags
        act = self._actions
        if act is not None and act.dbsc is not None:
            update.meta["dbsc"] = act.dbsc[0]
        return update

    def _merged_flags(self) -> dict[str, JSON] | None:
        """The record's flags as the actions change them (``None``: unchanged); a record without
        a stored lineage (older than lineages) gets the one it stands for, kept by the write."""
        act = self._actions
        if act is not None and act.login_user is not None:
            # A sign-in starts from fresh flags, its lineage kept: the commit's rotation sets
            # them (``Committing._rotated_meta``), so there is nothing to merge.
            return None
        record = self.record
        flags = dict(record.flags) if record is not None else {}
        changed = False
        if record is not None and LINEAGE_FLAG not in flags:
            flags[LINEAGE_FLAG] = record.lineage
            changed = True
        if act is None:
            return flags if changed else None
        if act.reauthenticated and flags.pop("step_up", None) is not None:
            changed = True
        if act.net_changed_at is not None:
            flags["net_at"] = act.net_changed_at
            changed = True
        return flags if changed else None


@dataclass(slots=True)
class Actions:
    """What a request asked of its session, read by the commit."""

    login_user: str | None = None
    #: The sign-in asked to be remembered (:meth:`Session.login`).
    remember: bool = False
    logout: bool = False
    rotate: bool = False
    reauthenticated: bool = False
    credentials_changed: bool = False
    end_others: bool | None = None
    revoke_others: bool = False
    token_issued: bool = False
    #: Set by the risk check (:meth:`Session.network_changed`).
    net_changed_at: float | None = None
    #: An action refused because the request arrived on a rotated-out ID (reported only).
    alias_refused: str | None = None
    #: A new DBSC binding to write (a 1-tuple: its value may be ``None``, dropping it).
    dbsc: tuple[dict[str, JSON] | None] | None = None
    #: Step-up grants given, used and refused, in order (:data:`StepUpNote`), for the commit.
    step_ups: list[StepUpNote] | None = None

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
            or self.dbsc is not None
        )
