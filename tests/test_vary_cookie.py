"""A page built from the session that no cache is told not to store varies on ``Cookie``: a
shared cache or CDN keys it by the visitor's cookie and never hands one browser's anonymous cart
to another. A page that never reads the session gets no ``Vary`` from us, and an application's
own ``Vary`` is extended in its one field. Both adapters, observed over HTTP."""

from __future__ import annotations

import pytest

from sessionwarden.policy import HeadersPolicy, Policy

from .conftest import SECRET
from .two_adapters import KINDS, client

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _policy(**kwargs: object) -> Policy:
    return Policy(secret_keys=(SECRET,), allowed_hosts=("app.test",), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
async def test_an_anonymous_page_read_from_the_session_varies_on_cookie(kind: str) -> None:
    with client(kind, _policy()) as c:
        await c.token()  # an anonymous session with its cookie
        assert c.cookie
        r = await c.request("GET", "/cart")
        assert r.status_code == 200, r.text
        assert "set-cookie" not in r.headers  # no new cookie, not signed in: may be cached
        assert "no-store" not in r.headers.get("cache-control", "")
        assert r.headers.get_list("vary") == ["Cookie"]
        # A first visit, without a cookie, reads an empty session: as much a per-browser page.
        first = await c.request("GET", "/cart", send_cookie=False)
        assert first.headers.get_list("vary") == ["Cookie"]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_page_that_never_reads_the_session_gets_no_vary(kind: str) -> None:
    with client(kind, _policy()) as c:
        await c.token()
        r = await c.request("GET", "/plain")
        assert r.status_code == 200
        assert "vary" not in r.headers
        assert "cache-control" not in r.headers


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("apps", "sent"),
    [
        ("Accept-Encoding", "Accept-Encoding, Cookie"),
        ("Accept-Encoding, Accept-Language", "Accept-Encoding, Accept-Language, Cookie"),
        ("cookie", "cookie"),
        ("Accept-Encoding, Cookie", "Accept-Encoding, Cookie"),
        ("*", "*"),
    ],
)
async def test_the_apps_own_vary_is_extended_in_one_field(kind: str, apps: str, sent: str) -> None:
    with client(kind, _policy()) as c:
        await c.token()
        r = await c.request("GET", f"/cart?vary={apps}")
        assert r.status_code == 200
        assert r.headers.get_list("vary") == [sent]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_signed_in_page_stays_no_store(kind: str) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        r = await c.request("GET", "/cart")
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        assert "vary" not in r.headers  # nothing may keep it at all: no Vary needed


@pytest.mark.parametrize("kind", KINDS)
async def test_headers_turned_off_add_no_vary(kind: str) -> None:
    with client(kind, _policy(headers=HeadersPolicy(enabled=False))) as c:
        await c.token()
        r = await c.request("GET", "/cart?vary=Accept-Encoding")
        assert r.headers.get_list("vary") == ["Accept-Encoding"]
        r = await c.request("GET", "/cart")
        assert "vary" not in r.headers
