"""The request pipeline shared by the ASGI and WSGI adapters, with no I/O of its own.

For each request: resolve scheme and client through trusted proxies, redirect plain HTTP, load the
session, refuse throttled clients, run the cross-origin check and the CSRF token check, and, when
the response starts, commit the session and compute the headers to add. Adapters only translate
between their protocol and these calls, so both behave identically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from . import csrf, headers
from .anomaly import RiskAssessor
from .clock import Clock
from .core import Engine, Loaded, Outcome, Session, Steps
from .events import EventKind, EventSink
from .facts import RequestFacts
from .monitor import JsonLogSink, OutageGate, UnknownIdThrottle, agent_label, fingerprint
from .policy import Policy
from .proxy import TrustedProxies, https_redirect_target, is_loopback_host, is_valid_host
from .records import Lookup, dumps

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

#: The single-valued request headers the guard reads (the last one sent wins), in the order of
#: their slots; the CSRF token header takes the slot after them.
_SINGLE_HEADERS = (
    "host",
    "user-agent",
    "accept-language",
    "origin",
    "sec-fetch-site",
    "content-type",
    "accept",
)
_COOKIE = -1  # every value is kept
_PROXY = -2  # every value is kept, in order, for the trusted-proxy resolution
_FORWARDED = ("forwarded", "x-forwarded-for", "x-forwarded-proto")

_REASONS = {
    303: "See Other",
    400: "Bad Request",
    401: "Unauthorized",
    308: "Permanent Redirect",
    403: "Forbidden",
    413: "Payload Too Large",
    429: "Too Many Requests",
    503: "Service Unavailable",
}
_HUMAN = {
    "bad-request": "Bad request.",
    "reauthentication-required": "Please sign in again to continue.",
    "https-required": "This site is only served over HTTPS.",
    "cross-origin": "Cross-site request refused.",
    "csrf": "The form expired or did not come from this site. Reload the page and try again.",
    "too-large": "Request body too large.",
    "throttled": "Too many requests with invalid sessions. Try again later.",
    "store-unavailable": "Sessions are temporarily unavailable. Please try again shortly.",
}


@dataclass(slots=True)
class Refusal:
    """A response the guard sends instead of running the application."""

    status: int
    error: str  # machine-readable class: "csrf", "cross-origin", "throttled", ...
    reason: str = ""  # machine-readable detail
    location: str | None = None
    retry_after: int | None = None

    def render(self, wants_json: bool) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """Headers and body; JSON for API clients, a short plain text for people."""
        hdrs: list[tuple[bytes, bytes]] = []
        if self.location is not None:
            hdrs.append((b"location", self.location.encode("latin-1")))
        if self.retry_after is not None:
            hdrs.append((b"retry-after", str(self.retry_after).encode()))
        if wants_json:
            body = dumps({"error": self.error, "reason": self.reason}).encode()
            hdrs.append((b"content-type", b"application/json"))
        else:
            text = _HUMAN.get(self.error, _REASONS.get(self.status, "Refused"))
            body = f"{self.status} {_REASONS.get(self.status, '')}\n{text}\n".encode()
            hdrs.append((b"content-type", b"text/plain; charset=utf-8"))
        hdrs.append((b"content-length", str(len(body)).encode()))
        hdrs.append((b"cache-control", b"no-store"))
        return hdrs, body


@dataclass(slots=True)
class Begun:
    """The state of one request between its start and its response."""

    facts: RequestFacts
    session: Session | None = None
    nonce: str = ""
    refusal: Refusal | None = None
    clear_cookie: bool = False
    #: The token must be read from the (buffered) form body before the app runs.
    needs_form_token: bool = False
    #: The commit wrote to the store (a successful write ends a write outage).
    wrote: bool = False

    def csrf_token(self) -> str:
        """A freshly masked CSRF token for this request's session."""
        if self.session is None:
            raise RuntimeError("no session on a refused request")
        return self.session.csrf_token()


