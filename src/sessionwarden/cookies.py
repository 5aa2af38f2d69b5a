"""Reading the session cookie out of a hostile ``Cookie`` header, and writing ``Set-Cookie``.

The parser is deliberately narrower than :mod:`http.cookies`: it looks for one exact,
case-sensitive name and returns every value sent under it. It never raises. A header that is too
large, badly quoted or full of junk simply yields no usable value.
"""

from __future__ import annotations

from .policy import CookiePolicy

MAX_COOKIE_HEADER = 16_384


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


class CookieWriter:
    """``Set-Cookie`` values for the session cookie, attributes rendered once."""

    __slots__ = ("_attrs", "_clear", "_name", "_policy")

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
        expired = "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        self._clear = f"{policy.name}=; {expired}{self._attrs}"

    def issue(self, session_id: str, max_age: float | None = None) -> str:
        if self._policy.persistent and max_age is not None:
            return f"{self._name}={session_id}; Max-Age={max(int(max_age), 0)}{self._attrs}"
        return f"{self._name}={session_id}{self._attrs}"

    def clear(self) -> str:
        return self._clear
