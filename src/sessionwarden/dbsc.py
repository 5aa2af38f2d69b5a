"""Device Bound Session Credentials (DBSC): the server side, as pure decisions.

A supporting browser keeps a private key on the device (a TPM where there is one). After login
the server offers registration; the browser proves possession of a fresh key, and the server
keeps the public key with the session record and sets a short-lived *bound cookie* next to the
long-lived session cookie. When the bound cookie runs out, the browser holds back the request,
signs a server challenge at the refresh endpoint and receives a new bound cookie. A thief who
copied the cookies off the device holds a bound cookie that expires within minutes and cannot
get another one without the key.

Everything here is a function of its arguments: time (``now``), the keyed hash (``hash_value``,
normally ``Keyring.hash_value``) and the request headers are passed in, and every answer is a
value (:class:`DbscResult`, :class:`Offer`, :class:`CookieCheck`) that an adapter turns into a
response and a record update. Nothing is read or written here, and :mod:`cryptography` is only
imported when a proof is checked (the ``dbsc`` extra).

What lives in the session record (its own ``dbsc`` field, see
:func:`~sessionwarden.dbsc_state.state_in`) is :class:`DbscState`: the public key, the outstanding
challenges (as keyed hashes), the keyed hash and expiry of the current and previous bound cookie,
and the refresh rate-limit window. It is plain JSON, so it replicates through every store and
moves with the session when its ID rotates. :mod:`sessionwarden.dbsc_guard` is where the request
pipeline calls these decisions.
"""

from __future__ import annotations

import enum
import ipaddress
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .dbsc_state import CORRUPT, FLAG, DbscState, flags_with, state_of
from .dbsc_wire import (
    Skipped,
    challenge_header,
    parse_skipped,
    parse_string_item,
    registration_header,
)
from .events import EventKind
from .records import JSON, dumps

__all__ = [
    "CORRUPT",
    "FLAG",
    "CookieCheck",
    "DbscNote",
    "DbscPolicy",
    "DbscRequest",
    "DbscResult",
    "DbscState",
    "Enforcement",
    "Offer",
    "Skipped",
    "bound_cookie_header",
    "check_bound_cookie",
    "clear_bound_cookie_header",
    "enforce",
    "flags_with",
    "in_scope",
    "may_offer",
    "parse_skipped",
    "refresh",
    "registration",
    "registration_offer",
    "session_instructions",
    "skipped_notes",
    "state_of",
    "termination",
]

OnMissing = Literal["anonymous", "revoke"]
SameSite = Literal["Strict", "Lax", "None"]
#: ``hash_value(purpose, value) -> hex``: the keyed hash (``Keyring.hash_value``).
Hasher = Callable[[str, str], str]

_ALGORITHMS = ("ES256", "RS256")
_MAX_CHALLENGES = 4  # outstanding per session: the newest and a few before it (races)
_CHALLENGE_BYTES = 32
_COOKIE_BYTES = 32
_ID_BYTES = 18
_PATH_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/!$&'()*+,:=@%"
)
#: Headers on every answer of the two endpoints: never cached, never framed, never read
#: cross-origin (no ``Access-Control-Allow-*`` is ever sent).
_ENDPOINT_HEADERS: tuple[tuple[str, str], ...] = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
)


def _fail(name: str, why: str) -> None:
    raise ValueError(f"dbsc.{name}: {why}")


