"""Security headers: everything static is computed once, the per-response work is a few lookups.

Headers are ``(name, value)`` byte pairs with lower-case names, as ASGI carries them; the WSGI
adapter decodes them as latin-1. An application's own header wins wherever it set one (it knows
its pages better), with one exception: ``Cache-Control`` on a response that carries a signed-in
session is always ``no-store``, because a cached authenticated page is served to the next user of
a shared computer or proxy regardless of what the application intended. A response built from
the session that is not ``no-store`` gets ``Vary: Cookie``, added to the app's own ``Vary``.
"""

from __future__ import annotations

import binascii
import os
import secrets
from collections import deque
from collections.abc import Set
from typing import NamedTuple

from .policy import HeadersPolicy

__all__ = ["CspBuilder", "HeaderPlan", "SecurityHeaders", "new_nonce"]

#: 144 bits: a multiple of three bytes, so every nonce is 24 base64 characters without padding
#: and a batch is encoded at once (the CSP spec asks for at least 128 bits).
NONCE_BYTES = 18
_NONCE_CHARS_LEN = NONCE_BYTES // 3 * 4
_NONCE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_DIRECTIVE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz-")
# Characters that would end a source, a directive or the header itself.
_FORBIDDEN_IN_SOURCE = frozenset(' \t\r\n;,"\x00\x0b\x0c')
_PLACEHOLDER = "\x00"
_REPORT_GROUP = "sessionwarden-csp"


class _Nonce(str):
    """A nonce from :func:`new_nonce`: base64 of CSPRNG output, so it fits the CSP grammar by
    construction and :meth:`CspBuilder.value` need not check it again."""

    __slots__ = ()


_NONCE_BATCH = 64
#: Nonces drawn from the CSPRNG but not handed out yet. ``popleft`` is atomic, so two threads
#: never get the same one; a forked child forgets its parent's (they would repeat there).
_unused_nonces: deque[_Nonce] = deque()
os.register_at_fork(after_in_child=_unused_nonces.clear)


def new_nonce() -> str:
    """A fresh CSP nonce: 144 bits from the CSPRNG, standard base64 as the CSP grammar wants.

    One per response, never reused: a nonce an attacker has seen once is a key to inject scripts.
    The operating system's generator is asked for a batch at a time: one system call per
    :data:`_NONCE_BATCH` responses instead of one each.
    """
    try:
        return _unused_nonces.popleft()
    except IndexError:
        return _draw_nonces()


def _draw_nonces() -> str:
    """Refill the batch; returns one nonce of it (threads refilling at once each add their own
    fresh batch, so nothing is handed out twice)."""
    # NONCE_BYTES is a multiple of three: the batch's base64 is the nonces' base64 end to end.
    raw = secrets.token_bytes(NONCE_BYTES * _NONCE_BATCH)
    text = binascii.b2a_base64(raw, newline=False).decode()
    fresh = [
        _Nonce(text[i : i + _NONCE_CHARS_LEN]) for i in range(0, len(text), _NONCE_CHARS_LEN)
    ]
    _unused_nonces.extend(fresh[1:])
    return fresh[0]


#: The base policy. Scripts run only with this response's nonce; ``'strict-dynamic'`` lets them
#: load their own dependencies, so no host allow-list is needed (host allow-lists are routinely
#: bypassed through JSONP endpoints and script gadgets on the allowed hosts).
_DEFAULTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("default-src", ("'self'",)),
    ("script-src", (f"'nonce-{_PLACEHOLDER}'", "'strict-dynamic'")),
    ("style-src", ("'self'", f"'nonce-{_PLACEHOLDER}'")),
    ("object-src", ("'none'",)),
    ("base-uri", ("'none'",)),
    ("frame-ancestors", ("'none'",)),
    ("form-action", ("'self'",)),
)


