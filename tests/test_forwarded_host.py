"""The host a trusted proxy forwards (``X-Forwarded-Host``, or ``host=`` of ``Forwarded``) is the
request's host: it passes the allowed-hosts check, and redirects and the Origin comparison use it.
From any other peer it is the client's and ignored. Driven through each adapter as a client sees
it. Both transports connect from 127.0.0.1, so trusting ``127.0.0.1`` makes the peer a proxy."""

from __future__ import annotations

import pytest

from sessionwarden.policy import HttpsPolicy, Policy

from .conftest import SECRET
from .two_adapters import KINDS, client

pytestmark = pytest.mark.anyio
ADAPTERS = pytest.mark.parametrize("kind", KINDS)
INTERNAL = "http://backend.internal:8000"  # the Host the proxy sends (not an allowed host)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _policy(
    trusted: tuple[str, ...] = ("127.0.0.1",), header: str = "x-forwarded-for", on: bool = True
) -> Policy:
    https = HttpsPolicy(trusted_proxies=trusted, forwarded_header=header, forwarded_host=on)  # type: ignore[arg-type]
    return Policy(secret_keys=(SECRET,), allowed_hosts=("app.test",), https=https)


def _no_trace_of(response: object, text: str) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert all(text not in value for _, value in headers.multi_items())
    assert text not in response.text  # type: ignore[attr-defined]


@ADAPTERS
async def test_the_redirect_goes_to_the_forwarded_host(kind: str) -> None:
    with client(kind, _policy(), base=INTERNAL) as c:
        r = await c.request("GET", "/whoami?a=1", headers={"x-forwarded-host": "app.test"})
        assert r.status_code == 308
        assert r.headers["location"] == "https://app.test/whoami?a=1"
        # Without it the proxy's own Host decides, and it is not an allowed host.
        assert (await c.request("GET", "/whoami")).status_code == 400


@ADAPTERS
@pytest.mark.parametrize("forwarded", ["evil.test", "app.test.evil.test", "app.test/evil.test"])
async def test_a_forwarded_host_not_allowed_is_refused(kind: str, forwarded: str) -> None:
    with client(kind, _policy(), base=INTERNAL) as c:
        r = await c.request("GET", "/whoami", headers={"x-forwarded-host": forwarded})
        assert r.status_code == 400
        assert "location" not in r.headers and "set-cookie" not in r.headers
        _no_trace_of(r, "evil.test")


@ADAPTERS
async def test_the_value_the_proxy_wrote_wins_over_the_clients(kind: str) -> None:
    """A proxy that appends: the client's own value is on the left, the proxy's on the right."""
    with client(kind, _policy(), base=INTERNAL) as c:
        r = await c.request("GET", "/p", headers={"x-forwarded-host": "evil.test, app.test"})
        assert r.headers["location"] == "https://app.test/p"
        r = await c.request("GET", "/p", headers={"x-forwarded-host": "app.test, evil.test"})
        assert r.status_code == 400 and "location" not in r.headers


@ADAPTERS
async def test_an_untrusted_peers_forwarded_host_is_ignored(kind: str) -> None:
    untrusted = _policy(trusted=("10.0.0.0/8",))
    with client(kind, untrusted, base="http://app.test") as c:
        r = await c.request("GET", "/whoami", headers={"x-forwarded-host": "evil.test"})
        assert r.status_code == 308
        assert r.headers["location"] == "https://app.test/whoami"
        _no_trace_of(r, "evil.test")
    with client(kind, untrusted, base=INTERNAL) as c:
        r = await c.request("GET", "/whoami", headers={"x-forwarded-host": "app.test"})
        assert r.status_code == 400 and "location" not in r.headers


@ADAPTERS
async def test_the_origin_of_a_post_is_compared_with_the_forwarded_host(kind: str) -> None:
    https = {"x-forwarded-proto": "https", "x-forwarded-host": "app.test"}
    with client(kind, _policy(), base=INTERNAL) as c:
        token = (await c.request("GET", "/token", headers=https)).json()["csrf_token"]
        https["x-csrf-token"] = token
        mine = await c.request("POST", "/transfer", headers={**https, "origin": "https://app.test"})
        assert mine.status_code == 200, mine.text
        assert mine.text == "transfer done"
        theirs = await c.request(
            "POST",
            "/transfer",
            headers={**https, "origin": INTERNAL, "accept": "application/json"},
        )
        assert theirs.status_code == 403
        assert theirs.json()["reason"] == "origin-mismatch"


@ADAPTERS
async def test_the_host_parameter_of_forwarded_when_that_is_the_header(kind: str) -> None:
    with client(kind, _policy(header="forwarded"), base=INTERNAL) as c:
        r = await c.request("GET", "/a", headers={"forwarded": "for=203.0.113.7;host=app.test"})
        assert r.headers["location"] == "https://app.test/a"
        quoted = {"forwarded": 'for=203.0.113.7;host="app.test:8443"'}
        assert (await c.request("GET", "/a", headers=quoted)).headers["location"] == (
            "https://app.test:8443/a"
        )
        evil = await c.request("GET", "/a", headers={"forwarded": "for=203.0.113.7;host=evil.test"})
        assert evil.status_code == 400 and "location" not in evil.headers
        # X-Forwarded-Host is not the header these proxies set: it is the client's.
        ignored = await c.request(
            "GET", "/a", headers={"forwarded": "for=203.0.113.7", "x-forwarded-host": "app.test"}
        )
        assert ignored.status_code == 400


@ADAPTERS
async def test_the_forwarded_host_is_read_only_when_the_policy_says_so(kind: str) -> None:
    """Off by default: a proxy that passes a client's X-Forwarded-Host through must not let the
    client pick the host."""
    with client(kind, _policy(on=False), base="http://app.test") as c:
        r = await c.request("GET", "/whoami", headers={"x-forwarded-host": "evil.test"})
        assert r.headers["location"] == "https://app.test/whoami"
    forwarded = _policy(header="forwarded", on=False)
    with client(kind, forwarded, base="http://app.test") as c:
        r = await c.request("GET", "/w", headers={"forwarded": "for=203.0.113.7;host=evil.test"})
        assert r.headers["location"] == "https://app.test/w"


def test_the_setting_is_checked() -> None:
    with pytest.raises(ValueError, match=r"https\.forwarded_host"):
        HttpsPolicy(forwarded_host="yes")  # type: ignore[arg-type]