@dataclass(frozen=True, slots=True)
class DbscPolicy:
    """DBSC settings. Off by default: it needs HTTPS (or loopback) and the ``dbsc`` extra."""

    enabled: bool = False
    #: Where the browser registers and refreshes; both are out of the bound cookie's scope.
    register_path: str = "/_sessionwarden/dbsc/register"
    refresh_path: str = "/_sessionwarden/dbsc/refresh"
    #: Algorithms offered and accepted; only ``ES256`` and ``RS256`` exist here (never ``none``).
    algorithms: tuple[str, ...] = _ALGORITHMS
    #: The short-lived bound cookie. ``__Host-``: this host only, ``Path=/``, ``Secure``.
    cookie_name: str = "__Host-dbsc"
    #: Its lifetime: how long a copied bound cookie stays useful, and the refresh cadence.
    cookie_max_age: int = 600
    same_site: SameSite = "Lax"
    #: How long a challenge may be answered. Longer than ``cookie_max_age`` so the challenge
    #: handed out with one bound cookie still works at the next refresh (no extra round trip).
    challenge_ttl: float = 900.0
    #: A bound session's request without a valid bound cookie: served as anonymous, or the
    #: session is revoked outright.
    on_missing: OnMissing = "anonymous"
    #: Path prefixes where the bound cookie is not required (and the browser does not refresh).
    #: Chromium fetches the favicon without holding it back for a refresh, so it is excluded.
    exclude_paths: tuple[str, ...] = ("/favicon.ico",)
    #: At most ``refresh_limit`` refresh requests per session per ``refresh_window`` seconds;
    #: more are answered 429 (the browser keeps the session and tries again later).
    refresh_limit: int = 10
    refresh_window: float = 60.0
    #: Push a challenge with the registration response (the spec allows it; some Chrome builds
    #: reported an error, so by default the first refresh fetches one with a 403).
    challenge_on_registration: bool = False

    def __post_init__(self) -> None:
        for name in ("register_path", "refresh_path"):
            _check_path(name, getattr(self, name))
        if self.register_path == self.refresh_path:
            _fail("refresh_path", "must differ from register_path")
        for prefix in self.exclude_paths:
            _check_path("exclude_paths", prefix)
        algs = self.algorithms
        if not algs or len(set(algs)) != len(algs) or not set(algs) <= set(_ALGORITHMS):
            _fail("algorithms", f"a non-empty subset of {_ALGORITHMS} without repeats")
        _check_cookie(self)
        if not 0 < self.challenge_ttl <= 86_400:
            _fail("challenge_ttl", "must be > 0 and at most 86400 seconds")
        if self.on_missing not in ("anonymous", "revoke"):
            _fail("on_missing", "must be 'anonymous' or 'revoke'")
        if self.refresh_limit < 1 or self.refresh_window <= 0:
            _fail("refresh_limit", "needs refresh_limit >= 1 and refresh_window > 0")


def _check_cookie(policy: DbscPolicy) -> None:
    name = policy.cookie_name
    if not name.startswith("__Host-") or not name[7:].isidentifier():
        _fail("cookie_name", "must be a __Host- cookie name (letters, digits, '_')")
    if isinstance(policy.cookie_max_age, bool) or not 30 <= policy.cookie_max_age <= 86_400:
        _fail("cookie_max_age", "must be between 30 and 86400 seconds")
    if policy.same_site not in ("Strict", "Lax", "None"):
        _fail("same_site", "must be 'Strict', 'Lax' or 'None'")


def _check_path(name: str, path: str) -> None:
    if not path.startswith("/") or not _PATH_CHARS.issuperset(path):
        _fail(name, f"{path!r} must start with '/' and hold URL path characters only")


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class DbscNote:
    """An event for the integration to emit (with the session's ref, user and request)."""

    kind: EventKind
    reason: str = ""
    detail: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DbscRequest:
    """The request headers DBSC reads, raw (parsed here, never trusted)."""

    proof: str | None = None  # Secure-Session-Response
    session_id: str | None = None  # Sec-Secure-Session-Id
    fetch_site: str | None = None  # Sec-Fetch-Site
    origin: str | None = None  # Origin

    @classmethod
    def from_headers(cls, get: Callable[[str], str | None]) -> DbscRequest:
        """From a case-insensitive header getter (``headers.get``)."""
        return cls(
            proof=get("secure-session-response"),
            session_id=get("sec-secure-session-id"),
            fetch_site=get("sec-fetch-site"),
            origin=get("origin"),
        )


