"""The CSP violation report receiver (``HeadersPolicy.csp_report_path``) on both adapters: the CSP
and ``Reporting-Endpoints`` point at it, both report formats become ``csp.violation`` events, and
junk, floods, oversized bodies, wrong methods and wrong types get 4xx, never a 500."""

from __future__ import annotations

import json

import pytest

from sessionwarden.events import EventKind
from sessionwarden.policy import HeadersPolicy, Policy

from .conftest import SECRET
from .two_adapters import KINDS, client

pytestmark = pytest.mark.anyio
ADAPTERS = pytest.mark.parametrize("kind", KINDS)
PATH = "/csp-reports"

LEGACY = {
    "csp-report": {
        "document-uri": "https://app.test/account?tab=2&secret=s3cr3t#frag",
        "referrer": "",
        "violated-directive": "script-src-elem",
        "effective-directive": "script-src-elem",
        "original-policy": "default-src 'self'",
        "disposition": "enforce",
        "blocked-uri": "https://evil.test/x.js?q=1",
        "line-number": 12,
        "source-file": "https://app.test/static/app.js",
        "status-code": 200,
    }
}
BATCH = [
    {
        "type": "csp-violation",
        "age": 10,
        "url": "https://app.test/account",
        "user_agent": "Mozilla/5.0",
        "body": {
            "documentURL": "https://app.test/account",
            "effectiveDirective": "img-src",
            "blockedURL": "https://tracker.test/p.gif",
            "disposition": "report",
            "statusCode": 200,
        },
    },
    {"type": "deprecation", "age": 1, "url": "https://app.test/", "body": {"id": "x"}},
    {
        "type": "csp-violation",
        "age": 3,
        "url": "https://app.test/",
        "body": {"documentURL": "https://app.test/", "effectiveDirective": "style-src-attr"},
    },
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _policy(**headers: object) -> Policy:
    return Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("app.test",),
        headers=HeadersPolicy(csp_report_path=PATH, **headers),  # type: ignore[arg-type]
    )


def _post(content_type: str) -> dict[str, str]:
    return {"content-type": content_type}


@ADAPTERS
async def test_csp_and_reporting_endpoints_name_the_receiver(kind: str) -> None:
    with client(kind, _policy()) as c:
        response = await c.request("GET", "/whoami")
        csp = response.headers["content-security-policy"]
        directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
        assert directives["report-uri"] == [PATH]
        assert directives["report-to"] == ["sessionwarden-csp"]
        assert directives["form-action"] == ["'self'"]
        assert response.headers["reporting-endpoints"] == f'sessionwarden-csp="{PATH}"'


@ADAPTERS
async def test_an_external_collector_wins_in_the_header(kind: str) -> None:
    with client(kind, _policy(csp_report_uri="https://reports.example/csp")) as c:
        response = await c.request("GET", "/whoami")
        assert (
            "report-uri https://reports.example/csp" in response.headers["content-security-policy"]
        )
        # The local receiver still answers.
        posted = await c.request(
            "POST",
            PATH,
            headers=_post("application/csp-report"),
            content=json.dumps(LEGACY).encode(),
        )
        assert posted.status_code == 204


@ADAPTERS
async def test_legacy_report_becomes_one_event(kind: str) -> None:
    with client(kind, _policy()) as c:
        response = await c.request(
            "POST",
            PATH,
            headers={**_post("application/csp-report"), "user-agent": "Firefox/1"},
            content=json.dumps(LEGACY).encode(),
        )
        assert response.status_code == 204 and response.content == b""
        assert "set-cookie" not in response.headers, "a report never creates a session"
        (event,) = c.recorder.of(EventKind.CSP_VIOLATION)
        assert event.reason == "script-src-elem"
        assert event.path == PATH and event.user_agent == "Firefox/1"
        assert event.detail == {
            "document": "https://app.test/account",  # query and fragment dropped
            "blocked": "https://evil.test/x.js",
            "directive": "script-src-elem",
            "violated": "script-src-elem",
            "disposition": "enforce",
            "source": "https://app.test/static/app.js",
            "line": 12,
            "status": 200,
        }
        assert "s3cr3t" not in json.dumps(event.to_dict())


