"""The request pipeline shared by the ASGI and WSGI adapters, with no I/O of its own.

For each request: resolve scheme and client through trusted proxies, redirect plain HTTP, load the
session, refuse throttled clients, run the cross-origin check and the CSRF token check, and, when
the response starts, commit the session and compute the headers to add. Adapters only translate
between their protocol and these calls, so both behave identically.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import replace
from urllib.parse import urlsplit

from . import csrf, headers, proxy
from .anomaly import RiskAssessor
from .clock import Clock
from .context import RequestContext as RequestContext  # re-exported, as Refusal is
from .cookies import presents_id
from .core import Engine, Loaded, Outcome, Steps
from .core.base import CLEAR_ALL_BUT_COOKIES, KEEP_SITE_DATA, SiteData, site_data_to_clear
from .core.session import PLAIN_HTTP_REASON
from .dbsc_guard import REQUEST_HEADERS as DBSC_HEADERS
from .dbsc_guard import DbscGuard
from .events import EventKind, EventSink
from .facts import RequestFacts
from .hosts import HOW_TO_ALLOW, HostCheck
from .methods import state_changing_refusal
from .monitor import JsonLogSink, OutageGate, UnknownIdThrottle, agent_label
from .policy import Policy, path_under
from .proxy import TrustedProxies, https_redirect_target, is_loopback_host, is_valid_host
from .records import JSON
from .refusals import Raised, https_required_refusal, raised_refusal, reauthentication_refusal
from .refusals import Refusal as Refusal  # re-exported: the adapters' and apps' import
from .refusals import RenderedRefusal as RenderedRefusal
from .reports import CspReports
from .stores.base import SessionLimitReached, StoreUnavailable

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_log = logging.getLogger("sessionwarden")

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
_EXTRA = -3  # read for an optional feature (DBSC): ``RequestFacts.extra``
_FORWARDED = ("forwarded", "x-forwarded-for", "x-forwarded-proto")


@functools.lru_cache(maxsize=1024)
def _peer_address(peer_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(peer_ip.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@functools.lru_cache(maxsize=1024)
def _is_loopback_peer(peer_ip: str) -> bool:
    # Cached apart from the address: ``is_loopback`` is a network membership test per call.
    ip = _peer_address(peer_ip)
    return ip is not None and ip.is_loopback


def ip_defences_blind(policy: Policy, client_ip: str) -> bool:
    """Whether a request without a client address (a Unix-socket proxy whose forwarded header
    is not believed: ASGI ``client=None``, an empty ``REMOTE_ADDR``) leaves defences that need
    one silently off: the unknown-ID throttle and the network part of the risk check."""
    mon = policy.monitor
    return not client_ip and (mon.unknown_id_limit_per_minute > 0 or mon.fingerprint)


#: A hook that renders the guard's refusal pages (status >= 400): given the refusal and the
#: request's context (``ctx.facts.wants_json``, ``ctx.nonce``, possibly no session), the body to
#: send, or ``None`` for the default. A hook that raises or returns something else is logged and
#: the default is sent: a refusal never becomes a 500.
RefusalRenderer = Callable[[Refusal, RequestContext], RenderedRefusal | None]


def _header_slots(policy: Policy) -> dict[bytes, int]:
    """Where the value of each request header the guard reads goes. A token header named like
    one of the other headers is not read as a token; one named like a proxy header is read as
    the token only. Optional features' headers are read only when they are on."""
    slots = {name: slot for slot, name in enumerate(_SINGLE_HEADERS)}
    slots["cookie"] = _COOKIE
    slots.setdefault(policy.csrf.header_name, len(_SINGLE_HEADERS))
    for name in (*_FORWARDED, *(("x-forwarded-host",) if policy.https.forwarded_host else ())):
        slots.setdefault(name, _PROXY)
    extra = DBSC_HEADERS if policy.dbsc.enabled else ()
    isolation = csrf.ISOLATION_HEADERS if policy.csrf.resource_isolation else ()
    for name in (*extra, *isolation):
        slots.setdefault(name, _EXTRA)
    return {name.encode("latin-1"): slot for name, slot in slots.items()}


