"""CSRF options for roll-out and strictness, on both adapters: what happens to an unsafe request
that carries neither ``Sec-Fetch-Site`` nor ``Origin`` (``CsrfPolicy.missing_headers``), and the
report-only mode (``CsrfPolicy.report_only``) that lets would-be refusals through and reports
them. Every refusal's event names the header it rests on and never a token."""

from __future__ import annotations

import pytest

from sessionwarden.events import EventKind
from sessionwarden.policy import CsrfPolicy, Policy

from .conftest import SECRET
from .two_adapters import KINDS, client

pytestmark = pytest.mark.anyio
ADAPTERS = pytest.mark.parametrize("kind", KINDS)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _policy(**csrf: object) -> Policy:
    return Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("app.test",),
        csrf=CsrfPolicy(**csrf),  # type: ignore[arg-type]
    )


# -- both headers missing ---------------------------------------------------------------------


@ADAPTERS
async def test_bare_post_with_token_passes_by_default(kind: str) -> None:
    """Go's choice (the default): no browser sent it, so the token decides."""
    with client(kind, _policy()) as c:
        await c.login()
        token = await c.token()
        ok = await c.request("POST", "/transfer", headers={"x-csrf-token": token})
        assert ok.status_code == 200 and ok.text == "transfer done"
        no_token = await c.request("POST", "/transfer")
        assert no_token.status_code == 403
        assert [e.reason for e in c.recorder.of(EventKind.CSRF_REFUSED)] == ["missing-token"]


@ADAPTERS
async def test_bare_post_with_cookie_is_refused_when_configured(kind: str) -> None:
    with client(kind, _policy(missing_headers="refuse")) as c:
        await c.login()
        token = await c.token()
        refused = await c.request(
            "POST", "/transfer", headers={"x-csrf-token": token, "accept": "application/json"}
        )
        assert refused.status_code == 403
        assert refused.json() == {"error": "cross-origin", "reason": "missing-browser-headers"}
        assert token not in refused.text
        (event,) = c.recorder.of(EventKind.CROSS_ORIGIN_REFUSED)
        assert event.reason == "missing-browser-headers"
        assert event.detail == {"header": "none"}
        assert event.user_id == "alice"
        # A browser's same-origin request still passes.
        same = await c.request(
            "POST", "/transfer", headers={"x-csrf-token": token, "sec-fetch-site": "same-origin"}
        )
        assert same.status_code == 200
        assert (await c.request("GET", "/whoami")).json() == {"user": "alice"}


@ADAPTERS
async def test_bare_post_without_cookies_is_not_a_cross_origin_refusal(kind: str) -> None:
    """A client without cookies has no ambient credentials to abuse: ``refuse`` leaves it to
    the rest of the checks (here no token is required, so it passes)."""
    with client(kind, _policy(missing_headers="refuse", require_token=False)) as c:
        anonymous = await c.request("POST", "/transfer", send_cookie=False)
        assert anonymous.status_code == 200
        await c.login()
        with_cookie = await c.request("POST", "/transfer")
        assert with_cookie.status_code == 403
        assert c.recorder.of(EventKind.CROSS_ORIGIN_REFUSED)[0].reason == (
            "missing-browser-headers"
        )


def test_missing_headers_is_validated() -> None:
    with pytest.raises(ValueError, match=r"csrf\.missing_headers"):
        CsrfPolicy(missing_headers="block")  # type: ignore[arg-type]


# -- report-only and enforce ------------------------------------------------------------------


@ADAPTERS
async def test_report_only_lets_a_cross_site_post_through_and_reports_it(kind: str) -> None:
    with client(kind, _policy(report_only=True)) as c:
        await c.login()
        response = await c.request("POST", "/transfer", headers={"sec-fetch-site": "cross-site"})
        assert response.status_code == 200 and response.text == "transfer done"
        would = c.recorder.of(EventKind.CSRF_WOULD_BLOCK)
        assert [(e.reason, e.detail) for e in would] == [
            ("cross-site-fetch", {"header": "sec-fetch-site", "check": "cross-origin"}),
            ("missing-token", {"check": "token"}),
        ]
        assert all(e.user_id == "alice" and e.path == "/transfer" for e in would)
        assert not c.recorder.of(EventKind.CSRF_REFUSED)
        assert not c.recorder.of(EventKind.CROSS_ORIGIN_REFUSED)


@ADAPTERS
async def test_report_only_form_post_reaches_the_app_with_its_body(kind: str) -> None:
    """A form with a wrong token: reported, and the app still reads the whole body."""
    with client(kind, _policy(report_only=True)) as c:
        await c.login()
        token = await c.token()
        body = b"csrf_token=" + token[:-2].encode() + b"xx&to=bob&amount=5"
        response = await c.request(
            "POST",
            "/transfer",
            headers={
                "sec-fetch-site": "same-origin",
                "content-type": "application/x-www-form-urlencoded",
            },
            content=body,
        )
        assert response.status_code == 200
        would = c.recorder.of(EventKind.CSRF_WOULD_BLOCK)
        assert [e.reason for e in would] in (["bad-token"], ["malformed-token"])
        for event in c.recorder.events:
            assert token not in str(event.to_dict())


@ADAPTERS
@pytest.mark.parametrize(
    ("headers", "reason", "header"),
    [
        ({"sec-fetch-site": "cross-site"}, "cross-site-fetch", "sec-fetch-site"),
        ({"sec-fetch-site": "same-site"}, "cross-site-fetch", "sec-fetch-site"),
        ({"origin": "https://evil.test"}, "origin-mismatch", "origin"),
        ({"origin": "null"}, "null-origin", "origin"),
        ({"origin": "https://x@app.test"}, "malformed-origin", "origin"),
    ],
)
async def test_enforce_refuses_with_a_generic_body_and_an_event(
    kind: str, headers: dict[str, str], reason: str, header: str
) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        token = await c.token()
        response = await c.request("POST", "/transfer", headers={**headers, "x-csrf-token": token})
        assert response.status_code == 403
        assert "Traceback" not in response.text and token not in response.text
        (event,) = c.recorder.of(EventKind.CROSS_ORIGIN_REFUSED)
        assert (event.reason, event.detail) == (reason, {"header": header})
        assert not c.recorder.of(EventKind.CSRF_WOULD_BLOCK)