@ADAPTERS
async def test_reporting_api_batch_becomes_one_event_per_violation(kind: str) -> None:
    with client(kind, _policy()) as c:
        response = await c.request(
            "POST",
            PATH,
            headers=_post("application/reports+json"),
            content=json.dumps(BATCH).encode(),
        )
        assert response.status_code == 204
        events = c.recorder.of(EventKind.CSP_VIOLATION)
        assert [e.reason for e in events] == ["img-src", "style-src-attr"]
        assert events[0].detail["blocked"] == "https://tracker.test/p.gif"
        assert events[0].detail["disposition"] == "report"


@ADAPTERS
async def test_cross_site_report_with_cookie_needs_no_csrf_token(kind: str) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        response = await c.request(
            "POST",
            PATH,
            headers={**_post("application/csp-report"), "sec-fetch-site": "cross-site"},
            content=json.dumps(LEGACY).encode(),
        )
        assert response.status_code == 204
        assert not c.recorder.of(EventKind.CROSS_ORIGIN_REFUSED)
        assert not c.recorder.of(EventKind.CSRF_REFUSED)
        assert len(c.recorder.of(EventKind.CSP_VIOLATION)) == 1


JUNK = [
    ("application/csp-report", b"not json"),
    ("application/csp-report", b"[1, 2]"),
    ("application/csp-report", b'{"csp-report": "x"}'),
    ("application/csp-report", b"\xff\xfe\x00"),
    ("application/reports+json", b'{"type": "csp-violation"}'),
    ("application/reports+json", b"[1]"),
    ("application/reports+json", b'[{"type": "csp-violation", "body": []}]'),
    ("application/json", b"[" * 20_000 + b"]" * 20_000),
    ("application/csp-report", b""),
]


@ADAPTERS
@pytest.mark.parametrize(("content_type", "body"), JUNK)
async def test_junk_gets_400_never_500(kind: str, content_type: str, body: bytes) -> None:
    with client(kind, _policy()) as c:
        response = await c.request("POST", PATH, headers=_post(content_type), content=body)
        assert response.status_code == 400
        assert response.json() == {"error": "malformed-report"}
        assert not c.recorder.of(EventKind.CSP_VIOLATION)


@ADAPTERS
async def test_wrong_method_type_and_size(kind: str) -> None:
    with client(kind, _policy(csp_report_max_bytes=1000)) as c:
        get = await c.request("GET", PATH)
        assert get.status_code == 405 and get.headers["allow"] == "POST"
        text = await c.request("POST", PATH, headers=_post("text/plain"), content=b"{}")
        assert text.status_code == 415
        big = {"csp-report": {"document-uri": "https://app.test/" + "a" * 2000}}
        large = await c.request(
            "POST", PATH, headers=_post("application/csp-report"), content=json.dumps(big).encode()
        )
        assert large.status_code == 413
        assert not c.recorder.of(EventKind.CSP_VIOLATION)


@ADAPTERS
async def test_fields_are_bounded_and_batches_capped(kind: str) -> None:
    many = [{"type": "csp-violation", "body": {"effectiveDirective": "img-src" + "x" * 1000}}] * 50
    with client(kind, _policy()) as c:
        response = await c.request(
            "POST",
            PATH,
            headers=_post("application/reports+json"),
            content=json.dumps(many).encode(),
        )
        assert response.status_code == 204
        events = c.recorder.of(EventKind.CSP_VIOLATION)
        assert len(events) == 20
        assert all(len(e.reason) == 512 for e in events)


@ADAPTERS
async def test_reports_are_rate_limited_per_client(kind: str) -> None:
    with client(kind, _policy(csp_report_limit_per_minute=3)) as c:
        body = json.dumps(LEGACY).encode()
        statuses = [
            (
                await c.request("POST", PATH, headers=_post("application/csp-report"), content=body)
            ).status_code
            for _ in range(5)
        ]
        assert statuses == [204, 204, 204, 429, 429]
        assert c.responses[-1].headers["retry-after"] == "60"
        assert len(c.recorder.of(EventKind.CSP_VIOLATION)) == 3
        c.clock.advance(61)
        again = await c.request("POST", PATH, headers=_post("application/csp-report"), content=body)
        assert again.status_code == 204


@pytest.mark.parametrize("path", ["csp", "/a b", "/r?x=1", "/r#x", "/r;x", "/é"])
def test_report_path_is_validated(path: str) -> None:
    with pytest.raises(ValueError, match=r"headers\.csp_report_path"):
        HeadersPolicy(csp_report_path=path)


def test_without_a_path_nothing_is_answered() -> None:
    policy = Policy(secret_keys=(SECRET,))
    assert policy.headers.report_uri is None