@dataclass(frozen=True, slots=True)
class DbscResult:
    """The answer of the registration or refresh endpoint, and what to store.

    ``state`` is what the session record keeps afterwards (``None``: drop the binding);
    ``changed`` says whether it differs from what was passed in (a write is needed).
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: dict[str, JSON] | None
    state: DbscState | None
    changed: bool
    notes: tuple[DbscNote, ...] = ()

    def body_bytes(self) -> bytes:
        return b"" if self.body is None else dumps(self.body).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Offer:
    """What to add to a response after login: the header, and the state to store."""

    header: tuple[str, str]
    state: DbscState


class CookieCheck(enum.StrEnum):
    UNBOUND = "unbound"  # the session has no binding: nothing to enforce
    OK = "ok"
    MISSING = "missing"
    EXPIRED = "expired"  # a value we issued, sent after its Max-Age
    WRONG = "wrong"  # a value we never issued for this session (or several values)


@dataclass(frozen=True, slots=True)
class Enforcement:
    """What a request of a bound session gets: served, served as anonymous, or revoked."""

    action: Literal["allow", "anonymous", "revoke"]
    note: DbscNote | None = None


# --------------------------------------------------------------------------- helpers


def may_offer(scheme: str, host: str) -> bool:
    """DBSC is offered over HTTPS, or over plain HTTP to a loopback host (development)."""
    if scheme == "https":
        return True
    if scheme != "http":
        return False
    if host.startswith("["):  # "[::1]:8000"
        name = host[1:].partition("]")[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _path_match(prefix: str, path: str) -> bool:
    # The spec's rule: equal, or the prefix ends in "/" and the path starts with it, or the path
    # continues the prefix with "/".
    if path == prefix:
        return True
    if prefix.endswith("/"):
        return path.startswith(prefix)
    return path.startswith(prefix + "/")


def in_scope(policy: DbscPolicy, path: str) -> bool:
    """Whether a request to ``path`` must carry the bound cookie (mirrors the instructions)."""
    if path in (policy.register_path, policy.refresh_path):
        return False
    return not any(_path_match(prefix, path) for prefix in policy.exclude_paths)


def credential_attributes(policy: DbscPolicy) -> str:
    """The bound cookie's attributes as the instructions name them (no Max-Age: browsers
    reject credentials that carry one)."""
    return f"Path=/; Secure; HttpOnly; SameSite={policy.same_site}"


def bound_cookie_header(policy: DbscPolicy, value: str) -> tuple[str, str]:
    attrs = credential_attributes(policy)
    return ("Set-Cookie", f"{policy.cookie_name}={value}; Max-Age={policy.cookie_max_age}; {attrs}")


def clear_bound_cookie_header(policy: DbscPolicy) -> tuple[str, str]:
    attrs = credential_attributes(policy)
    return ("Set-Cookie", f"{policy.cookie_name}=; Max-Age=0; {attrs}")


def session_instructions(
    policy: DbscPolicy, session_identifier: str, origin: str
) -> dict[str, JSON]:
    """The JSON session instructions of the registration and refresh responses."""
    rules: list[JSON] = [
        {"type": "exclude", "path": prefix}
        for prefix in (policy.register_path, *policy.exclude_paths)
    ]
    return {
        "session_identifier": session_identifier,
        "refresh_url": policy.refresh_path,
        "scope": {"origin": origin, "include_site": False, "scope_specification": rules},
        "credentials": [
            {
                "type": "cookie",
                "name": policy.cookie_name,
                "attributes": credential_attributes(policy),
            }
        ],
    }


def termination(policy: DbscPolicy, reason: str) -> DbscResult:
    """``{"continue": false}``: ends the browser's session (and drops the binding here)."""
    note = DbscNote(EventKind.DBSC_TERMINATED, reason)
    clear = clear_bound_cookie_header(policy)
    return _answer(200, None, None, extra=(clear,), body={"continue": False}, notes=(note,))


#: Challenges are hashed under the purpose they were issued for: one handed out by the refresh
#: endpoint (to anybody holding the long-lived cookie) can never answer a registration offer,
#: which only a fresh login produces. Otherwise a cookie thief could bind the session to a key
#: of his own.
_FOR_REGISTRATION = "dbsc-register"
_FOR_REFRESH = "dbsc-refresh"


def _new_challenge(
    state: DbscState, policy: DbscPolicy, now: float, hash_value: Hasher, purpose: str
) -> tuple[str, DbscState]:
    challenge = secrets.token_urlsafe(_CHALLENGE_BYTES)
    kept = [(d, until) for d, until in state.challenges if until > now]
    kept.append((hash_value(purpose, challenge), now + policy.challenge_ttl))
    return challenge, replace(state, challenges=tuple(kept[-_MAX_CHALLENGES:]))