def _without_nonce(sources: list[str]) -> list[str]:
    """The sources for a response with no nonce (a redirect, JSON, a static file).

    Nothing there can carry a nonce, and ``'strict-dynamic'`` without one allows no script at all,
    so both become ``'self'``: this origin's own files, such as ``sessionwarden.js``.
    """
    out: list[str] = []
    for source in sources:
        if _PLACEHOLDER in source or source == "'strict-dynamic'":
            source = "'self'"
        if source not in out:
            out.append(source)
    return out


def _check_source(where: str, value: str) -> None:
    if (
        not value
        or not value.isascii()
        or any(c in _FORBIDDEN_IN_SOURCE or not c.isprintable() for c in value)
    ):
        raise ValueError(f"{where}: {value!r} is not a single CSP source expression")


def _directives(policy: HeadersPolicy) -> dict[str, list[str]]:
    """The defaults with ``csp_extra`` merged in and the report endpoint added (checked)."""
    directives = {name: list(sources) for name, sources in _DEFAULTS}
    for name, extra in policy.csp_extra.items():
        if not name or not _DIRECTIVE_CHARS.issuperset(name):
            raise ValueError(f"headers.csp_extra: {name!r} is not a CSP directive name")
        if isinstance(extra, str):
            raise ValueError(f"headers.csp_extra[{name!r}]: give a tuple of sources")
        _add_sources(directives.setdefault(name, []), name, extra)
    for name, sources in directives.items():
        if not sources:
            directives[name] = ["'none'"]
    if policy.report_uri is not None:
        _check_source("headers.csp_report_uri", policy.report_uri)
        # report-uri for browsers without the Reporting API, report-to for those with it.
        directives["report-uri"] = [policy.report_uri]
        directives["report-to"] = [_REPORT_GROUP]
    return directives


def _add_sources(sources: list[str], name: str, extra: tuple[str, ...]) -> None:
    """Add ``extra`` to one directive's sources; a real source replaces a lone ``'none'``."""
    for source in extra:
        _check_source(f"headers.csp_extra[{name!r}]", source)
        if source == "'none'":
            continue
        if sources == ["'none'"]:
            sources.clear()
        if source not in sources:
            sources.append(source)


class CspBuilder:
    """A Content-Security-Policy with the nonce left as the only per-response part.

    ``HeadersPolicy.csp_extra`` adds sources to a directive (or adds a directive); adding to a
    directive whose default is ``'none'`` replaces the ``'none'``, since browsers ignore a
    ``'none'`` that shares a list with other sources. In ``script-src`` extra hosts only matter to
    browsers without ``'strict-dynamic'`` support; nonce-bearing scripts are what run.
    """

    __slots__ = ("_name", "_nonce_parts", "_static")

    def __init__(self, policy: HeadersPolicy) -> None:
        directives = _directives(policy)

        def render(ds: dict[str, list[str]]) -> str:
            return "; ".join(f"{name} {' '.join(sources)}" for name, sources in ds.items())

        self._nonce_parts = tuple(p.encode("ascii") for p in render(directives).split(_PLACEHOLDER))
        self._static = render({n: _without_nonce(s) for n, s in directives.items()}).encode()
        self._name = (
            b"content-security-policy-report-only"
            if policy.csp_report_only
            else b"content-security-policy"
        )

    @property
    def header_name(self) -> bytes:
        return self._name

    def value(self, nonce: str | None) -> bytes:
        """The header value for one response; ``None``: a response that renders no nonce."""
        if nonce is None:
            return self._static
        if type(nonce) is not _Nonce and (not nonce or not _NONCE_CHARS.issuperset(nonce)):
            # A nonce is spliced into the header verbatim; refuse what could end a directive.
            raise ValueError("nonce must come from new_nonce()")
        return nonce.encode("ascii").join(self._nonce_parts)


class HeaderPlan(NamedTuple):
    """What to do to a response's headers: add ``add``, and first remove any named in ``drop``."""

    add: list[tuple[bytes, bytes]]
    drop: Set[bytes]


