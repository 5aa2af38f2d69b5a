"""JSON-only endpoints: a JSON API must not accept what a cross-site form can send.

An HTML form (and a "simple" cross-origin ``fetch``) can only send
``application/x-www-form-urlencoded``, ``multipart/form-data`` or ``text/plain``, with no CORS
preflight. An endpoint that parses any body as JSON therefore accepts a forged cross-site form
whose ``text/plain`` body happens to be JSON. Requiring ``application/json`` (or an
``application/*+json`` type) makes such a request impossible without a preflight the browser
refuses. One line per endpoint:

* Starlette views: ``@json_only`` from :mod:`sessionwarden.integrations.starlette`;
* Flask views: ``@json_only`` from :mod:`sessionwarden.integrations.flask`;
* FastAPI: ``dependencies=[JsonOnly]`` from :mod:`sessionwarden.integrations.fastapi`;
* anything else: :func:`json_body_refusal` on the method and ``Content-Type``.

A request with more than one ``Content-Type`` field is refused too: the field is a singleton
(RFC 9110 8.3), two of them make the body's type ambiguous, and frameworks disagree about which
one counts (Starlette reads the first, Werkzeug's server keeps the last), so the check and the
parser could each believe a different one. No browser sends two.
"""

from __future__ import annotations

from collections.abc import Iterable

from .facts import UNCHECKED_METHODS
from .records import JSON

__all__ = [
    "UNSUPPORTED_MEDIA_TYPE",
    "is_json_content_type",
    "json_body_refusal",
    "single_content_type",
]

#: The 415 answer's JSON body.
UNSUPPORTED_MEDIA_TYPE: dict[str, JSON] = {
    "error": "unsupported-media-type",
    "reason": "json-only",
}


def is_json_content_type(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` names JSON: ``application/json`` or ``application/*+json``,
    parameters (``charset``) ignored, case-insensitive."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json":
        return True
    kind, _, sub = media.partition("/")
    return kind == "application" and sub.endswith("+json") and len(sub) > len("+json")


def single_content_type(values: Iterable[str]) -> str | None:
    """The request's ``Content-Type`` from every field it sent under that name: the one value,
    or ``None`` (not JSON) when there is none or more than one."""
    found = list(values)
    return found[0] if len(found) == 1 else None


def json_body_refusal(method: str, content_type: str | None) -> bool:
    """Whether a JSON-only endpoint must answer 415: a method the CSRF defences check (anything
    but ``GET``, ``HEAD`` and ``OPTIONS``) without a JSON body."""
    return method.upper() not in UNCHECKED_METHODS and not is_json_content_type(content_type)