def _take_challenge(
    state: DbscState, jti: str | None, now: float, hash_value: Hasher, purpose: str
) -> tuple[str, DbscState]:
    """Consume the challenge ``jti`` answers: ``("", state without it)`` or a refusal reason.

    Compared as keyed hashes in constant time; a challenge is accepted once and only before its
    deadline; one issued to another session is simply unknown here.
    """
    if jti is None or len(jti) > 256:
        return "no-challenge", state
    digest = hash_value(purpose, jti)
    for index, (stored, until) in enumerate(state.challenges):
        if secrets.compare_digest(stored, digest):
            rest = state.challenges[:index] + state.challenges[index + 1 :]
            if until <= now:
                return "expired-challenge", replace(state, challenges=rest)
            return "", replace(state, challenges=rest)
    return "unknown-challenge", state


def _same_origin_request(request: DbscRequest, origin: str) -> bool:
    """Registration and refresh are made by the browser itself, same-origin. A cross-site
    context (Fetch Metadata or ``Origin`` naming another site) is refused."""
    site = (request.fetch_site or "").strip().lower()
    if site and site != "same-origin":
        return False
    sent = (request.origin or "").strip()
    return not sent or sent.lower() == origin.lower()


def _load_proof(compact: str | None) -> Any:
    from . import dbsc_proof  # needs the ``dbsc`` extra; only loaded when a proof arrives

    return None if compact is None else dbsc_proof.parse_proof(compact)


def _check(proof: Any, allowed: tuple[str, ...], jwk: object) -> tuple[str, dict[str, str] | None]:
    from . import dbsc_proof

    return dbsc_proof.check_proof(proof, allowed, jwk)


def _answer(
    status: int,
    before: DbscState | None,
    after: DbscState | None,
    *,
    extra: Sequence[tuple[str, str]] = (),
    body: dict[str, JSON] | None = None,
    notes: Sequence[DbscNote] = (),
) -> DbscResult:
    headers = list(_ENDPOINT_HEADERS)
    if body is not None:
        headers.insert(0, ("Content-Type", "application/json"))
    headers.extend(extra)
    return DbscResult(status, tuple(headers), body, after, after != before, tuple(notes))


def _failed(reason: str, **detail: JSON) -> DbscNote:
    return DbscNote(EventKind.DBSC_PROOF_FAILED, reason, dict(detail))


# --------------------------------------------------------------------------- decisions


def registration_offer(
    policy: DbscPolicy, state: DbscState | None, now: float, hash_value: Hasher
) -> Offer:
    """After login (on an HTTPS or loopback response, see :func:`may_offer`): the
    ``Secure-Session-Registration`` header with a fresh single-use challenge, and the state
    that remembers the challenge. An existing binding is kept until a new one is proven."""
    challenge, after = _new_challenge(
        state or DbscState(), policy, now, hash_value, _FOR_REGISTRATION
    )
    value = registration_header(policy.algorithms, policy.register_path, challenge)
    return Offer(("Secure-Session-Registration", value), after)