_CACHE_CONTROL = b"cache-control"
_CLEAR_SITE_DATA = b"clear-site-data"
_HSTS = b"strict-transport-security"
_NO_STORE = (_CACHE_CONTROL, b"no-store")
#: Cache-Control fields aimed at shared caches alone (RFC 9213 ``CDN-Cache-Control``, the older
#: ``Surrogate-Control``): a CDN that honours one ignores ``Cache-Control``, so a response that
#: must not be stored keeps none of them.
_TARGETED_CACHE_CONTROL = frozenset((b"cdn-cache-control", b"surrogate-control"))
_CACHE_FIELDS = frozenset((_CACHE_CONTROL, *_TARGETED_CACHE_CONTROL))
#: The ``drop`` of a plan that drops nothing (shared: no new set per response).
NOTHING_TO_DROP: frozenset[bytes] = frozenset()
_VARY = b"vary"
_VARY_COOKIE = (_VARY, b"Cookie")
_DROP_VARY = frozenset((_VARY,))


def merged_vary(app_vary: bytes) -> bytes | None:
    """The app's ``Vary`` value with ``Cookie`` appended, as one field; ``None`` when it already
    names ``Cookie`` or is ``*`` (it stays as it is)."""
    names = [n.strip().lower() for n in app_vary.split(b",")]
    if b"cookie" in names or b"*" in names:
        return None
    kept = b", ".join(n.strip() for n in app_vary.split(b",") if n.strip())
    return kept + b", Cookie" if kept else b"Cookie"


