"""State changes through unsafe methods only (ASVS 5 3.5.3).

A ``GET`` can be triggered cross-site by an ``<img>``, a link or a prefetch, and the CSRF check
lets ``GET``, ``HEAD`` and ``OPTIONS`` through by design. A route that changes state must
therefore refuse them, and ``TRACE``: 405 with ``Allow`` before the view runs. One decision,
offered three ways:

* for paths the application names in ``CsrfPolicy.state_changing_paths``, the middleware
  refuses a safe method before it loads the session (no cookie, no store access);
* Starlette views: ``@unsafe_methods_only`` from :mod:`sessionwarden.integrations.starlette`;
  Flask views: ``@unsafe_methods_only`` from :mod:`sessionwarden.integrations.flask`;
  FastAPI: ``dependencies=[UnsafeMethodsOnly]`` from :mod:`sessionwarden.integrations.fastapi`.
"""

from __future__ import annotations

from .policy import path_under
from .records import JSON
from .refusals import Refusal

__all__ = [
    "ALLOW",
    "METHOD_NOT_ALLOWED",
    "SAFE_METHODS",
    "safe_method_refused",
    "state_changing_refusal",
]

#: The methods a state-changing route refuses: RFC 9110's safe methods, which never
#: legitimately change state. ``TRACE`` is among them, though the CSRF check, like Go's, does
#: check it (:data:`sessionwarden.facts.UNCHECKED_METHODS`).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: The ``Allow`` header of the 405: the methods a state-changing route may be called with.
ALLOW = "POST, PUT, PATCH, DELETE"
#: The 405 answer's JSON body.
METHOD_NOT_ALLOWED: dict[str, JSON] = {
    "error": "method-not-allowed",
    "reason": "state-changing-route",
}


def safe_method_refused(method: str) -> bool:
    """Whether a state-changing route refuses ``method``: ``GET``, ``HEAD``, ``OPTIONS`` and
    ``TRACE`` (any case)."""
    return method.upper() in SAFE_METHODS


def state_changing_refusal(method: str, path: str, paths: tuple[str, ...]) -> Refusal | None:
    """The 405 for a safe ``method`` on a path under one of ``paths``, else ``None``."""
    if not paths or not safe_method_refused(method) or not path_under(path, paths):
        return None
    return Refusal(
        405, str(METHOD_NOT_ALLOWED["error"]), str(METHOD_NOT_ALLOWED["reason"]), allow=ALLOW
    )