def registration(
    policy: DbscPolicy,
    state: DbscState | None,
    request: DbscRequest,
    now: float,
    hash_value: Hasher,
    origin: str,
) -> DbscResult:
    """The registration endpoint (``POST policy.register_path``).

    ``state`` is the DBSC state of the app session the request's cookie names (``None``: no
    session, or one that was never offered registration); ``origin`` is this application's
    origin as the browser sees it. Success: 200 with the instructions, the bound cookie and the
    public key taken from the proof's ``jwk`` header. Any failure: 403 (the browser gives up;
    registration is not retried) and the challenge used, if any, is spent.
    """
    if state is None or not state.challenges:
        return _answer(403, state, state, notes=(_failed("not-offered"),))
    if not _same_origin_request(request, origin):
        return _answer(403, state, state, notes=(_failed("cross-site"),))
    proof = _load_proof(parse_string_item(request.proof))
    if proof is None:
        return _answer(403, state, state, notes=(_failed("malformed-proof"),))
    reason, spent = _take_challenge(state, proof.jti, now, hash_value, _FOR_REGISTRATION)
    if reason:
        return _answer(403, state, spent, notes=(_failed(reason),))
    reason, jwk = _check(proof, policy.algorithms, proof.header.get("jwk"))
    if jwk is None:
        return _answer(403, state, spent, notes=(_failed(reason, alg=proof.alg[:16]),))
    cookie = secrets.token_urlsafe(_COOKIE_BYTES)
    bound = replace(
        spent,
        session_identifier=secrets.token_urlsafe(_ID_BYTES),
        alg=proof.alg,
        jwk=jwk,
        cookie_hash=hash_value("dbsc-cookie", cookie),
        cookie_expires_at=now + policy.cookie_max_age,
        previous_cookie_hash="",
        previous_cookie_expires_at=0.0,
        bound_at=now,
        refreshed_at=now,
    )
    extra = [bound_cookie_header(policy, cookie)]
    if policy.challenge_on_registration:
        challenge, bound = _new_challenge(bound, policy, now, hash_value, _FOR_REFRESH)
        pushed = challenge_header(challenge, bound.session_identifier)
        extra.append(("Secure-Session-Challenge", pushed))
    note = DbscNote(EventKind.DBSC_REGISTERED, proof.alg, {"alg": proof.alg})
    body = session_instructions(policy, bound.session_identifier, origin)
    return _answer(200, state, bound, extra=extra, body=body, notes=(note,))


def _rate_limited(policy: DbscPolicy, state: DbscState, now: float) -> tuple[bool, DbscState]:
    if now - state.window_start >= policy.refresh_window or now < state.window_start:
        return False, replace(state, window_start=now, window_count=1)
    if state.window_count >= policy.refresh_limit:
        return True, state
    return False, replace(state, window_count=state.window_count + 1)


def _challenge_403(
    policy: DbscPolicy,
    before: DbscState,
    state: DbscState,
    now: float,
    hash_value: Hasher,
    notes: Sequence[DbscNote] = (),
) -> DbscResult:
    challenge, after = _new_challenge(state, policy, now, hash_value, _FOR_REFRESH)
    header = ("Secure-Session-Challenge", challenge_header(challenge, state.session_identifier))
    return _answer(403, before, after, extra=(header,), notes=notes)


