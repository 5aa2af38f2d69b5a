"""The few facts about a request that the rules need, in plain values.

Adapters build a :class:`RequestFacts` from their framework's request; the scheme and client IP in
it are already resolved through *trusted* proxies only (see :mod:`sessionwarden.proxy`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The methods the CSRF defences let through unchecked (no cross-origin check, no token):
#: Go's ``CrossOriginProtection`` list. ``TRACE`` is not among them: safe by RFC 9110 but
#: checked like a ``POST``, as Go does. The JSON-only check (:mod:`sessionwarden.content`) and
#: the ``no-store`` on answers that rest on the cross-origin check use this list too. A
#: state-changing route refuses a different set: :data:`sessionwarden.methods.SAFE_METHODS`.
UNCHECKED_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(slots=True)
class RequestFacts:
    method: str  # upper-case
    scheme: str  # "http" or "https", resolved through trusted proxies only
    #: The Host header (host[:port]), lower-case, "" when absent; from a trusted proxy the host
    #: it forwarded (X-Forwarded-Host or Forwarded host=) when it sent one.
    host: str
    path: str
    client_ip: str  # resolved through trusted proxies only; "" when unknown
    cookie_header: str = ""  # every Cookie header of the request, joined with "; "
    user_agent: str = ""
    accept_language: str = ""
    origin: str | None = None
    sec_fetch_site: str | None = None
    content_type: str = ""
    accept: str = ""
    csrf_header: str | None = None  # the value of the configured CSRF token header
    #: Headers read for optional features only (DBSC), by lower-case name; ``None`` when none.
    extra: dict[str, str] | None = None
    #: The direct peer is this machine and not a trusted proxy (the loopback HTTP exemption).
    local_peer: bool = False

    @property
    def is_unchecked_method(self) -> bool:
        """Whether the CSRF defences let this method through unchecked (``GET``, ``HEAD``,
        ``OPTIONS``; not ``TRACE``)."""
        return self.method in UNCHECKED_METHODS

    @property
    def wants_json(self) -> bool:
        return "application/json" in self.accept or self.content_type.startswith("application/json")
