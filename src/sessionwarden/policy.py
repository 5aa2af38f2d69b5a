"""Configuration: one frozen, validated value that every rule reads.

Defaults are the secure choice; each one says why. Construction refuses settings a browser would
silently punish (a ``__Host-`` cookie with a non-``/`` path, ``SameSite=None`` without ``Secure``;
a ``Domain`` turns ``__Host-`` into ``__Secure-``, with a warning) and
contradictions (a rotation grace longer than the rotation period), naming the field at fault. An
idle timeout longer than the absolute one is no contradiction: the absolute timeout simply ends
the session first.
"""

from __future__ import annotations

import ipaddress
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .dbsc import DbscPolicy
from .records import JSON
from .stores.base import CAP_ACTIONS, CapAction

SameSite = Literal["Strict", "Lax", "None"]
_log = logging.getLogger("sessionwarden")

Action = Literal["allow", "log", "step_up", "revoke"]
_ACTIONS = ("allow", "log", "step_up", "revoke")
#: Deeper session values could not be read back within Python's default recursion limit
#: (the JSON decoder and copies recurse once per level).
_MAX_DEPTH = 100
#: Host names (RFC 3986 reg-names as browsers send them, IDNs as punycode) and address literals.
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._~[]:")
#: The longest lifetime a cookie may ask for: RFC 6265bis has browsers cap ``Max-Age`` and
#: ``Expires`` at 400 days, and a value beyond it only pretends to a lifetime no browser keeps.
MAX_COOKIE_AGE = 400 * 86_400


