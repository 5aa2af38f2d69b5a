"""The ``next`` parameter of a sign-in redirect, made and read safely (no framework imported).

``login_required`` sends an anonymous browser to the sign-in page with where it was going as
``?next=/path?query``. The value is always a path on this site: an absolute URL
(``https://evil.example``), a scheme-relative one (``//evil.example``) or a backslash variant
(``/\\evil.example``, which browsers read as ``//``) is never produced, and :func:`safe_next`
refuses them when the sign-in view reads the parameter back, so the redirect after sign-in cannot
become an open redirect.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

__all__ = ["login_location", "safe_next"]

_MAX_NEXT = 2048


def safe_next(value: object, default: str = "/") -> str:
    """``value`` when it is a path on this site (``/account?tab=2``), else ``default``."""
    if not isinstance(value, str) or not value or len(value) > _MAX_NEXT:
        return default
    if not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in value):
        return default
    try:
        parts = urlsplit(value)
    except ValueError:
        return default
    if parts.scheme or parts.netloc:
        return default
    return value


def login_location(login_url: str, path: str, query: str = "") -> str:
    """``login_url`` with ``next`` naming ``path`` (and its ``query``) when that is safe."""
    target = f"{path}?{query}" if query else path
    checked = safe_next(target, default="")
    if not checked:
        return login_url
    separator = "&" if "?" in login_url else "?"
    return f"{login_url}{separator}{urlencode({'next': checked})}"
