"""The CSP violation report receiver: browsers post here what the Content-Security-Policy blocked.

Set ``HeadersPolicy.csp_report_path`` and the middleware answers ``POST`` on that path itself:
the CSP names it in ``report-uri`` (older browsers, ``application/csp-report``) and, through the
``Reporting-Endpoints`` header, in ``report-to`` (the Reporting API, ``application/reports+json``,
a batch of reports). Each violation becomes one ``csp.violation`` event.

Anyone can post anything here, so the receiver trusts nothing: the body is bounded
(``csp_report_max_bytes``, 413 beyond), each client address (IPv6: its /64) may post
``csp_report_limit_per_minute`` times a minute (429 beyond), a batch yields at most
:data:`MAX_REPORTS` events, every field is cut to :data:`MAX_FIELD` characters, URLs lose their
query and fragment (they may hold someone's secrets), and junk gets a 400, never a 500. No CSRF
check and no session: browsers send reports without cookies, and a forged report can only add an
event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from .dbsc_guard import DbscAnswer
from .events import Event, EventKind
from .facts import RequestFacts
from .policy import HeadersPolicy
from .records import JSON
from .throttle import UnknownIdThrottle

__all__ = ["MAX_FIELD", "MAX_REPORTS", "CspReports", "ReportAnswer", "violations"]

#: Events one request may produce (a Reporting API batch can hold many reports).
MAX_REPORTS = 20
#: Longest string kept from a report field.
MAX_FIELD = 512
#: What each field of the event's ``detail`` is read from: the ``report-uri`` name, then the
#: Reporting API's.
_FIELDS = (
    ("document", "document-uri", "documentURL"),
    ("blocked", "blocked-uri", "blockedURL"),
    ("directive", "effective-directive", "effectiveDirective"),
    ("violated", "violated-directive", "effectiveDirective"),
    ("disposition", "disposition", "disposition"),
    ("source", "source-file", "sourceFile"),
    ("line", "line-number", "lineNumber"),
    ("column", "column-number", "columnNumber"),
    ("status", "status-code", "statusCode"),
)
_URL_FIELDS = frozenset(("document", "blocked", "source"))
_LEGACY_TYPES = frozenset(("application/csp-report", "application/json"))
_BATCH_TYPE = "application/reports+json"


class Emitter(Protocol):
    """What sends the events (the engine)."""

    def emit(
        self,
        kind: EventKind,
        facts: RequestFacts | None,
        now: float,
        *,
        key: str = "",
        user_id: str | None = None,
        reason: str = "",
        detail: dict[str, JSON] | None = None,
    ) -> Event | None: ...


@dataclass(frozen=True, slots=True)
class ReportAnswer:
    """What the receiver answers: 204 (accepted), or a status and the reason of the refusal."""

    status: int
    reason: str = ""

    def body(self) -> bytes:
        """Empty for 204, else ``{"error": reason}``."""
        return json.dumps({"error": self.reason}).encode() if self.reason else b""

    def answer(self) -> DbscAnswer:
        """The answer as the guard sends an endpoint's (status, headers, body)."""
        hdrs: list[tuple[bytes, bytes]] = [(b"cache-control", b"no-store")]
        if self.status == 405:
            hdrs.append((b"allow", b"POST"))
        if self.status != 204:
            hdrs.append((b"content-type", b"application/json"))
        if self.status == 429:
            hdrs.append((b"retry-after", b"60"))
        return DbscAnswer(self.status, hdrs, self.body())


def _clean(name: str, value: JSON) -> JSON:
    """One field as the event keeps it: a bounded string (a URL without query or fragment) or
    a number; anything else is dropped (``None``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if not isinstance(value, str):
        return None
    if name in _URL_FIELDS:
        value = value.split("#", 1)[0].split("?", 1)[0]
    return value[:MAX_FIELD]


def _detail(body: dict[str, JSON], legacy: bool) -> dict[str, JSON]:
    detail: dict[str, JSON] = {}
    for name, old, new in _FIELDS:
        value = _clean(name, body.get(old if legacy else new))
        if value is not None and value != "":
            detail[name] = value
    return detail


def violations(content_type: str, body: bytes) -> list[dict[str, JSON]] | None:
    """The CSP violations in a report body, each as an event's ``detail``; ``None`` when the
    body is not a report of the given type at all (malformed JSON, the wrong shape)."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if content_type == _BATCH_TYPE:
        if not isinstance(parsed, list):
            return None
        found: list[dict[str, JSON]] = []
        for report in parsed[:MAX_REPORTS]:
            if not isinstance(report, dict) or not isinstance(report.get("body"), dict):
                return None
            if report.get("type") == "csp-violation":
                found.append(_detail(report["body"], legacy=False))
        return found
    if not isinstance(parsed, dict) or not isinstance(parsed.get("csp-report"), dict):
        return None
    return [_detail(parsed["csp-report"], legacy=True)]


class CspReports:
    """The receiver of one policy: where it listens, its limits, and what it answers."""

    __slots__ = ("_limit", "_max_bytes", "path")

    def __init__(self, policy: HeadersPolicy) -> None:
        assert policy.csp_report_path is not None
        self.path = policy.csp_report_path
        self._max_bytes = policy.csp_report_max_bytes
        self._limit = UnknownIdThrottle(policy.csp_report_limit_per_minute)

    def admit(self, facts: RequestFacts, now: float) -> ReportAnswer | None:
        """The answer before the body is read (wrong method, type, size, or rate), or ``None``
        when the body should be read and handed to :meth:`receive`."""
        if facts.method != "POST":
            return ReportAnswer(405, "method-not-allowed")
        if self._limit.hit(facts.client_ip, now):
            return ReportAnswer(429, "too-many-reports")
        if _media_type(facts.content_type) not in (*_LEGACY_TYPES, _BATCH_TYPE):
            return ReportAnswer(415, "unsupported-media-type")
        return None

    def receive(self, facts: RequestFacts, body: bytes, sink: Emitter, now: float) -> ReportAnswer:
        """Read the reports of ``body`` and emit one ``csp.violation`` event per violation."""
        if len(body) > self._max_bytes:
            return ReportAnswer(413, "too-large")
        found = violations(_media_type(facts.content_type), body)
        if found is None:
            return ReportAnswer(400, "malformed-report")
        for detail in found:
            directive = str(detail.get("directive") or detail.get("violated") or "")
            sink.emit(EventKind.CSP_VIOLATION, facts, now, reason=directive, detail=detail)
        return ReportAnswer(204)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()