class Guard:
    """Everything one policy enforces, ready to be driven by an adapter."""

    def __init__(
        self,
        policy: Policy,
        *,
        clock: Clock | None = None,
        sink: EventSink | None = None,
        render_refusal: RefusalRenderer | None = None,
        reauth_redirect: str | None = None,
    ) -> None:
        self.policy = policy
        self.render_refusal = render_refusal
        #: Where a browser is sent (303) to sign in again; ``None``: 401 for everyone.
        self.reauth_redirect = reauth_redirect
        #: What a session a risk decision demanded to step up may still reach.
        self._reauth_paths = _reauth_paths(policy.monitor.reauth_paths, reauth_redirect)
        mon = policy.monitor
        self.proxies = TrustedProxies.from_policy(policy.https)
        self.throttle = UnknownIdThrottle(mon.unknown_id_limit_per_minute)
        assessor = RiskAssessor(mon) if mon.fingerprint else None
        self.engine = Engine(
            policy,
            clock=clock,
            # Audit events go to the "sessionwarden.events" logger as JSON lines unless the
            # application routes them elsewhere.
            sink=sink if sink is not None else JsonLogSink(),
            assessor=assessor,
            fingerprinter=assessor.fingerprint if assessor is not None else None,
            throttle=self.throttle.hit if mon.unknown_id_limit_per_minute else None,
            agent_label=agent_label,
        )
        self.headers = headers.SecurityHeaders(policy.headers) if policy.headers.enabled else None
        #: The response header names whose presence :meth:`response_headers` looks at.
        self.response_header_names = self.headers.names if self.headers else frozenset()
        self._no_store = policy.headers.no_store
        self.outage = OutageGate()
        self._write_outage = False
        #: Whether the missing-client-address warning was sent (once per process).
        self._blind_reported = False
        self.dbsc = (
            DbscGuard(policy.dbsc, self.engine, policy.headers.clear_site_data_on_logout)
            if policy.dbsc.enabled
            else None
        )
        self.hosts = HostCheck(policy.allowed_hosts)
        #: The CSP report receiver, when ``HeadersPolicy.csp_report_path`` names one.
        self.csp_reports = (
            CspReports(policy.headers) if policy.headers.csp_report_path is not None else None
        )
        self._host_reported = False
        #: Whether ignored forwarding headers were reported (once per process).
        self._proxy_reported = False
        #: Whether any endpoint is answered by the guard itself (:meth:`_endpoint`).
        self._endpoints = (self.csp_reports, self.dbsc) != (None, None)
        #: The redirect's policy: :meth:`may_redirect` already decided the loopback exemption.
        self._redirect_policy = replace(policy.https, allow_loopback_http=False)
        # Read by :meth:`may_redirect` on every request (the policy is frozen).
        self._redirects = policy.https.redirect
        self._loopback_http = policy.https.allow_loopback_http
        #: A Secure cookie never rides plain HTTP: such requests are served without a session
        #: (an operator who turned ``cookie.secure`` off chose a cookie that does).
        self._secure_cookie = policy.cookie.secure
        self._raw_slots = _header_slots(policy)
        self._state_changing = policy.csrf.state_changing_paths
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
        headers: Iterable[tuple[bytes, bytes]],
    ) -> RequestFacts:
        """The facts of a request from its lower-case byte header names and values (ASGI's
        request headers); only the values of the headers the guard reads are decoded."""
        slots = self._raw_slots
        values: list[str | None] = [None] * (len(_SINGLE_HEADERS) + 1)
        cookie: list[str] = []
        forwarded: list[tuple[str, str]] = []
        extra: dict[str, str] | None = None
        for raw_name, raw_value in headers:
            slot = slots.get(raw_name)
            if slot is None:
                continue
            value = raw_value.decode("latin-1")
            if slot >= 0:
                # A repeated field is one list-valued field (RFC 9110 5.3), as a WSGI server
                # joins it: ``cross-site, same-origin`` is no ``same-origin``, so a second
                # Sec-Fetch-Site, Origin or Host never overrides the first.
                seen = values[slot]
                values[slot] = value if seen is None else f"{seen}, {value}"
            elif slot == _COOKIE:
                cookie.append(value)
            elif slot == _PROXY:
                forwarded.append((raw_name.decode("latin-1"), value))
            else:
                if extra is None:
                    extra = {}
                extra[raw_name.decode("latin-1")] = value
        facts = self._facts(method, scheme, path, peer_ip, values, cookie, forwarded)
        facts.extra = extra
        if forwarded and not self._proxy_reported and not self.proxies.trusts_peer(peer_ip):
            self._report_proxy_headers(facts)
        return facts

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
        forwarded_host: str | None = None
        if forwarded:
            client_ip, scheme, forwarded_host = self.proxies.resolve_forwarded(
                peer_ip, scheme, forwarded
            )
        # Loopback HTTP is exempt from the redirect only for a loopback peer whose request no
        # trusted proxy forwarded: a proxy on this machine forwards other machines' requests.
        local_peer = _is_loopback_peer(peer_ip) and not (forwarded and self._is_proxy(peer_ip))
        host, agent, language, origin, site, content_type, accept, token = values
        if forwarded_host is not None:  # the Host the client sent, as a trusted proxy reports it
            host = forwarded_host
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
            local_peer=local_peer,
        )

    def _is_proxy(self, peer_ip: str) -> bool:
        ip = _peer_address(peer_ip)
        return ip is not None and self.proxies.is_trusted(ip)

    # -- before the application -----------------------------------------------------------------
    def begin(self, facts: RequestFacts, target: str) -> Steps[RequestContext]:
        """Decide whether the application runs, loading the session on the way. ``target``
        (the request target as sent) is read only when :meth:`may_redirect`."""
        ctx = RequestContext(facts)
        now = self.engine.clock.now()
        if not facts.client_ip and not self._blind_reported:
            self._report_blind(facts, now)
        if not self.hosts.allowed(facts.host):
            self._refuse_host(ctx, now)
            return ctx
        plain = self.plain_http(facts)
        if plain and self._refuse_plain_http(ctx, target, now):
            return ctx
        ctx.refusal = state_changing_refusal(facts.method, facts.path, self._state_changing)
        if ctx.refusal is not None:
            return ctx
        if plain and self._secure_cookie:
            # Served (redirects are off) but without the session layer: the cookie a client
            # sent in the clear is not read, and nothing is stored or set (Session.detached).
            return self._loaded(ctx, Loaded(self.engine.new_session(None, now, detached=True)), now)
        loaded = yield from self.engine.load(facts)
        if self.dbsc is not None:
            loaded = yield from self.dbsc.admit(facts, loaded, now)
        return self._loaded(ctx, loaded, now)

    def _refuse_host(self, ctx: RequestContext, now: float) -> None:
        """400 for a Host the policy does not name (never reflected anywhere); the first one
        of the process is reported with how to configure it."""
        valid = is_valid_host(ctx.facts.host)
        ctx.refusal = Refusal(400, "bad-request", "host-not-allowed" if valid else "invalid-host")
        if not self._host_reported:
            self._host_reported = True
            self.engine.emit(
                EventKind.HOST_REFUSED,
                ctx.facts,
                now,
                reason=ctx.refusal.reason,
                detail={"hint": HOW_TO_ALLOW},
            )

    def _report_proxy_headers(self, facts: RequestFacts) -> None:
        """Report, once per process, forwarding headers ignored from an untrusted peer."""
        self._proxy_reported = True
        self.engine.emit(
            EventKind.PROXY_HEADERS_IGNORED,
            facts,
            self.engine.clock.now(),
            reason="untrusted-peer",
            detail={"hint": proxy.PROXY_HINT},
        )

    def _report_blind(self, facts: RequestFacts, now: float) -> None:
        """Warn once that client addresses are missing while IP-based defences are on."""
        if ip_defences_blind(self.policy, facts.client_ip):
            self._blind_reported = True
            self.engine.emit(
                EventKind.CLIENT_ADDRESS_MISSING,
                facts,
                now,
                reason="no-client-address",
                detail={
                    "hint": "requests carry no client address (a Unix-socket proxy?): the "
                    "unknown-ID throttle and the network check are off. Serve over TCP, or "
                    'add "unix" to https.trusted_proxies so the proxy\'s forwarded header is read.'
                },
            )

    def plain_http(self, facts: RequestFacts) -> bool:
        """Whether the request came over plain HTTP outside a secure context: anything but
        HTTPS (as resolved through trusted proxies), except a loopback host asked by this
        machine itself while ``HttpsPolicy.allow_loopback_http`` is on."""
        return facts.scheme != "https" and not (
            self._loopback_http and facts.local_peer and is_loopback_host(facts.host)
        )

    def may_redirect(self, facts: RequestFacts) -> bool:
        """Whether :meth:`begin` may redirect this request to HTTPS, the only use of its
        ``target``: an adapter can pass ``""`` when not."""
        return self._redirects and self.plain_http(facts)

    def _refuse_plain_http(self, ctx: RequestContext, target: str, now: float) -> bool:
        """Refuse a plain-HTTP request to ``HttpsPolicy.refuse_paths`` or from a JSON client
        (``refuse_json``), redirects on or off, or redirect it to HTTPS (sets ``ctx.refusal``);
        ``False``: it is served, without a session layer."""
        facts = ctx.facts
        if not is_valid_host(facts.host):
            ctx.refusal = Refusal(400, "bad-request", "invalid-host")
            return True
        https = self.policy.https
        api = https.refuse_json and facts.wants_json
        if api or (https.refuse_paths and path_under(facts.path, https.refuse_paths)):
            ctx.refusal = https_required_refusal()
            return True
        if not self._redirects:
            return False
        location = https_redirect_target(facts, target, self._redirect_policy)
        if location is not None:
            self.engine.emit(EventKind.HTTPS_REDIRECT, facts, now)
            ctx.refusal = Refusal(308, "https-required", PLAIN_HTTP_REASON, location=location)
            return True
        return False

    def _loaded(self, ctx: RequestContext, loaded: Loaded, now: float) -> RequestContext:
        """With the session loaded: throttling, the CSP nonce, the cross-origin and token checks."""
        facts = ctx.facts
        ctx.session = loaded.session
        ctx.clear_cookie = loaded.clear_cookie
        ctx.tossed = loaded.tossed
        ctx.session_ended = loaded.ended
        if loaded.throttled:
            ctx.refusal = Refusal(429, "throttled", "unknown-session-ids", retry_after=60)
            return ctx
        ctx.nonce = headers.new_nonce() if self.headers is not None else ""
        if self._answered_first(ctx, now):
            return ctx
        cpol = self.policy.csrf
        if cpol.resource_isolation and self._isolation_refuses(ctx, now):
            return ctx
        if not cpol.enabled or facts.is_unchecked_method or csrf.is_exempt(facts.path, cpol):
            return ctx
        verdict = csrf.cross_origin_verdict(facts, cpol)
        if not verdict.ok and self._csrf_refuses(ctx, verdict, "cross-origin", now):
            ctx.refusal = Refusal(403, "cross-origin", verdict.reason)
            return ctx
        if not cpol.require_token:
            return ctx
        presented = facts.csrf_header
        if presented is None and facts.content_type.split(";", 1)[0].strip().lower() in FORM_TYPES:
            ctx.needs_form_token = True
            return ctx
        self.check_token(ctx, presented)
        return ctx

    def _answered_first(self, ctx: RequestContext, now: float) -> bool:
        """Whether the guard answers before any CSRF check: an endpoint of its own, or a
        refusal of a session a risk decision demanded to step up. Such a session reaches
        nothing but ``MonitorPolicy.reauth_paths`` (signing in again, or out) until the
        application calls ``reauthenticated()`` or signs the user in."""
        if self._endpoints and self._endpoint(ctx, now):
            return True
        session = ctx.session
        if session is None or not session.step_up_required:
            return False
        if path_under(ctx.facts.path, self._reauth_paths):
            return False
        redirect, wants_json = self.reauth_redirect, ctx.facts.wants_json
        ctx.refusal = reauthentication_refusal("step-up-required", redirect, wants_json)
        return True

    def _endpoint(self, ctx: RequestContext, now: float) -> bool:
        """Whether the guard answers this request itself, with no CSRF check: the CSP report
        receiver (refused at once, or its body read first: browsers send reports without
        cookies, and a forged one only adds an event) or DBSC's (a signed proof)."""
        facts, reports = ctx.facts, self.csp_reports
        if reports is not None and facts.path == reports.path:
            early = reports.admit(facts, now)
            ctx.dbsc_answer = early.answer() if early is not None else None
            ctx.csp_report = ctx.needs_form_token = early is None
            return True
        if self.dbsc is not None and self.dbsc.is_endpoint(facts):
            ctx.dbsc_answer = self.dbsc.endpoint(facts, ctx.session, now)
            return True
        return False

    def _isolation_refuses(self, ctx: RequestContext, now: float) -> bool:
        """Refuse a cross-site subresource load of a signed-in session's resource."""
        session = ctx.session
        if session is None or session.record is None or session.record.user_id is None:
            return False  # the record's user (before the app, and not a read by the app)
        verdict = csrf.isolation_verdict(ctx.facts)
        if verdict.ok or not self._csrf_refuses(ctx, verdict, "cross-origin", now):
            return False
        ctx.refusal = Refusal(403, "cross-origin", verdict.reason)
        return True

    def _csrf_refuses(
        self, ctx: RequestContext, verdict: csrf.Verdict, check: str, now: float
    ) -> bool:
        """Report a failed CSRF check; whether the request is refused for it (not in
        ``CsrfPolicy.report_only`` mode, where it is reported as ``csrf.would_block``)."""
        session = ctx.session
        enforce = not self.policy.csrf.report_only
        detail: dict[str, JSON] = {}
        kind = EventKind.CSRF_REFUSED
        if check == "cross-origin":
            kind, detail["header"] = EventKind.CROSS_ORIGIN_REFUSED, verdict.header
        if not enforce:
            kind = EventKind.CSRF_WOULD_BLOCK
            detail["check"] = check
        self.engine.emit(
            kind,
            ctx.facts,
            now,
            key=self._key(ctx),
            lineage=session.record.lineage if session is not None and session.record else "",
            user_id=session.record.user_id if session is not None and session.record else None,
            reason=verdict.reason,
            detail=detail,
        )
        return enforce

    @staticmethod
    def _key(ctx: RequestContext) -> str:
        s = ctx.session
        return s.record.key if s is not None and s.record is not None else ""

    def check_token(self, ctx: RequestContext, presented: str | None) -> None:
        """Verify the synchronizer token; sets ``ctx.refusal`` when it fails."""
        session = ctx.session
        secret = session.record.csrf_secret if session is not None and session.record else ""
        verdict = (
            csrf.token_verdict(presented, secret) if secret else csrf.Verdict(False, "no-session")
        )
        if not verdict.ok and self._csrf_refuses(ctx, verdict, "token", self.engine.clock.now()):
            ctx.refusal = Refusal(403, "csrf", verdict.reason)

    def check_form_body(self, ctx: RequestContext, body: bytes) -> None:
        """Check the buffered body: a form's CSRF token, or a CSP report (then answered)."""
        if ctx.csp_report:
            assert self.csp_reports is not None
            now = self.engine.clock.now()
            ctx.dbsc_answer = self.csp_reports.receive(ctx.facts, body, self.engine, now).answer()
            return
        token = csrf.extract_form_token(ctx.facts.content_type, body, self.policy.csrf.field_name)
        self.check_token(ctx, token)

    def body_too_large(self, ctx: RequestContext) -> None:
        ctx.refusal = Refusal(413, "too-large", "body-over-limit")

    def body_truncated(self, ctx: RequestContext) -> None:
        """The form body ended before it was complete (the client disconnected, or sent less
        than its Content-Length): the application never runs on part of a form."""
        if ctx.refusal is None:
            ctx.refusal = Refusal(400, "bad-request", "truncated-body")

    # -- after the application ------------------------------------------------------------------
    def commit(self, ctx: RequestContext) -> Steps[Outcome]:
        """Commit the request's session (see :meth:`Engine.commit`)."""
        assert ctx.session is not None
        if self.dbsc is not None:
            now = self.engine.clock.now()
            ctx.dbsc_offer = self.dbsc.offer(ctx.facts, ctx.session, now)
        return self.engine.commit(ctx.session, ctx.facts)

    def response_headers(
        self,
        ctx: RequestContext,
        outcome: Outcome | None,
        existing: AbstractSet[bytes],
        app_vary: bytes = b"",
    ) -> tuple[list[tuple[bytes, bytes]], AbstractSet[bytes]]:
        """Headers to add to the response and the app's header names to drop. ``existing``:
        the lower-case names of the app's headers, or an empty set when none of them is in
        :attr:`response_header_names` (the common response); ``app_vary``: its ``Vary`` values.
        ``outcome``: the commit's, or ``None`` when the guard answers instead of the app."""
        set_cookie = outcome.set_cookie if outcome is not None else None
        if set_cookie is None and ctx.clear_cookie:
            set_cookie = self.engine.cookies.clear()
        cookies = [] if set_cookie is None else [(b"set-cookie", set_cookie.encode("latin-1"))]
        if ctx.tossed:
            everywhere = self.engine.cookies.clear_everywhere(ctx.facts.host, ctx.facts.path)
            cookies.extend((b"set-cookie", c.encode("latin-1")) for c in everywhere)
        if self.headers is None:
            return self._with_dbsc(ctx, outcome, cookies), headers.NOTHING_TO_DROP
        no_store = self._no_store and _not_to_store(ctx, outcome, set_cookie is not None)
        clearing = _clears_site_data(ctx, outcome)
        add, drop = self.headers.response_headers(
            ctx.facts.scheme == "https",
            ctx.nonce or None,
            existing,
            no_store,
            clearing is not KEEP_SITE_DATA,
            keep_cookies=clearing is CLEAR_ALL_BUT_COOKIES,
            read=ctx.session is not None and ctx.session.read,
            app_vary=app_vary,
        )
        if cookies:
            add[:0] = cookies
        return self._with_dbsc(ctx, outcome, add), drop

    def _with_dbsc(
        self, ctx: RequestContext, outcome: Outcome | None, add: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        """``add`` with the DBSC offer of a login, or the bound cookie's removal when the
        session cookie goes."""
        if self.dbsc is None:
            return add
        if ctx.dbsc_offer is not None and outcome is not None and outcome.authenticated:
            add.append(ctx.dbsc_offer)
        gone = ctx.clear_cookie or (outcome is not None and outcome.logged_out)
        if gone and ctx.dbsc_answer is None:
            add.extend(self.dbsc.bound_cookie_gone(ctx.facts))
        return add

    def answer(
        self, ctx: RequestContext, outcome: Outcome
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers and body of a DBSC endpoint's answer (``ctx.dbsc_answer``) after the
        commit: its own headers and the guard's (a periodic rotation's new session cookie)."""
        answer = ctx.dbsc_answer
        assert answer is not None
        hdrs = list(answer.headers)
        add, drop = self.response_headers(ctx, outcome, {name for name, _ in hdrs})
        if drop:
            hdrs = [(n, v) for n, v in hdrs if n not in drop]
        hdrs.extend(add)
        hdrs.append((b"content-length", str(len(answer.body)).encode()))
        return answer.status, hdrs, answer.body

    def refuse(
        self, ctx: RequestContext, refusal: Refusal
    ) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The headers (the guard's own included) and body of a refusal."""
        hdrs, body = self.render(ctx, refusal)
        add, drop = self.response_headers(ctx, None, {name for name, _ in hdrs})
        if drop:
            hdrs = [(n, v) for n, v in hdrs if n not in drop]
        hdrs.extend(add)
        return hdrs, body

    def render(
        self, ctx: RequestContext, refusal: Refusal
    ) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """A refusal's own headers and body: the :data:`RefusalRenderer`'s page when there is
        one and it answers, else the default (redirects always get the default)."""
        custom = None
        if self.render_refusal is not None and refusal.status >= 400:
            custom = self._custom_page(ctx, refusal)
        return refusal.render(ctx.facts.wants_json, custom)

    def _custom_page(self, ctx: RequestContext, refusal: Refusal) -> RenderedRefusal | None:
        assert self.render_refusal is not None
        try:
            page = self.render_refusal(refusal, ctx)
            if page is None:
                return None
            if not isinstance(page, RenderedRefusal):
                raise TypeError(f"render_refusal returned {type(page).__name__}")
            page.check()
        except Exception:
            _log.warning("render_refusal failed; the default page was sent", exc_info=True)
            return None
        return page

    @staticmethod
    def refusal_for(ctx: RequestContext, exc: Raised, redirect: str | None) -> Refusal:
        """The answer to what the application raised (:func:`~.refusals.raised_refusal`)."""
        return raised_refusal(exc, redirect, ctx.facts.wants_json)

    def store_failed(self, facts: RequestFacts, exc: Exception, *, writing: bool) -> Refusal:
        """Report the first failure of an outage (not every request of it) and refuse."""
        now = self.engine.clock.now()
        if writing:
            self._write_outage = True
        if self.outage.failure(now):
            self.engine.emit(EventKind.STORE_UNAVAILABLE, facts, now, reason=str(exc)[:200])
        return Refusal(503, "store-unavailable", "session-store", retry_after=1)

    def commit_failed(
        self, ctx: RequestContext, exc: StoreUnavailable | SessionLimitReached
    ) -> Refusal:
        """The refusal sent instead of a response whose commit failed: the store was
        unreachable (503, :meth:`store_failed`), or a sign-in was refused at the per-user cap
        (409 ``session-limit``, reported as ``session.login_refused``). The refused sign-in
        wrote nothing: the browser keeps the session it came with, unchanged."""
        if isinstance(exc, StoreUnavailable):
            return self.store_failed(ctx.facts, exc, writing=True)
        session = ctx.session
        record = session.record if session is not None else None
        self.engine.emit(
            EventKind.LOGIN_REFUSED,
            ctx.facts,
            self.engine.clock.now(),
            key=record.key if record is not None else "",
            user_id=exc.user_id,
            reason="session-limit",
            detail={"limit": exc.limit},
        )
        return Refusal(409, "session-limit", "max-sessions")

    def store_ok(self, facts: RequestFacts, *, wrote: bool) -> None:
        """Report the end of an outage. When writes were failing, a successful read proves
        nothing (a read-only file, a full disk): only a successful write ends it. Nor does a
        request that wrote nothing and presented no ID (it asked the store nothing): taken for
        a recovery, it would report the outage's end and its start again."""
        if not self.outage.failing or (self._write_outage and not wrote):
            return
        if not wrote and not presents_id(facts.cookie_header, self.policy.cookie.name):
            return
        if self.outage.success():
            self._write_outage = False
            self.engine.emit(EventKind.STORE_RECOVERED, facts, self.engine.clock.now())


def _reauth_paths(paths: tuple[str, ...], redirect: str | None) -> tuple[str, ...]:
    """``MonitorPolicy.reauth_paths`` and the path of ``reauth_redirect`` when it names one
    on this site (a relative URL such as ``/login?next=/``)."""
    if redirect is None:
        return tuple(paths)
    parts = urlsplit(redirect)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return tuple(paths)
    return (*paths, parts.path)


def _not_to_store(ctx: RequestContext, outcome: Outcome | None, sets_cookie: bool) -> bool:
    """Whether no cache may keep the response: it sets or clears the cookie, carries a signed-in
    session or a page holding this session's CSRF token; also every answer to an unsafe method,
    whose outcome rests on the cross-origin check (Sec-Fetch-Site, Origin): no-store, not a
    Vary, keeps a cache from reusing it (as the refusals, and the signed-in responses the
    resource-isolation check judges). Other pages that read the session vary on Cookie."""
    session = ctx.session
    return (
        sets_cookie
        or (outcome is not None and outcome.authenticated)
        or not ctx.facts.is_unchecked_method
        # Without a stored record a token would have stored one: its cookie said it already.
        or (session is not None and session.record is not None and session.csrf_used)
    )


def _clears_site_data(ctx: RequestContext, outcome: Outcome | None) -> SiteData:
    """What the response tells the browser to forget (:func:`~.core.base.site_data_to_clear`),
    when it goes to a secure context (HTTPS, or plain HTTP to a loopback host), the only place a
    browser honours ``Clear-Site-Data``; elsewhere the deletion cookie alone does the work."""
    clearing = site_data_to_clear(outcome, ctx.clear_cookie, ctx.session_ended)
    if clearing is KEEP_SITE_DATA:
        return clearing
    facts = ctx.facts
    if facts.scheme == "https" or is_loopback_host(facts.host):
        return clearing
    return KEEP_SITE_DATA
