"""Reading the session cookie out of a hostile ``Cookie`` header, and writing ``Set-Cookie``.

The parser is deliberately narrower than :mod:`http.cookies`: it looks for one exact,
case-sensitive name and returns every value sent under it. It never raises. A header that is too
large, badly quoted or full of junk simply yields no usable value.
"""

from __future__ import annotations

from .policy import MAX_COOKIE_AGE, CookiePolicy
from .proxy import split_host
from .tokens import is_well_formed_id

MAX_COOKIE_HEADER = 16_384
#: Bounds on the clearing headers of a tossing refusal: parent domains and path segments.
_MAX_DOMAINS = 5
_MAX_SEGMENTS = 3


def _domains_of(host: str) -> list[str]:
    """The host name and its parent domains, without the last label (a top-level domain no
    browser lets a cookie name); none for an address or an invalid host."""
    parts = split_host(host)
    if parts is None:
        return []
    name = parts[0].rstrip(".")
    if name.startswith("[") or name.replace(".", "").isdigit():
        return []
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)][:_MAX_DOMAINS]


def _path_prefixes(path: str) -> list[str]:
    """``/`` and the cookie paths that match ``path`` through its first few segments."""
    out = ["/"]
    segments = path.split("?", 1)[0].split("/")[1:]
    for k in range(1, min(len(segments), _MAX_SEGMENTS) + 1):
        prefix = "/" + "/".join(segments[:k])
        if prefix != "/" and prefix not in out:
            out.append(prefix)
        if k < len(segments) and prefix + "/" not in out:
            out.append(prefix + "/")
    return [p for p in out if p.isascii() and p.isprintable() and not any(c in p for c in ";, ")]


def cookie_values(header: str, name: str) -> list[str]:
    """Every distinct value sent for the cookie ``name`` (exact, case-sensitive match).

    More than one value means a second cookie of the same name was planted (cookie tossing from
    a sibling subdomain or a ``Path``-scoped shadow): the caller refuses them all.
    """
    if not header or len(header) > MAX_COOKIE_HEADER or name not in header:
        return []
    found: list[str] = []
    for piece in header.split(";"):
        cname, sep, value = piece.partition("=")
        if not sep or cname.strip(" \t") != name:
            continue
        value = value.strip(" \t")
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        if value not in found:
            found.append(value)
    return found


def presents_id(header: str, name: str) -> bool:
    """Whether the header presents a session ID that could exist, so loading the session reads
    the store (no cookie, or only malformed ones, is answered without a read)."""
    return any(is_well_formed_id(value) for value in cookie_values(header, name))


class CookieWriter:
    """``Set-Cookie`` values for the session cookie, attributes rendered once."""

    __slots__ = ("_attrs", "_clear", "_flags", "_name", "_policy")

    def __init__(self, policy: CookiePolicy) -> None:
        attrs = [f"Path={policy.path}"]
        if policy.domain:
            attrs.append(f"Domain={policy.domain}")
        if policy.secure:
            attrs.append("Secure")
        if policy.http_only:
            attrs.append("HttpOnly")
        attrs.append(f"SameSite={policy.same_site}")
        self._policy = policy
        self._name = policy.name
        self._attrs = "; " + "; ".join(attrs)
        self._flags = "".join(f"; {a}" for a in attrs if not a.startswith(("Path=", "Domain=")))
        expired = "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        self._clear = f"{policy.name}=; {expired}{self._attrs}"

    def issue(
        self, session_id: str, max_age: float | None = None, *, persistent: bool | None = None
    ) -> str:
        """The cookie for ``session_id``. A persistent cookie (``persistent``; ``None``: as
        the policy says) gets ``Max-Age``: ``max_age`` (the session's remaining absolute
        lifetime), never beyond :data:`MAX_COOKIE_AGE`."""
        if persistent is None:
            persistent = self._policy.persistent
        if persistent and max_age is not None:
            age = min(max(int(max_age), 0), MAX_COOKIE_AGE)
            return f"{self._name}={session_id}; Max-Age={age}{self._attrs}"
        return f"{self._name}={session_id}{self._attrs}"

    def clear(self) -> str:
        return self._clear

    def clear_everywhere(self, host: str, path: str) -> list[str]:
        """``Set-Cookie`` values that expire the name on every domain and path a planted
        cookie sent with this request could have: ``Domain=`` the host and each parent domain
        (a sibling or child host can set those), ``Path=`` ``/`` and the request path's leading
        segments. The host-only ``Path=/`` cookie is :meth:`clear`'s. Browsers that enforce the
        ``__Host-`` prefix ignore these for a ``__Host-`` name (nobody could have planted one);
        cookie jars that do not, delete the planted cookie."""
        expired = "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        tail = self._flags
        out: list[str] = []
        paths = _path_prefixes(path)
        for domain in _domains_of(host):
            for p in paths:
                out.append(f"{self._name}=; {expired}; Domain={domain}; Path={p}{tail}")
        for p in paths[1:]:
            out.append(f"{self._name}=; {expired}; Path={p}{tail}")
        return out
