"""Cross-site request forgery: an origin check first, then a masked synchronizer token.

The origin check follows Go's ``net/http`` CrossOriginProtection. Browsers have told servers where
a request comes from for years (``Sec-Fetch-Site`` everywhere since 2023, ``Origin`` on unsafe
requests long before that), so the check needs no state and no cooperation from the page. It is a
browser defence only: a request with neither header did not come from a browser that a victim is
using, so it passes the origin check and meets the token instead.

The token catches what the origin check cannot see: a same-site sibling (``same-site`` is refused,
but a policy may trust it) and old browsers. It is the per-session secret masked afresh for every
rendering (see :mod:`sessionwarden.tokens`), so a compression oracle learns nothing from pages.

Every function here takes untrusted input and never raises on it: a junk header is a refusal, not
a 500.
"""

from __future__ import annotations

import functools
import urllib.parse
from dataclasses import dataclass

from .facts import RequestFacts
from .policy import CsrfPolicy, path_under
from .proxy import split_host
from .tokens import is_secret, unmask_token

__all__ = [
    "Verdict",
    "cross_origin_verdict",
    "extract_form_token",
    "is_exempt",
    "isolation_verdict",
    "origin_verdict",
    "token_verdict",
]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a request may proceed, with a stable machine-readable reason for logs and events.

    Passing reasons: ``disabled``, ``safe-method``, ``exempt-path``, ``same-origin-fetch``,
    ``user-initiated``, ``trusted-origin``, ``origin-matches-host``, ``no-browser-headers``,
    ``token-ok``. Refusals: ``cross-site-fetch``, ``origin-mismatch``, ``null-origin``,
    ``malformed-origin``, ``missing-browser-headers``, ``missing-token``, ``malformed-token``,
    ``bad-token``.
    """

    ok: bool
    reason: str

    @property
    def header(self) -> str:
        """The request header a cross-origin refusal rests on: ``sec-fetch-site``,
        ``origin``, or ``none`` (neither was sent)."""
        if self.reason in ("cross-site-fetch", "cross-site-subresource"):
            return "sec-fetch-site"
        if self.reason == "missing-browser-headers":
            return "none"
        return "origin"


_DEFAULT_PORTS = {"http": "80", "https": "443"}
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+-.")
_MAX_ORIGIN = 2048


def is_exempt(path: str, policy: CsrfPolicy) -> bool:
    """Whether ``path`` lies under an exempt prefix, matched on whole path segments.

    ``/hooks`` covers ``/hooks`` and ``/hooks/stripe`` but not ``/hooksmith``: a prefix names a
    subtree, and a string prefix would silently widen it. ``/hooks/`` covers the subtree below
    the slash only, not ``/hooks`` itself (a router may redirect ``/hooks`` there, but the request
    as sent is not under it: Go's CVE-2025-47910). A path with a ``.`` or ``..`` segment is never
    exempt, because a router or proxy that normalizes it could land outside the subtree.
    """
    return bool(policy.exempt_paths) and path_under(path, policy.exempt_paths)


def cross_origin_verdict(facts: RequestFacts, policy: CsrfPolicy) -> Verdict:
    """Refuse unsafe requests that a browser says, or shows, came from another origin.

    The steps, in order:

    1. ``GET``, ``HEAD`` and ``OPTIONS`` pass: they must not change state, so forging them gains
       nothing. ``TRACE``, safe by RFC 9110, is checked like a ``POST``, as in Go's
       ``CrossOriginProtection`` (a browser cannot send it, so only a forged one meets this).
    2. Exempt paths pass (webhooks authenticate by other means).
    3. ``Sec-Fetch-Site: same-origin`` passes, and so does ``none`` (the user typed the URL or
       used a bookmark: no other site was involved).
    4. Any other ``Sec-Fetch-Site`` (``same-site``, ``cross-site``, junk) is refused unless the
       ``Origin`` is trusted. ``same-site`` is refused too: a sibling subdomain is often less
       trustworthy (user content, a forgotten staging host) than the origin itself.
    5. No ``Sec-Fetch-Site`` (an older browser or a non-browser client): an ``Origin`` whose
       scheme, host and port equal this request's passes; ``null``, a different origin or a
       malformed one is refused unless trusted. The scheme counts, unlike in Go: a plain-HTTP
       page of this host is one an active network attacker can write. Default ports are equal
       to no port.
    6. Neither header: not a browser request, so nothing to forge; the token check decides.
       With ``missing_headers="refuse"`` such a request is refused when it carries cookies
       (CS-CSRF's fail-safe choice: an old browser, a browser extension, or a proxy that strips
       the headers); one without cookies has no credentials to abuse and still passes.
    """
    if not policy.enabled:
        return Verdict(True, "disabled")
    if facts.is_unchecked_method:
        return Verdict(True, "safe-method")
    if is_exempt(facts.path, policy):
        return Verdict(True, "exempt-path")
    verdict = origin_verdict(facts, policy)
    if (
        verdict.reason == "no-browser-headers"
        and policy.missing_headers == "refuse"
        and facts.cookie_header.strip()
    ):
        return Verdict(False, "missing-browser-headers")
    return verdict


def origin_verdict(facts: RequestFacts, policy: CsrfPolicy) -> Verdict:
    """Steps 3 to 6 of :func:`cross_origin_verdict`, for any method: whether the browser says,
    or shows, that the request came from this origin (or a trusted one). A WebSocket handshake
    is a ``GET`` that a page of any site may open with the user's cookies, so it is checked
    with this alone (and ``no-browser-headers`` is its caller's decision)."""
    site = (facts.sec_fetch_site or "").strip()
    origin = facts.origin
    if site:
        if site == "same-origin":
            return Verdict(True, "same-origin-fetch")
        if site == "none":
            return Verdict(True, "user-initiated")
        if _is_trusted(origin, policy):
            return Verdict(True, "trusted-origin")
        return Verdict(False, "cross-site-fetch")

    if origin is None:
        return Verdict(True, "no-browser-headers")
    if _is_trusted(origin, policy):
        return Verdict(True, "trusted-origin")
    origin = origin.strip()
    if origin == "null":
        # Sandboxed frames, data: URLs and some redirects: a page with no origin to vouch for.
        return Verdict(False, "null-origin")
    parsed = _parse_origin(origin)
    if parsed is None:
        return Verdict(False, "malformed-origin")
    if parsed == _host_tuple(facts.scheme.lower(), facts.host):
        return Verdict(True, "origin-matches-host")
    return Verdict(False, "origin-mismatch")


#: The request headers :func:`isolation_verdict` reads (``RequestFacts.extra``).
ISOLATION_HEADERS = ("sec-fetch-mode", "sec-fetch-dest")


def isolation_verdict(facts: RequestFacts) -> Verdict:
    """Fetch Metadata resource isolation (``CsrfPolicy.resource_isolation``): refuse a
    cross-site request that is not a navigation, a ``no-cors`` load or an ``<object>`` or
    ``<embed>``, whatever its method. Requests without Fetch Metadata pass (older browsers,
    non-browser clients), and so do CORS requests, which the app's CORS policy governs."""
    if (facts.sec_fetch_site or "").strip() != "cross-site":
        return Verdict(True, "not-cross-site")
    extra = facts.extra or {}
    mode = extra.get("sec-fetch-mode", "").strip()
    dest = extra.get("sec-fetch-dest", "").strip()
    if mode == "no-cors" or (mode == "navigate" and dest in ("object", "embed")):
        return Verdict(False, "cross-site-subresource")
    return Verdict(True, "navigation-or-cors")


def token_verdict(presented: str | None, secret: str) -> Verdict:
    """Check a presented masked token against the session's CSRF secret.

    Missing, malformed and wrong tokens get distinct reasons: a burst of ``malformed-token`` points
    at a broken client, a burst of ``bad-token`` at an attack or a stale page.
    """
    if not presented:
        return Verdict(False, "missing-token")
    candidate = unmask_token(presented)
    if candidate is None:
        return Verdict(False, "malformed-token")
    if not is_secret(candidate, secret):
        return Verdict(False, "bad-token")
    return Verdict(True, "token-ok")


# --- Form bodies -----------------------------------------------------------------------------

#: More fields than any real form has; a bound on parse work for a hostile body.
_MAX_FIELDS = 1000
_MAX_PARTS = 1000
#: Headers of one multipart part; real ones are a few dozen bytes.
_MAX_PART_HEADERS = 8192
_BCHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")


def extract_form_token(content_type: str, body: bytes, field_name: str) -> str | None:
    """The token field of an HTML form body, or ``None`` when there is none (or the body is junk).

    Only the two encodings an HTML form can produce are read; any other body (JSON, XML) must carry
    the token in the header. A duplicated field yields its first value. In multipart bodies a file
    part never counts, even when its name matches: a file's content is not a form value, and a
    file field named like the token must not satisfy the check by accident.
    """
    media_type, params = _parse_header_params(content_type)
    if media_type == "application/x-www-form-urlencoded":
        return _urlencoded_field(body, field_name)
    if media_type == "multipart/form-data":
        boundary = params.get("boundary")
        if boundary is None or not _valid_boundary(boundary):
            return None
        return _multipart_field(body, boundary.encode("ascii"), field_name)
    return None


def _urlencoded_field(body: bytes, field_name: str) -> str | None:
    try:
        fields = urllib.parse.parse_qs(
            body.decode("utf-8", "replace"),
            keep_blank_values=True,
            strict_parsing=True,
            max_num_fields=_MAX_FIELDS,
        )
    except ValueError:  # malformed pair or too many fields
        return None
    values = fields.get(field_name)
    return values[0] if values else None


def _valid_boundary(boundary: str) -> bool:
    # RFC 2046 section 5.1.1: 1 to 70 characters from a fixed set, not ending in a space.
    return 0 < len(boundary) <= 70 and _BCHARS.issuperset(boundary) and not boundary.endswith(" ")


def _multipart_field(body: bytes, boundary: bytes, field_name: str) -> str | None:
    """Scan the parts with plain substring searches: linear in the body, no backtracking."""
    delimiter = b"\r\n--" + boundary
    data = b"\r\n" + body  # the first delimiter need not follow a CRLF; make it uniform
    pos = data.find(delimiter)
    for _ in range(_MAX_PARTS):
        if pos < 0:
            return None
        start = pos + len(delimiter)
        if data.startswith(b"--", start):
            return None  # close delimiter
        line_end = data.find(b"\r\n", start)
        if line_end < 0:
            return None
        # RFC 2046 allows transport padding (linear white space) after the delimiter.
        if data[start:line_end].strip(b" \t"):
            return None
        nxt = data.find(delimiter, line_end)
        if nxt < 0:
            return None  # an unterminated part is a truncated body
        part = data[line_end + 2 : nxt]
        head_end = part.find(b"\r\n\r\n")
        if part.startswith(b"\r\n"):
            head, content = b"", part[2:]
        elif 0 <= head_end <= _MAX_PART_HEADERS:
            head, content = part[:head_end], part[head_end + 4 :]
        else:
            return None
        if _part_is_field(head, field_name):
            return content.decode("utf-8", "replace").strip("\r\n")
        pos = nxt
    return None


def _part_is_field(head: bytes, field_name: str) -> bool:
    for line in head.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep or name.strip().lower() != b"content-disposition":
            continue
        disposition, params = _parse_header_params(value.decode("utf-8", "replace"))
        return (
            disposition == "form-data"
            and params.get("name") == field_name
            and "filename" not in params
            and "filename*" not in params
        )
    return False


def _parse_header_params(value: str) -> tuple[str, dict[str, str]]:
    """``type; k=v; k="quoted"`` into the lower-cased type and its parameters (first wins).

    A small state machine rather than a split on ``;``: a quoted filename may hold ``;`` or
    ``name=`` and must not be read as a parameter of its own.
    """
    if len(value) > _MAX_PART_HEADERS:
        return "", {}
    items: list[str] = []
    buf: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            buf.append(ch)
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
            buf.append(ch)
        elif ch == ";" and not quoted:
            items.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    if quoted:
        return "", {}  # unterminated quote: nothing in this header can be trusted
    items.append("".join(buf))
    media_type = items[0].strip().lower()
    params: dict[str, str] = {}
    for item in items[1:]:
        key, sep, raw = item.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            continue
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1]
        params.setdefault(key, raw)
    return media_type, params


# --- Origins ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _trusted_set(origins: tuple[str, ...]) -> frozenset[str]:
    return frozenset(o.lower() for o in origins)


def _is_trusted(origin: str | None, policy: CsrfPolicy) -> bool:
    if not origin or not policy.trusted_origins:
        return False
    return origin.strip().lower() in _trusted_set(policy.trusted_origins)


def _parse_origin(origin: str) -> tuple[str, str, str] | None:
    """``scheme://host[:port]`` into (scheme, host, port), ``None`` for anything else.

    An Origin is serialized by the browser with no path, user info, query or fragment; a value that
    has one did not come from a browser and is treated as malformed rather than guessed at.
    """
    if len(origin) > _MAX_ORIGIN:
        return None
    scheme, sep, authority = origin.lower().partition("://")
    if not sep or not scheme or not _SCHEME_CHARS.issuperset(scheme):
        return None
    return _host_tuple(scheme, authority)


def _host_tuple(scheme: str, authority: str) -> tuple[str, str, str] | None:
    """Split ``host[:port]`` (bracketed IPv6 allowed) and fill in the scheme's default port."""
    parts = split_host(authority)
    if parts is None:
        return None
    host, port = parts
    if port:
        port = str(int(port))
        if port == _DEFAULT_PORTS.get(scheme):
            port = ""
    return scheme, host, port