class Guard:
    """Everything one policy enforces, ready to be driven by an adapter."""

    def __init__(
        self,
        policy: Policy,
        *,
        clock: Clock | None = None,
        sink: EventSink | None = None,
    ) -> None:
        self.policy = policy
        mon = policy.monitor
        self.proxies = TrustedProxies(policy.https.trusted_proxies)
        self.throttle = UnknownIdThrottle(mon.unknown_id_limit_per_minute)
        self.engine = Engine(
            policy,
            clock=clock,
            # Audit events go to the "sessionwarden.events" logger as JSON lines unless the
            # application routes them elsewhere.
            sink=sink if sink is not None else JsonLogSink(),
            assessor=RiskAssessor(mon) if mon.fingerprint else None,
            fingerprinter=fingerprint if mon.fingerprint else None,
            throttle=self.throttle.hit if mon.unknown_id_limit_per_minute else None,
            agent_label=agent_label,
        )
        self.headers = headers.SecurityHeaders(policy.headers) if policy.headers.enabled else None
        #: The response header names whose presence :meth:`response_headers` looks at.
        self.response_header_names = self.headers.names if self.headers else frozenset()
        self._no_store = policy.headers.no_store
        self.outage = OutageGate()
        self._write_outage = False
        # Where the value of each header the guard reads goes. A token header named like one of
        # the other headers is not read as a token; one named like a proxy header is read as the
        # token only.
        slots = {name: slot for slot, name in enumerate(_SINGLE_HEADERS)}
        slots["cookie"] = _COOKIE
        slots.setdefault(policy.csrf.header_name, len(_SINGLE_HEADERS))
        for name in _FORWARDED:
            slots.setdefault(name, _PROXY)
        self._slots = slots
        self._raw_slots = {name.encode("latin-1"): slot for name, slot in slots.items()}
        #: Header names (lower-case bytes) the guard reads; adapters may skip all others.
        self.wanted_headers = frozenset(self._raw_slots)

    # -- facts --------------------------------------------------------------------------------
    def facts(
        self,
        *,
        method: str,
        scheme: str,
        path: str,
        peer_ip: str,
        raw_headers: Iterable[tuple[str, str]],
    ) -> RequestFacts:
        """Build facts from lower-case header names and latin-1 decoded values."""
        slots = self._slots
        values: list[str | None] = [None] * (len(_SINGLE_HEADERS) + 1)
        cookie: list[str] = []
        forwarded: list[tuple[str, str]] = []
        for name, value in raw_headers:
            slot = slots.get(name)
            if slot is None:
                continue
            if slot >= 0:
                values[slot] = value
            elif slot == _COOKIE:
                cookie.append(value)
            else:
                forwarded.append((name, value))
        return self._facts(method, scheme, path, peer_ip, values, cookie, forwarded)

    def raw_facts(
        self,
        *,
        method: str,
        scheme: str,
        path: str,
        peer_ip: str,
        raw_headers: Iterable[tuple[bytes, bytes]],
    ) -> RequestFacts:
        """:meth:`facts` from lower-case byte names and values (ASGI's request headers); only
        the values of the headers the guard reads are decoded."""
        slots = self._raw_slots
        values: list[str | None] = [None] * (len(_SINGLE_HEADERS) + 1)
        cookie: list[str] = []
        forwarded: list[tuple[str, str]] = []
        for raw_name, raw_value in raw_headers:
            slot = slots.get(raw_name)
            if slot is None:
                continue
            value = raw_value.decode("latin-1")
            if slot >= 0:
                values[slot] = value
            elif slot == _COOKIE:
                cookie.append(value)
            else:
                forwarded.append((raw_name.decode("latin-1"), value))
        return self._facts(method, scheme, path, peer_ip, values, cookie, forwarded)

    def _facts(
        self,
        method: str,
        scheme: str,
        path: str,
        peer_ip: str,
        values: list[str | None],
        cookie: list[str],
        forwarded: list[tuple[str, str]],
    ) -> RequestFacts:
        """The facts of the single-valued headers (by slot), the joined cookies and the proxy
        headers (believed from trusted proxies only)."""
        client_ip = peer_ip
        if forwarded:
            client_ip, scheme = self.proxies.resolve(peer_ip, scheme, forwarded)
        host, agent, language, origin, site, content_type, accept, token = values
        return RequestFacts(
            method.upper(),
            scheme,
            "" if host is None else host.strip().lower(),
            path,
            client_ip,
            "; ".join(cookie),
            agent or "",
            language or "",
            origin,
            site,
            content_type or "",
            accept or "",
            None if token is None else token.strip(),
        )

    # -- before the application -----------------------------------------------------------------
    def begin(self, facts: RequestFacts, target: str) -> Steps[Begun]:
        """Decide whether the application runs, loading the session on the way."""
        begun = Begun(facts)
        now = self.engine.clock.now()
        if self._refuse_plain_http(begun, target, now):
            return begun
        loaded = yield from self.engine.load(facts)
        return self._loaded(begun, loaded, now)

    def begin_inline(
        self, facts: RequestFacts, target: str, read: Callable[[str], Lookup]
    ) -> Begun | Steps[Begun]:
        """:meth:`begin` for a store whose reads are plain calls (``read``: its ``get``). The
        common request is decided at once; one whose session needs more store calls than that
        read (an alias, a risky session) returns the rest as steps to run.

        Nothing observable (an event, a refusal) happens before ``read`` is called, so when
        ``read`` raises (a cache that cannot answer without I/O) the caller may start over
        with :meth:`begin`."""
        begun = Begun(facts)
        now = self.engine.clock.now()
        if self._refuse_plain_http(begun, target, now):
            return begun
        loaded = self.engine.load_inline(facts, read, now)
        if isinstance(loaded, Loaded):
            return self._loaded(begun, loaded, now)
        return self._finish_loading(begun, loaded, now)

    def _finish_loading(self, begun: Begun, steps: Steps[Loaded], now: float) -> Steps[Begun]:
        loaded = yield from steps
        return self._loaded(begun, loaded, now)

    def may_redirect(self, facts: RequestFacts) -> bool:
        """Whether :meth:`begin` may redirect this request to HTTPS, the only use of its
        ``target``: an adapter can pass ``""`` when not."""
        hp = self.policy.https
        return (
            hp.redirect
            and facts.scheme != "https"
            and not (hp.allow_loopback_http and is_loopback_host(facts.host))
        )

    def _refuse_plain_http(self, begun: Begun, target: str, now: float) -> bool:
        """Refuse an invalid Host, or redirect plain HTTP to HTTPS (sets ``begun.refusal``)."""
        facts = begun.facts
        hp = self.policy.https
        if not hp.redirect or facts.scheme == "https":
            return False
        if hp.allow_loopback_http and is_loopback_host(facts.host):
            return False
        if not is_valid_host(facts.host):
            begun.refusal = Refusal(400, "bad-request", "invalid-host")
            return True
        location = https_redirect_target(facts, target, hp)
        if location is not None:
            self.engine._emit(EventKind.HTTPS_REDIRECT, facts, now)
            begun.refusal = Refusal(308, "https-required", "plain-http", location=location)
            return True
        return False

    def _loaded(self, begun: Begun, loaded: Loaded, now: float) -> Begun:
        """With the session loaded: throttling, the CSP nonce, the cross-origin and token checks."""
        facts = begun.facts
        begun.session = loaded.session
        begun.clear_cookie = loaded.clear_cookie
        if loaded.throttled:
            begun.refusal = Refusal(429, "throttled", "unknown-session-ids", retry_after=60)
            return begun
        begun.nonce = headers.new_nonce() if self.headers is not None else ""
        cpol = self.policy.csrf
        if not cpol.enabled or facts.is_safe_method or csrf.is_exempt(facts.path, cpol):
            return begun
        verdict = csrf.cross_origin_verdict(facts, cpol)
        if not verdict.ok:
            self.engine._emit(
                EventKind.CROSS_ORIGIN_REFUSED,
                facts,
                now,
                key=self._key(begun),
                reason=verdict.reason,
            )
            begun.refusal = Refusal(403, "cross-origin", verdict.reason)
            return begun
        if not cpol.require_token:
            return begun
        presented = facts.csrf_header
        if presented is None and facts.content_type.split(";", 1)[0].strip().lower() in FORM_TYPES:
            begun.needs_form_token = True
            return begun
        self.check_token(begun, presented)
        return begun

    @staticmethod
    def _key(begun: Begun) -> str:
        s = begun.session
        return s.record.key if s is not None and s.record is not None else ""

    def check_token(self, begun: Begun, presented: str | None) -> None:
        """Verify the synchronizer token; sets ``begun.refusal`` when it fails."""
        session = begun.session
        secret = session.record.csrf_secret if session is not None and session.record else ""
        verdict = (
            csrf.token_verdict(presented, secret) if secret else csrf.Verdict(False, "no-session")
        )
        if not verdict.ok:
            now = self.engine.clock.now()
            user = session.user_id if session is not None else None
            self.engine._emit(
                EventKind.CSRF_REFUSED,
                begun.facts,
                now,
                key=self._key(begun),
                user_id=user,
                reason=verdict.reason,
            )
            begun.refusal = Refusal(403, "csrf", verdict.reason)

    def check_form_body(self, begun: Begun, body: bytes) -> None:
        token = csrf.extract_form_token(begun.facts.content_type, body, self.policy.csrf.field_name)
        self.check_token(begun, token)

    def body_too_large(self, begun: Begun) -> None:
        begun.refusal = Refusal(413, "too-large", "body-over-limit")

    # -- after the application ------------------------------------------------------------------
    def commit(self, begun: Begun) -> Steps[Outcome]:
        assert begun.session is not None
        steps = self.engine.commit(begun.session, begun.facts)
        try:
            op = next(steps)
            while True:
                if op.method != "get":
                    begun.wrote = True
                op = steps.send((yield op))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def common_response_headers(
        self, begun: Begun, outcome: Outcome
    ) -> list[tuple[bytes, bytes]] | None:
        """:meth:`response_headers` for the common response, when the app set none of the
        headers of :attr:`response_header_names`: the headers to add, or ``None`` when this
        response is not a common one (a cookie to set or clear, a session ending, headers
        off), which :meth:`response_headers` then answers."""
        sh = self.headers
        if sh is None or outcome.set_cookie is not None or outcome.logged_out or begun.clear_cookie:
            return None
        return sh.common(
            begun.facts.scheme == "https",
            begun.nonce or None,
            self._no_store and outcome.authenticated,
        )

    def response_headers(
        self,
        begun: Begun,
        outcome: Outcome | None,
        existing: AbstractSet[bytes],
    ) -> tuple[list[tuple[bytes, bytes]], AbstractSet[bytes]]:
        """Headers to add to the response and header names of the app's to drop."""
        set_cookie = outcome.set_cookie if outcome is not None else None
        if set_cookie is None and begun.clear_cookie:
            set_cookie = self.engine.cookies.clear()
        if self.headers is None:
            if set_cookie is None:
                return [], headers.NOTHING_TO_DROP
            return [(b"set-cookie", set_cookie.encode("latin-1"))], headers.NOTHING_TO_DROP
        no_store = self._no_store and (
            set_cookie is not None or (outcome is not None and outcome.authenticated)
        )
        add, drop = self.headers.plan(
            begun.facts.scheme == "https",
            begun.nonce or None,
            existing,
            no_store,
            outcome is not None and outcome.logged_out,
        )
        if set_cookie is not None:
            add.insert(0, (b"set-cookie", set_cookie.encode("latin-1")))
        return add, drop

    @staticmethod
    def reauthentication(begun: Begun, reason: str, redirect: str | None) -> Refusal:
        """The answer to :class:`~sessionwarden.core.ReauthenticationRequired`: 401 for JSON
        clients (and everyone when no sign-in page is configured), else 303 to ``redirect``."""
        if redirect and not begun.facts.wants_json:
            return Refusal(303, "reauthentication-required", reason, location=redirect)
        return Refusal(401, "reauthentication-required", reason)

    def store_failed(self, facts: RequestFacts, exc: Exception, *, writing: bool) -> Refusal:
        """Report the first failure of an outage (not every request of it) and refuse."""
        now = self.engine.clock.now()
        if writing:
            self._write_outage = True
        if self.outage.failure(now):
            self.engine._emit(EventKind.STORE_UNAVAILABLE, facts, now, reason=str(exc)[:200])
        return Refusal(503, "store-unavailable", "session-store", retry_after=1)

    def store_ok(self, facts: RequestFacts, *, wrote: bool) -> None:
        """Report the end of an outage. When writes were failing, a successful read proves
        nothing (a read-only file, a full disk): only a successful write ends it."""
        if not self.outage.failing or (self._write_outage and not wrote):
            return
        if self.outage.success():
            self._write_outage = False
            self.engine._emit(EventKind.STORE_RECOVERED, facts, self.engine.clock.now())