def path_under(path: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``path`` lies under one of ``prefixes``, on whole segments: ``/hooks`` covers
    ``/hooks`` and ``/hooks/...`` (not ``/hooksmith``); ``/hooks/`` covers ``/hooks/...`` only,
    never the bare ``/hooks`` a router might redirect there (Go's CVE-2025-47910). A path with a
    ``.`` or ``..`` segment is under nothing: a router or proxy that normalises it could land
    outside the subtree."""
    if "/." in path and any(seg in (".", "..") for seg in path.split("/")):
        return False
    for prefix in prefixes:
        base = prefix.rstrip("/")
        if not base or path.startswith(base + "/") or (path == base and base == prefix):
            return True
    return False


def _paths(name: str, value: tuple[str, ...]) -> None:
    if isinstance(value, str) or not isinstance(value, tuple | list):
        _fail(name, "must be a sequence of paths starting with '/'")
    for p in value:
        if not isinstance(p, str) or not p.startswith("/"):
            _fail(name, f"{p!r} must start with '/'")


def _fail(name: str, why: str) -> None:
    raise ValueError(f"{name}: {why}")


def _positive(name: str, value: float, *, zero_ok: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(name, f"must be a number of seconds, got {type(value).__name__}")
    if value < 0 or (value == 0 and not zero_ok):
        _fail(name, f"must be {'>= 0' if zero_ok else '> 0'}, got {value!r}")


def _has_prefix(name: str, prefix: str) -> bool:
    return name[: len(prefix)].lower() == prefix.lower()


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    """The session cookie. ``__Host-id``: generic (no framework fingerprint) and, through the
    ``__Host-`` prefix, only ever set by this host over HTTPS with ``Path=/`` and no ``Domain``, so
    a sibling subdomain cannot plant or shadow it."""

    name: str = "__Host-id"
    secure: bool = True
    http_only: bool = True
    same_site: SameSite = "Lax"
    path: str = "/"
    domain: str | None = None
    #: ``False``: a browser-session cookie (no Max-Age); the server enforces timeouts either way.
    persistent: bool = False

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in ' \t\r\n;,="()<>@:\\/[]?{}'):
            _fail("cookie.name", f"{self.name!r} is not a valid cookie name")
        if self.same_site not in ("Strict", "Lax", "None"):
            _fail("cookie.same_site", "must be 'Strict', 'Lax' or 'None'")
        if not self.path.startswith("/"):
            _fail("cookie.path", "must start with '/'")
        # Browsers match the prefixes case-insensitively (RFC 6265bis 5.7): "__HOST-id" is held
        # to the __Host- rules, so it is checked by them too.
        if _has_prefix(self.name, "__Host-") and self.domain is not None:
            # A browser drops a __Host- cookie with a Domain: the prefix that allows one is used.
            renamed = "__Secure-" + self.name[len("__Host-") :]
            warnings.warn(
                f"cookie.domain: a __Host- cookie cannot have a Domain; the session cookie is "
                f"named {renamed!r} instead (sibling subdomains can then set it too)",
                UserWarning,
                stacklevel=3,
            )
            object.__setattr__(self, "name", renamed)
        if _has_prefix(self.name, "__Host-"):
            if self.path != "/":
                _fail("cookie.path", "a __Host- cookie must have Path=/")
            if not self.secure:
                _fail("cookie.secure", "a __Host- cookie must be Secure")
        if _has_prefix(self.name, "__Secure-") and not self.secure:
            _fail("cookie.secure", "a __Secure- cookie must be Secure")
        if self.same_site == "None" and not self.secure:
            _fail("cookie.same_site", "SameSite=None requires Secure (browsers reject it)")


@dataclass(frozen=True, slots=True)
class RememberPolicy:
    """The lifetime of a session whose user ticked "Keep me signed in": signed in with
    ``Session.login(user, remember=True)``. The server enforces both timeouts as it does the
    normal ones; the session's cookie is persistent (``Max-Age``: what remains of
    ``absolute_timeout``) whatever ``CookiePolicy.persistent`` says, so it survives a restart
    of the browser. The session stays one server-side session: listed, revocable, capped and
    checked like any other. Each timeout must be at least the policy's own."""

    #: Sliding inactivity limit of a remembered session: how long the user may stay away.
    idle_timeout: float = 7 * 86_400.0
    #: Hard limit from the sign-in, never extended by activity or rotation; at most 400 days
    #: (the longest a browser keeps a cookie).
    absolute_timeout: float = 30 * 86_400.0

    def __post_init__(self) -> None:
        _positive("remember.idle_timeout", self.idle_timeout)
        _positive("remember.absolute_timeout", self.absolute_timeout)
        if self.absolute_timeout > MAX_COOKIE_AGE:
            _fail(
                "remember.absolute_timeout",
                f"must be at most {MAX_COOKIE_AGE} (400 days: browsers keep no cookie longer)",
            )


@dataclass(frozen=True, slots=True)
class CsrfPolicy:
    """Cross-origin check (Fetch Metadata / Origin) first, then a masked synchronizer token."""

    enabled: bool = True
    #: Origins (``scheme://host[:port]``) allowed to send unsafe cross-origin requests.
    trusted_origins: tuple[str, ...] = ()
    #: Path prefixes that accept cross-origin unsafe requests with no token (webhooks). Explicit.
    exempt_paths: tuple[str, ...] = ()
    #: Require the synchronizer token on unsafe methods even when the origin check passed.
    require_token: bool = True
    field_name: str = "csrf_token"
    header_name: str = "x-csrf-token"
    #: Largest request body buffered to look for the form field; larger ones get 413.
    max_body_bytes: int = 1_048_576
    #: An unsafe request with neither ``Sec-Fetch-Site`` nor ``Origin``: ``"allow"`` (Go's
    #: choice: no browser sent it, so nothing was forged; the token check still applies) or
    #: ``"refuse"`` it (403, reason ``missing-browser-headers``) when it carries a ``Cookie``
    #: header. A request without cookies carries no ambient credentials and is not refused.
    missing_headers: Literal["allow", "refuse"] = "allow"
    #: Roll-out mode: a request either check would refuse is let through and reported
    #: (``csrf.would_block``) instead. WebSocket handshakes are checked as always.
    report_only: bool = False
    #: Fetch Metadata resource isolation: a signed-in session's resources refuse (403)
    #: cross-site loads that are not navigations: ``no-cors`` subresources (``<script>``,
    #: ``<img>``, ``<link>``) and ``<object>``/``<embed>``, which can leak data across sites
    #: (XSSI, timing, Spectre). CORS requests are left to the app's CORS policy.
    resource_isolation: bool = False
    #: Path prefixes (matched like ``exempt_paths``) of routes that change state: ``GET``,
    #: ``HEAD``, ``OPTIONS`` and ``TRACE`` on them get 405 with ``Allow`` before the session is
    #: loaded (a cross-site ``<img>`` or link can send a GET, and GET, HEAD and OPTIONS pass
    #: this check).
    state_changing_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _paths("csrf.state_changing_paths", self.state_changing_paths)
        if self.missing_headers not in ("allow", "refuse"):
            _fail("csrf.missing_headers", "must be 'allow' or 'refuse'")
        for origin in self.trusted_origins:
            if "://" not in origin or origin.endswith("/") or origin != origin.strip():
                _fail("csrf.trusted_origins", f"{origin!r} is not an origin like https://a.example")
        for prefix in self.exempt_paths:
            if not prefix.startswith("/"):
                _fail("csrf.exempt_paths", f"{prefix!r} must start with '/'")
        if self.max_body_bytes <= 0:
            _fail("csrf.max_body_bytes", "must be > 0")
        if self.header_name != self.header_name.lower():
            _fail("csrf.header_name", "must be lower-case (ASGI header names are)")


@dataclass(frozen=True, slots=True)
class HeadersPolicy:
    """Security headers added to every response, error and redirect ones included."""

    enabled: bool = True
    csp: bool = True
    csp_report_only: bool = False
    #: Where browsers send CSP violation reports (``report-uri`` and, through
    #: ``Reporting-Endpoints``, ``report-to``): an external collector's URL. ``None``: the
    #: receiver at ``csp_report_path``, if any.
    csp_report_uri: str | None = None
    #: A path of this application where the middleware itself receives CSP violation reports
    #: (``POST``, ``application/csp-report`` or ``application/reports+json``) and emits a
    #: ``csp.violation`` event for each; see :mod:`sessionwarden.reports`.
    csp_report_path: str | None = None
    #: Largest report body the receiver reads; larger gets 413.
    csp_report_max_bytes: int = 65_536
    #: Report posts one client address (IPv6: its /64) may make per minute; more get 429.
    csp_report_limit_per_minute: int = 60
    #: Extra sources per directive, e.g. ``{"img-src": ("https://cdn.example",)}``.
    csp_extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    hsts_max_age: int = 31_536_000
    hsts_include_subdomains: bool = True
    hsts_preload: bool = False
    frame_options: str | None = "DENY"
    referrer_policy: str | None = "strict-origin-when-cross-origin"
    cross_origin_opener_policy: str | None = "same-origin"
    cross_origin_resource_policy: str | None = "same-origin"
    #: ``Permissions-Policy`` value, e.g. ``"camera=(), microphone=(), geolocation=()"``;
    #: ``None``: not sent.
    permissions_policy: str | None = None
    #: ``Cache-Control: no-store`` on responses carrying a signed-in session or a new cookie,
    #: and on every response to an unsafe method (its outcome rests on ``Sec-Fetch-Site`` and
    #: ``Origin``).
    no_store: bool = True
    #: ``Clear-Site-Data: "cookies", "storage"`` on logout, in secure contexts only (HTTPS, or
    #: plain HTTP to a loopback host): browsers ignore it elsewhere.
    clear_site_data_on_logout: bool = True
    #: ``"cache"`` in Clear-Site-Data is opt-in: some browsers stall on it.
    clear_site_data_cache: bool = False

    def __post_init__(self) -> None:
        if self.hsts_max_age < 0:
            _fail("headers.hsts_max_age", "must be >= 0")
        path = self.csp_report_path
        if path is not None and (
            not path.startswith("/")
            or not path.isascii()
            or not path.isprintable()
            or any(c in path for c in ' ;,"?#')
        ):
            _fail("headers.csp_report_path", f"{path!r} is not a plain path like /csp-reports")
        if self.csp_report_max_bytes <= 0:
            _fail("headers.csp_report_max_bytes", "must be > 0")
        if self.csp_report_limit_per_minute < 0:
            _fail("headers.csp_report_limit_per_minute", "must be >= 0 (0: no limit)")
        year = 31_536_000
        if self.hsts_preload and (self.hsts_max_age < year or not self.hsts_include_subdomains):
            _fail("headers.hsts_preload", "preload needs max-age >= 1 year and includeSubDomains")

    @property
    def report_uri(self) -> str | None:
        """Where the CSP sends reports: ``csp_report_uri``, else ``csp_report_path``."""
        return self.csp_report_uri if self.csp_report_uri is not None else self.csp_report_path


@dataclass(frozen=True, slots=True)
class HttpsPolicy:
    """HTTPS enforcement and trusted reverse proxies."""

    #: Redirect plain HTTP to HTTPS with 308 (method and body survive).
    redirect: bool = True
    #: Plain HTTP from loopback hosts is allowed (browsers treat them as secure contexts).
    allow_loopback_http: bool = True
    #: Direct peers (addresses or CIDRs, or "unix" for a peer on a Unix socket) whose
    #: forwarding header is believed.
    trusted_proxies: tuple[str, ...] = ()
    #: The one header the trusted proxies set (and overwrite): "x-forwarded-for" (with
    #: X-Forwarded-Proto) or "forwarded" (RFC 7239). The other is the client's and never read.
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    #: Believe the host the trusted proxies forward (``X-Forwarded-Host`` with
    #: "x-forwarded-for", ``host=`` of ``Forwarded``) as the request's host: checked against
    #: ``allowed_hosts`` and used for redirects, the Origin check and DBSC. Off by default:
    #: turn it on only when every trusted proxy sets (or removes) that header, since a proxy
    #: that passes a client's copy through lets the client pick the host.
    forwarded_host: bool = False
    #: Path prefixes (matched like ``CsrfPolicy.exempt_paths``) refused over plain HTTP with 403
    #: instead of redirected: APIs, whose clients would resend credentials after a redirect
    #: and should fail loudly instead.
    refuse_paths: tuple[str, ...] = ()
    #: Refuse (403, like ``refuse_paths``) a plain-HTTP request that sends JSON or asks for it
    #: (``Accept: application/json``), wherever its path: an API client, never a browser's
    #: navigation, and one that should fail loudly rather than follow a redirect.
    refuse_json: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.refuse_json, bool):
            _fail("https.refuse_json", "must be True or False")
        if self.forwarded_header not in ("x-forwarded-for", "forwarded"):
            _fail("https.forwarded_header", "must be 'x-forwarded-for' or 'forwarded'")
        if not isinstance(self.forwarded_host, bool):
            _fail("https.forwarded_host", "must be True or False")
        _paths("https.refuse_paths", self.refuse_paths)
        for proxy in self.trusted_proxies:
            if proxy == "unix":
                continue
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                _fail("https.trusted_proxies", f"{proxy!r} is not an address, a CIDR or 'unix'")