class SecurityHeaders:
    """The hardening headers of :class:`HeadersPolicy`, precomputed at start-up.

    ``HeadersPolicy.enabled=False`` turns off everything this class adds, ``no-store`` and
    ``Clear-Site-Data`` included.
    """

    __slots__ = (
        "_base",
        "_clear_site_data",
        "_clear_site_data_but_cookies",
        "_csp",
        "_enabled",
        "_hsts",
        "_no_store",
        "_static",
        "names",
    )

    def __init__(self, policy: HeadersPolicy) -> None:
        self._enabled = policy.enabled
        static: list[tuple[bytes, bytes]] = [(b"x-content-type-options", b"nosniff")]
        optional = (
            (b"referrer-policy", policy.referrer_policy),
            (b"cross-origin-opener-policy", policy.cross_origin_opener_policy),
            (b"x-frame-options", policy.frame_options),
            (b"cross-origin-resource-policy", policy.cross_origin_resource_policy),
            (b"permissions-policy", policy.permissions_policy),
        )
        for name, value in optional:
            if value is not None:
                _check_header_value(name, value)
                static.append((name, value.encode("ascii")))
        if policy.csp and policy.report_uri is not None:
            _check_source("headers.csp_report_uri", policy.report_uri)
            endpoint = f'{_REPORT_GROUP}="{policy.report_uri}"'.encode("ascii")
            static.append((b"reporting-endpoints", endpoint))
        self._static = tuple(static)

        hsts = f"max-age={policy.hsts_max_age}"
        if policy.hsts_include_subdomains:
            hsts += "; includeSubDomains"
        if policy.hsts_preload:
            hsts += "; preload"
        self._hsts = (_HSTS, hsts.encode("ascii"))
        self._csp = CspBuilder(policy) if policy.csp else None
        self._no_store = policy.no_store
        kinds = ['"storage"'] + (['"cache"'] if policy.clear_site_data_cache else [])
        on = policy.clear_site_data_on_logout
        self._clear_site_data = (
            (_CLEAR_SITE_DATA, ", ".join(['"cookies"', *kinds]).encode("ascii")) if on else None
        )
        #: Beside a new session's cookie, which ``"cookies"`` would erase (applied after it).
        self._clear_site_data_but_cookies = (
            (_CLEAR_SITE_DATA, ", ".join(kinds).encode("ascii")) if on else None
        )
        # The unconditional part of a response's headers, over HTTP and over HTTPS, and every
        # name this class may add: when the app set none of them, nothing needs a lookup.
        self._base = (self._static, (*self._static, self._hsts))
        names = {name for name, _ in self._static}
        names.update((_HSTS, _CLEAR_SITE_DATA, _VARY, *_CACHE_FIELDS))
        if self._csp is not None:
            names.add(self._csp.header_name)
        #: Every header name this class may add (lower-case).
        self.names = frozenset(names)

    def response_headers(
        self,
        https: bool,
        nonce: str | None,
        existing: Set[bytes],
        no_store: bool,
        logout: bool,
        *,
        keep_cookies: bool = False,
        read: bool = False,
        app_vary: bytes = b"",
    ) -> HeaderPlan:
        """The headers to add to one response, given the lower-case names the app already set.

        The one function that computes a response's security headers. ``https``: the response
        goes out over HTTPS (HSTS is ignored over HTTP, and sending it there only advertises a
        downgrade). ``nonce``: this response's CSP nonce, ``None`` when it renders none.
        ``existing``: the lower-case header names the app set (an app's own header wins, except
        the cache fields under ``no_store``). ``no_store``: the response carries a signed-in
        session or a new session cookie; the app's ``Cache-Control`` (and the CDN-targeted
        ``CDN-Cache-Control`` and ``Surrogate-Control``) is dropped for ``no-store``.
        ``logout``: the session just ended; the browser is told to forget cookies and storage
        (``keep_cookies``: storage only, the response sets a new session's cookie).
        ``read``: the app read the session (its data or user), so a response that is not
        ``no-store`` gets ``Vary: Cookie`` (a shared cache must not hand one browser's anonymous
        cart to another); ``app_vary``: the app's own ``Vary`` values, joined, which the one
        ``Vary`` field sent then extends.

        When the app set none of :attr:`names` (the common response) the answer is the
        precomputed headers with the nonce spliced into the CSP: no lookup per header.
        """
        if not self._enabled:
            return HeaderPlan([], NOTHING_TO_DROP)
        clear = None
        if logout:
            clear = self._clear_site_data_but_cookies if keep_cookies else self._clear_site_data
        no_store = no_store and self._no_store
        if not self.names.isdisjoint(existing):
            vary = app_vary if _VARY in existing else None
            return self._beside_apps(https, nonce, existing, no_store, clear, read, vary)
        add = [*self._base[https]]
        csp = self._csp
        if csp is not None:
            add.append((csp.header_name, csp.value(nonce)))
        if no_store:
            add.append(_NO_STORE)
        elif read:
            add.append(_VARY_COOKIE)
        if clear is not None:
            add.append(clear)
        return HeaderPlan(add, NOTHING_TO_DROP)

    def _beside_apps(
        self,
        https: bool,
        nonce: str | None,
        existing: Set[bytes],
        no_store: bool,
        clear: tuple[bytes, bytes] | None,
        read: bool,
        app_vary: bytes | None,
    ) -> HeaderPlan:
        """:meth:`response_headers` when the app set some of our headers: each is looked up."""
        add = [h for h in self._static if h[0] not in existing]
        if https and _HSTS not in existing:
            add.append(self._hsts)
        csp = self._csp
        if csp is not None and csp.header_name not in existing:
            add.append((csp.header_name, csp.value(nonce)))
        drop: Set[bytes] = NOTHING_TO_DROP
        if no_store:
            add.append(_NO_STORE)
            drop = _CACHE_FIELDS & existing
        elif read and app_vary is None:
            add.append(_VARY_COOKIE)
        elif read and app_vary is not None and (vary := merged_vary(app_vary)) is not None:
            add.append((_VARY, vary))  # one field: the app's names, then Cookie
            drop = _DROP_VARY
        if clear is not None and _CLEAR_SITE_DATA not in existing:
            add.append(clear)
        return HeaderPlan(add, drop)


def _check_header_value(name: bytes, value: str) -> None:
    if not value or not value.isascii() or any(not c.isprintable() for c in value):
        raise ValueError(f"headers: {name.decode()} value {value!r} is not a valid header value")
