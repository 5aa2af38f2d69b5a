"""Fetch Metadata resource isolation (``CsrfPolicy.resource_isolation``) on both adapters: a
signed-in session's resources refuse cross-site ``no-cors`` loads and ``<object>``/``<embed>``,
while navigations, CORS requests, same-site loads, anonymous requests and requests without Fetch
Metadata pass; off by default; report-only reports instead of refusing."""

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
        csrf=CsrfPolicy(resource_isolation=True, **csrf),  # type: ignore[arg-type]
    )


def _fm(site: str, mode: str, dest: str) -> dict[str, str]:
    return {"sec-fetch-site": site, "sec-fetch-mode": mode, "sec-fetch-dest": dest}


REFUSED = [
    _fm("cross-site", "no-cors", "script"),
    _fm("cross-site", "no-cors", "image"),
    _fm("cross-site", "no-cors", "style"),
    _fm("cross-site", "navigate", "object"),
    _fm("cross-site", "navigate", "embed"),
]
ALLOWED = [
    _fm("cross-site", "navigate", "document"),  # a link from another site
    _fm("cross-site", "navigate", "iframe"),  # framing is the CSP's frame-ancestors' business
    _fm("cross-site", "cors", "empty"),  # the app's CORS policy decides
    _fm("same-site", "no-cors", "script"),
    _fm("same-origin", "no-cors", "script"),
    _fm("none", "navigate", "document"),
    {},  # no Fetch Metadata: an older browser or not a browser
]


@ADAPTERS
@pytest.mark.parametrize("headers", REFUSED)
async def test_cross_site_subresource_loads_are_refused(kind: str, headers: dict[str, str]) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        response = await c.request("GET", "/whoami", headers={**headers, "accept": "*/*"})
        assert response.status_code == 403
        assert "alice" not in response.text
        (event,) = c.recorder.of(EventKind.CROSS_ORIGIN_REFUSED)
        assert (event.reason, event.detail) == (
            "cross-site-subresource",
            {"header": "sec-fetch-site"},
        )
        assert event.user_id == "alice"


@ADAPTERS
@pytest.mark.parametrize("headers", ALLOWED)
async def test_navigations_cors_and_same_site_pass(kind: str, headers: dict[str, str]) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        response = await c.request("GET", "/whoami", headers=headers)
        assert response.status_code == 200 and response.json() == {"user": "alice"}


@ADAPTERS
async def test_anonymous_and_default_policies_are_untouched(kind: str) -> None:
    with client(kind, _policy()) as c:
        response = await c.request("GET", "/whoami", headers=REFUSED[0])
        assert response.status_code == 200 and response.json() == {"user": None}
    default = Policy(secret_keys=(SECRET,), allowed_hosts=("app.test",))
    with client(kind, default) as c:
        await c.login()
        response = await c.request("GET", "/whoami", headers=REFUSED[0])
        assert response.status_code == 200 and response.json() == {"user": "alice"}


@ADAPTERS
async def test_report_only_reports_instead(kind: str) -> None:
    with client(kind, _policy(report_only=True)) as c:
        await c.login()
        response = await c.request("GET", "/whoami", headers=REFUSED[0])
        assert response.status_code == 200
        (event,) = c.recorder.of(EventKind.CSRF_WOULD_BLOCK)
        assert event.reason == "cross-site-subresource"
        assert event.detail == {"header": "sec-fetch-site", "check": "cross-origin"}