@dataclass(frozen=True, slots=True)
class RiskSignal:
    """What the risk check found about one request of a signed-in session, as
    :attr:`MonitorPolicy.decide` receives it."""

    #: Why: ``agent-changed``, ``network-changed``, ``network-flapping``, ``language-changed``,
    #: ``replay-of-rotated-id`` (a rotated-out ID presented after its grace window).
    reasons: tuple[str, ...]
    risk: Literal["low", "high"]
    #: What the policy's ``on_low``/``on_high`` say to do.
    action: Action
    user_id: str | None
    #: The session's reference (never its ID).
    ref: str
    client_ip: str
    user_agent: str
    #: The session's stored fingerprint and the request's (``ip``, ``net``, ``ua``, ``uav``,
    #: ``lang``); empty for ``replay-of-rotated-id``.
    previous: Mapping[str, JSON] = field(default_factory=dict)
    current: Mapping[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MonitorPolicy:
    """Fingerprinting, risk scoring and the response to risk."""

    fingerprint: bool = True
    on_low: Action = "log"
    on_high: Action = "revoke"
    #: On a high-risk revocation, end every session of the user, not only this one.
    revoke_all_on_high: bool = False
    #: A session seen from two networks within this many seconds is high risk.
    network_switch_window: float = 300.0
    #: A user-agent family change is high risk (the default) or only low.
    agent_change_is_high: bool = True
    #: After a credential change, end every other session of that user.
    end_other_sessions_on_credential_change: bool = True
    #: After each sign-in, list the user's sessions (one store call more per sign-in) and
    #: report a sign-in concurrent with other live sessions (``session.concurrent_login``) and
    #: one from a browser family and network none of them has (``session.new_device``).
    notify_logins: bool = False
    #: Unknown session IDs one client may present per minute before it gets 429.
    unknown_id_limit_per_minute: int = 30
    #: Length of each session's activity trail.
    activity_max: int = 20
    #: The network a client address belongs to for the network check: its IPv4 /24 and IPv6
    #: /48 by default (one user's addresses move within them); 32 and 128: the exact address
    #: (strict binding: any other address is a network change).
    ipv4_prefix: int = 24
    ipv6_prefix: int = 48
    #: The application's own risk decision (a geo, ASN or impossible-travel check): called
    #: with each :class:`RiskSignal`, it returns the action to take, or ``None`` for the
    #: policy's (``signal.action``). When it raises or answers something else, the policy's
    #: action is taken and the error logged.
    decide: Callable[[RiskSignal], Action | None] | None = None
    #: Path prefixes (matched like ``CsrfPolicy.exempt_paths``) a session a risk decision
    #: demanded to step up (``"step_up"``) may still reach: where the user signs in again or
    #: signs out. Every other request of that session is refused (401 ``reauth_required``, or
    #: 303 to the adapter's ``reauth_redirect`` for a browser) until the application calls
    #: ``Session.reauthenticated()`` or signs the user in. The path of ``reauth_redirect``,
    #: when it names one on this site, is always reachable.
    reauth_paths: tuple[str, ...] = ()

    def action_for(self, signal: RiskSignal) -> Action:
        """The action for ``signal``: :attr:`decide`'s answer, else the policy's."""
        if self.decide is None:
            return signal.action
        try:
            chosen = self.decide(signal)
        except Exception:
            _log.exception("monitor.decide failed; the policy's action %r applies", signal.action)
            return signal.action
        if chosen is None:
            return signal.action
        if chosen not in _ACTIONS:
            _log.error("monitor.decide answered %r; the policy's action applies", chosen)
            return signal.action
        return chosen

    def __post_init__(self) -> None:
        for name in ("on_low", "on_high"):
            if getattr(self, name) not in _ACTIONS:
                _fail(f"monitor.{name}", f"must be one of {', '.join(_ACTIONS)}")
        _positive("monitor.network_switch_window", self.network_switch_window, zero_ok=True)
        if self.unknown_id_limit_per_minute < 0:
            _fail("monitor.unknown_id_limit_per_minute", "must be >= 0 (0 disables)")
        if self.activity_max < 0:
            _fail("monitor.activity_max", "must be >= 0")
        for name, bits in (("ipv4_prefix", 32), ("ipv6_prefix", 128)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= bits:
                _fail(f"monitor.{name}", f"must be an integer from 1 to {bits}")
        _paths("monitor.reauth_paths", self.reauth_paths)


@dataclass(frozen=True, slots=True)
class WebSocketPolicy:
    """WebSocket handshakes and open long-lived connections (WebSockets, event streams)."""

    #: Check handshakes (origin, session) and watch open connections; ``False`` passes
    #: WebSocket scopes to the application untouched.
    enabled: bool = True
    #: Accept a handshake without an ``Origin`` header (a non-browser client). Browsers always
    #: send one on a WebSocket handshake, so a missing one is refused by default.
    allow_non_browser: bool = False
    #: Seconds between checks of the sessions of open connections against the store; a session
    #: that ended (revoked, logged out, expired) closes its connections within about this long.
    check_interval: float = 0.5
    #: End streaming responses (``text/event-stream``) of a session that ended, like WebSockets.
    end_event_streams: bool = True

    def __post_init__(self) -> None:
        _positive("websocket.check_interval", self.check_interval)
        if self.check_interval > 60:
            _fail("websocket.check_interval", "must be at most 60 seconds")


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything sessionwarden enforces. Only ``secret_keys`` has no default."""

    #: Keys for keyed hashing of IDs: the first signs, all verify (rotate by prepending).
    secret_keys: tuple[bytes, ...]
    cookie: CookiePolicy = field(default_factory=CookiePolicy)
    #: Sliding inactivity limit (OWASP: 15-30 min for most apps).
    idle_timeout: float = 1800.0
    #: Hard limit from creation (for a signed-in session: from its login), never extended by
    #: activity or rotation. It ends the session first when it is the shorter of the two.
    absolute_timeout: float = 43_200.0
    #: The lifetime of sessions whose user asked to be remembered at sign-in
    #: (``Session.login(user, remember=True)``); ``None``: no such choice (asking raises
    #: ``ValueError``), every session lives by the two timeouts above.
    remember: RememberPolicy | None = None
    #: Periodic ID rotation; 0 turns it off. Login, logout and privilege changes always rotate.
    rotate_every: float = 900.0
    #: How long a periodically rotated-out ID still reaches its session (in-flight requests).
    rotation_grace: float = 10.0
    #: Coalesce last-seen writes of read-only requests; ``None``: min(60 s, idle_timeout / 10).
    touch_interval: float | None = None
    #: Concurrent (live) sessions per user. 0: no cap. What a sign-in beyond it does is
    #: :attr:`on_session_limit`; the store decides atomically, so parallel sign-ins never
    #: exceed it.
    max_sessions_per_user: int = 0
    #: At the cap: ``"evict-oldest"`` (the session signed in longest ago ends),
    #: ``"evict-lru"`` (the one whose last recorded activity, a touch or a rotation, is oldest
    #: ends; activity is recorded every ``touch_interval``, so that is its granularity), or
    #: ``"reject"`` (the new sign-in is refused: :class:`~sessionwarden.SessionLimitReached`,
    #: answered 409 ``session-limit``; the existing sessions keep working).
    on_session_limit: CapAction = "evict-oldest"
    #: Stored anonymous sessions holding only a CSRF secret (a login page's token) that one
    #: client address (IPv6: its /64) keeps per process; the oldest are deleted beyond it, so
    #: cookieless page views cannot grow the store without bound. 0: no cap.
    anonymous_per_client: int = 16
    #: How long a revoked or rotated-out ID is remembered so a replay is reported;
    #: ``None``: the absolute timeout (after that the ID would have expired anyway).
    tombstone_ttl: float | None = None
    #: Host names this application answers to (``Host`` header, port ignored): exact names,
    #: ``.example.com`` for a domain and all its subdomains, ``*`` for any host (only behind a
    #: proxy that checks it). Empty: loopback hosts only (``localhost``, ``127.0.0.1``, ``[::1]``).
    #: Any other host gets 400 and is never written into a redirect or an absolute URL.
    allowed_hosts: tuple[str, ...] = ()
    #: Deepest nesting of lists and dicts in one session value (JSON reads recurse).
    max_value_depth: int = 32
    #: Largest session value, in bytes of its JSON; checked when the application sets it.
    max_value_bytes: int = 65_536
    #: Largest session data in all, in bytes of its JSON (it is read on every request).
    max_session_bytes: int = 262_144
    #: Path prefixes (matched like ``CsrfPolicy.exempt_paths``) of passive requests: polling,
    #: heartbeats. They read and write the session as any request, but never extend the idle
    #: timeout or trigger a periodic rotation, so an open tab that polls does not keep a
    #: session alive forever. The DBSC refresh path is always passive.
    passive_paths: tuple[str, ...] = ()
    csrf: CsrfPolicy = field(default_factory=CsrfPolicy)
    headers: HeadersPolicy = field(default_factory=HeadersPolicy)
    https: HttpsPolicy = field(default_factory=HttpsPolicy)
    monitor: MonitorPolicy = field(default_factory=MonitorPolicy)
    websocket: WebSocketPolicy = field(default_factory=WebSocketPolicy)
    #: Device Bound Session Credentials (off by default; see ``docs/dbsc.md``).
    dbsc: DbscPolicy = field(default_factory=DbscPolicy)
    #: Production mode: building the policy fails (``ValueError``) while any setting of
    #: :func:`insecure_settings` is weakened, so a server with a development configuration
    #: never starts.
    production: bool = False
    #: Names of :func:`insecure_settings` accepted anyway in production mode, for developing a
    #: production configuration on this machine: honoured only while ``allowed_hosts`` is
    #: empty (the app answers loopback hosts alone).
    allow_insecure: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        keys = self.secret_keys
        if isinstance(keys, bytes | str) or not isinstance(keys, tuple | list):
            _fail("secret_keys", "must be a sequence of keys (first signs, all verify)")
        if not keys:
            _fail("secret_keys", "at least one key is required")
        normalised: list[bytes] = []
        for k in keys:
            raw = k.encode("utf-8") if isinstance(k, str) else k
            if not isinstance(raw, bytes) or len(raw) < 32:
                _fail("secret_keys", "each key must be at least 32 bytes of secret material")
            normalised.append(raw)
        object.__setattr__(self, "secret_keys", tuple(normalised))
        _positive("idle_timeout", self.idle_timeout)
        _positive("absolute_timeout", self.absolute_timeout)
        self._check_remember()
        _positive("rotate_every", self.rotate_every, zero_ok=True)
        _positive("rotation_grace", self.rotation_grace, zero_ok=True)
        if self.rotate_every and self.rotation_grace >= self.rotate_every:
            _fail("rotation_grace", "must be shorter than rotate_every")
        if self.touch_interval is not None:
            _positive("touch_interval", self.touch_interval, zero_ok=True)
            if self.touch_interval >= self.idle_timeout:
                _fail("touch_interval", "must be shorter than idle_timeout")
        self._check_caps()
        if self.tombstone_ttl is not None:
            _positive("tombstone_ttl", self.tombstone_ttl)
        self._check_value_limits()
        self._check_hosts()
        self._check_production()
        _paths("passive_paths", self.passive_paths)

    def _check_remember(self) -> None:
        remember = self.remember
        if remember is None:
            return
        if not isinstance(remember, RememberPolicy):
            _fail("remember", "must be a RememberPolicy or None")
        # A "remember me" that ends sooner than not being remembered is a contradiction.
        if remember.idle_timeout < self.idle_timeout:
            _fail("remember.idle_timeout", "must be at least idle_timeout")
        if remember.absolute_timeout < self.absolute_timeout:
            _fail("remember.absolute_timeout", "must be at least absolute_timeout")

    def _check_caps(self) -> None:
        if self.max_sessions_per_user < 0:
            _fail("max_sessions_per_user", "must be >= 0 (0: no cap)")
        if self.on_session_limit not in CAP_ACTIONS:
            _fail("on_session_limit", f"must be one of {', '.join(CAP_ACTIONS)}")
        if self.anonymous_per_client < 0:
            _fail("anonymous_per_client", "must be >= 0 (0: no cap)")

    def is_passive(self, path: str) -> bool:
        """Whether a request for ``path`` must not extend the idle timeout."""
        dbsc = self.dbsc
        if dbsc.enabled and path == dbsc.refresh_path:
            return True
        return bool(self.passive_paths) and path_under(path, self.passive_paths)

    def _check_production(self) -> None:
        allowed = self.allow_insecure
        if isinstance(allowed, str) or not isinstance(allowed, tuple | list):
            _fail("allow_insecure", "must be a sequence of setting names")
        unknown = sorted(set(allowed) - set(INSECURE_SETTINGS))
        if unknown:
            _fail("allow_insecure", f"unknown setting(s) {', '.join(unknown)}")
        if not self.production:
            return
        if allowed and self.allowed_hosts:
            _fail(
                "allow_insecure",
                "is for development on this machine only: leave allowed_hosts empty "
                "(loopback hosts) or fix the settings",
            )
        problems = [
            f"{name} ({why})" for name, why in insecure_settings(self) if name not in allowed
        ]
        if problems:
            _fail(
                "production",
                "insecure settings: "
                + "; ".join(problems)
                + ". Fix them, or for development on this machine only name them in "
                "allow_insecure",
            )

    def _check_hosts(self) -> None:
        hosts = self.allowed_hosts
        if isinstance(hosts, str) or not isinstance(hosts, tuple | list):
            _fail("allowed_hosts", "must be a sequence of host names")
        normalised: list[str] = []
        for host in hosts:
            name = host.strip().lower().rstrip(".") if isinstance(host, str) else ""
            bare = name[1:] if name.startswith(".") else name
            if name != "*" and (not bare or not _HOST_CHARS.issuperset(bare) or ".." in bare):
                _fail("allowed_hosts", f"{host!r} is not a host name, '.domain' or '*'")
            normalised.append(name)
        object.__setattr__(self, "allowed_hosts", tuple(normalised))

    def _check_value_limits(self) -> None:
        if not 1 <= self.max_value_depth <= _MAX_DEPTH:
            _fail("max_value_depth", f"must be between 1 and {_MAX_DEPTH}")
        if self.max_value_bytes <= 0:
            _fail("max_value_bytes", "must be > 0")
        if self.max_session_bytes < self.max_value_bytes:
            _fail("max_session_bytes", "must be at least max_value_bytes")

    @property
    def effective_touch_interval(self) -> float:
        if self.touch_interval is not None:
            return self.touch_interval
        return min(60.0, self.idle_timeout / 10)

    @property
    def effective_tombstone_ttl(self) -> float:
        return self.tombstone_ttl if self.tombstone_ttl is not None else self.absolute_timeout


#: Every setting production mode checks, with what counts as insecure (see
#: :func:`insecure_settings`).
INSECURE_SETTINGS: dict[str, str] = {
    "secret_keys": "a key with fewer than 8 distinct bytes is not secret material",
    "cookie.secure": "False: the session cookie would travel over plain HTTP",
    "cookie.http_only": "False: page scripts (and XSS) could read the session ID",
    "cookie.same_site": "'None': every cross-site request would carry the cookie",
    "cookie.name": "no __Host- or __Secure- prefix: a sibling subdomain could plant the cookie",
    "https.redirect": "False: plain HTTP requests are served instead of redirected",
    "csrf.enabled": "False: no cross-site request forgery check",
    "csrf.report_only": "True: forged requests are only reported, not refused",
    "headers.enabled": "False: no security headers at all",
    "headers.csp": "False: no Content-Security-Policy",
    "headers.csp_report_only": "True: the Content-Security-Policy blocks nothing",
    "headers.hsts_max_age": "under one year: browsers forget HTTPS-only too soon",
    "allowed_hosts": "'*' with no trusted proxy: nothing checks the Host header",
}


def _weakened(policy: Policy) -> dict[str, bool]:
    """Whether each setting of :data:`INSECURE_SETTINGS` is weakened in ``policy``."""
    cookie, headers = policy.cookie, policy.headers
    return {
        "secret_keys": any(len(set(key)) < 8 for key in policy.secret_keys),
        "cookie.secure": not cookie.secure,
        "cookie.http_only": not cookie.http_only,
        "cookie.same_site": cookie.same_site == "None",
        "cookie.name": not (
            _has_prefix(cookie.name, "__Host-") or _has_prefix(cookie.name, "__Secure-")
        ),
        "https.redirect": not policy.https.redirect,
        "csrf.enabled": not policy.csrf.enabled,
        "csrf.report_only": policy.csrf.report_only,
        "headers.enabled": not headers.enabled,
        "headers.csp": not headers.csp,
        "headers.csp_report_only": headers.csp_report_only,
        "headers.hsts_max_age": headers.hsts_max_age < 31_536_000,
        "allowed_hosts": "*" in policy.allowed_hosts and not policy.https.trusted_proxies,
    }


def insecure_settings(policy: Policy) -> list[tuple[str, str]]:
    """The settings of ``policy`` weakened below what production needs, as (name, why) pairs,
    in the order of :data:`INSECURE_SETTINGS`; empty for the defaults. Production mode
    (``Policy.production``) refuses a policy for which this is not empty."""
    weak = _weakened(policy)
    return [(name, why) for name, why in INSECURE_SETTINGS.items() if weak[name]]