def refresh(
    policy: DbscPolicy,
    state: DbscState | None,
    request: DbscRequest,
    now: float,
    hash_value: Hasher,
    origin: str,
) -> DbscResult:
    """The refresh endpoint (``POST policy.refresh_path``).

    ``state`` is that of the app session named by the request's long-lived cookie (``None`` when
    there is no live session). Answers: 403 (nothing else looked at) to a cross-site request;
    ``{"continue": false}`` when the session is gone or not bound; 403 with a fresh
    ``Secure-Session-Challenge`` when the proof is missing, stale or wrong; 429 over the rate
    limit; 200 with a new bound cookie and a new challenge when the proof verifies against the
    *stored* key (any ``jwk`` in the proof is ignored). Never 401 or 404, which would make the
    browser drop the binding.
    """
    if not _same_origin_request(request, origin):
        # Before anything else: ``continue: false`` clears the bound cookie (and, with no
        # session, the adapter adds ``Clear-Site-Data``), which a cross-site form must never
        # be able to trigger; that would sign a visitor out of the whole site.
        return _answer(403, state, state, notes=(_failed("cross-site"),))
    if state is None or not state.bound:
        return termination(policy, "no-session" if state is None else "not-bound")
    sent_id = parse_string_item(request.session_id)
    if sent_id is None:
        return _answer(403, state, state, notes=(_failed("no-session-id"),))
    if not secrets.compare_digest(sent_id.encode(), state.session_identifier.encode()):
        # The browser holds a binding this app session does not know (an older registration).
        # Nothing is cleared: the bound cookie's name is shared with the current binding.
        note = DbscNote(EventKind.DBSC_TERMINATED, "foreign-session-id")
        return _answer(200, state, state, body={"continue": False}, notes=(note,))
    limited, counted = _rate_limited(policy, state, now)
    if limited:
        retry = ("Retry-After", str(int(policy.refresh_window)))
        note = DbscNote(EventKind.THROTTLED, "dbsc-refresh")
        return _answer(429, state, state, extra=(retry,), notes=(note,))
    if request.proof is None:
        return _challenge_403(policy, state, counted, now, hash_value)
    proof = _load_proof(parse_string_item(request.proof))
    if proof is None:
        failed = (_failed("malformed-proof"),)
        return _challenge_403(policy, state, counted, now, hash_value, failed)
    reason, spent = _take_challenge(counted, proof.jti, now, hash_value, _FOR_REFRESH)
    if not reason:  # verified with the stored key: any ``jwk`` the proof carries is ignored
        reason = _check(proof, (state.alg,), state.jwk)[0]
    if reason:
        return _challenge_403(policy, state, spent, now, hash_value, (_failed(reason),))
    cookie = secrets.token_urlsafe(_COOKIE_BYTES)
    renewed = replace(
        spent,
        cookie_hash=hash_value("dbsc-cookie", cookie),
        cookie_expires_at=now + policy.cookie_max_age,
        previous_cookie_hash=spent.cookie_hash,
        previous_cookie_expires_at=spent.cookie_expires_at,
        refreshed_at=now,
    )
    challenge, renewed = _new_challenge(renewed, policy, now, hash_value, _FOR_REFRESH)
    extra = (
        bound_cookie_header(policy, cookie),
        ("Secure-Session-Challenge", challenge_header(challenge, state.session_identifier)),
    )
    body = session_instructions(policy, state.session_identifier, origin)
    note = DbscNote(EventKind.DBSC_REFRESHED, "", {"alg": state.alg})
    return _answer(200, state, renewed, extra=extra, body=body, notes=(note,))


def check_bound_cookie(
    state: DbscState | None,
    value: str | None,
    now: float,
    hash_value: Hasher,
    legacy: Sequence[Hasher] = (),
) -> CookieCheck:
    """Whether a request of this session carries a valid bound cookie.

    ``value`` is the bound cookie as sent (``None`` when absent; pass ``""`` or any non-issued
    value when several were sent, which is then ``WRONG``). A value is valid until its Max-Age;
    the one replaced by the last refresh stays valid until its own Max-Age. ``legacy`` are the
    keyed hashes under retired secrets (a secret rotation must not cost every bound session
    its cookie: the browser would not refresh a cookie it still holds).
    """
    if state is None or not state.bound:
        return CookieCheck.UNBOUND
    if value is None:
        return CookieCheck.MISSING
    if not value or len(value) > 128:
        return CookieCheck.WRONG
    issued = (
        (state.cookie_hash, state.cookie_expires_at),
        (state.previous_cookie_hash, state.previous_cookie_expires_at),
    )
    for hasher in (hash_value, *legacy):
        digest = hasher("dbsc-cookie", value)
        for stored, until in issued:
            if stored and secrets.compare_digest(stored, digest):
                return CookieCheck.OK if now < until else CookieCheck.EXPIRED
    return CookieCheck.WRONG


def enforce(policy: DbscPolicy, check: CookieCheck) -> Enforcement:
    """The policy's answer to :func:`check_bound_cookie` for an in-scope request."""
    if check in (CookieCheck.OK, CookieCheck.UNBOUND):
        return Enforcement("allow")
    note = DbscNote(EventKind.DBSC_MISSING_BOUND_COOKIE, check.value, {"action": policy.on_missing})
    return Enforcement(policy.on_missing, note)


def skipped_notes(header: str | None, state: DbscState | None) -> tuple[DbscNote, ...]:
    """Events for a ``Secure-Session-Skipped`` header (the browser did not refresh: its reason
    and whether the named session is this one)."""
    notes = []
    for entry in parse_skipped(header):
        ours = (
            state is not None
            and state.bound
            and secrets.compare_digest(
                entry.session_identifier.encode(), state.session_identifier.encode()
            )
        )
        notes.append(DbscNote(EventKind.DBSC_SKIPPED, entry.reason, {"this_session": ours}))
    return tuple(notes)
