"""Forged proxy headers: a client claiming another IP or HTTPS through X-Forwarded-For/Proto or
Forwarded. From an untrusted peer the headers are ignored (the peer is the client, the real scheme
stands, so plain HTTP is still redirected); from a trusted proxy they are honoured."""

from __future__ import annotations

import pytest

from sessionwarden.policy import HttpsPolicy, Policy

from ..conftest import SECRET
from .conftest import RigFactory

pytestmark = pytest.mark.anyio

PROXY_NET = "10.0.0.0/8"
FORGED = [
    {"x-forwarded-for": "192.0.2.77"},
    {"x-forwarded-for": "192.0.2.77", "x-forwarded-proto": "https"},
    {"forwarded": "for=192.0.2.77;proto=https"},
    {"forwarded": 'for="[2001:db8::77]";proto=https', "x-forwarded-for": "192.0.2.77"},
    {"x-forwarded-for": "127.0.0.1"},  # pretending to be local
]


def _policy() -> Policy:
    return Policy(
        secret_keys=(SECRET,), allowed_hosts=("*",), https=HttpsPolicy(trusted_proxies=(PROXY_NET,))
    )


@pytest.mark.parametrize("headers", FORGED)
async def test_untrusted_peer_cannot_choose_its_ip_or_scheme(
    make_rig: RigFactory, headers: dict[str, str]
) -> None:
    rig = make_rig(policy=_policy())
    # over https: the ip stays the peer's
    b = rig.browser(peer="203.0.113.50")
    r = await b.get("/client", headers=headers)
    assert r.json() == {"ip": "203.0.113.50", "scheme": "https"}
    # over plain http: a forged proto=https does not skip the HTTPS redirect
    plain = rig.browser(peer="203.0.113.50", base_url="http://app.test")
    r = await plain.get("/client", headers=headers)
    assert r.status_code == 308 and r.headers["location"] == "https://app.test/client"


async def test_trusted_proxy_headers_are_honoured(make_rig: RigFactory) -> None:
    rig = make_rig(policy=_policy())
    via_proxy = rig.browser(peer="10.1.2.3", base_url="http://app.test")
    r = await via_proxy.get(
        "/client", headers={"x-forwarded-for": "192.0.2.77", "x-forwarded-proto": "https"}
    )
    assert r.status_code == 200 and r.json() == {"ip": "192.0.2.77", "scheme": "https"}
    # the proxies set X-Forwarded-For (the default): a Forwarded header is the client's, passed
    # through, and picks neither the address nor the scheme
    r = await via_proxy.get(
        "/client",
        headers={
            "forwarded": "for=192.0.2.78;proto=https",
            "x-forwarded-for": "192.0.2.77",
            "x-forwarded-proto": "https",
        },
    )
    assert r.json() == {"ip": "192.0.2.77", "scheme": "https"}
    r = await via_proxy.get("/client", headers={"forwarded": "for=192.0.2.78;proto=https"})
    assert r.status_code == 308  # still plain HTTP from the proxy: redirected, not believed
    # a client-written entry left of an untrusted hop is ignored: the first untrusted from the right
    r = await via_proxy.get(
        "/client",
        headers={"x-forwarded-for": "6.6.6.6, 192.0.2.79, 10.9.9.9", "x-forwarded-proto": "https"},
    )
    assert r.json()["ip"] == "192.0.2.79"
    # the trusted proxy saying plain http: redirected
    r = await via_proxy.get(
        "/client", headers={"x-forwarded-for": "192.0.2.77", "x-forwarded-proto": "http"}
    )
    assert r.status_code == 308


async def test_no_proxies_configured_ignores_everything(make_rig: RigFactory) -> None:
    rig = make_rig()
    b = rig.browser(peer="10.1.2.3")
    r = await b.get(
        "/client", headers={"x-forwarded-for": "192.0.2.77", "forwarded": "for=192.0.2.1"}
    )
    assert r.json()["ip"] == "10.1.2.3"


async def test_forged_ip_does_not_change_the_sessions_recorded_address(
    make_rig: RigFactory,
) -> None:
    """The activity trail (what the user sees on "your devices") records the real peer."""
    rig = make_rig(policy=_policy())
    b = rig.browser(peer="203.0.113.50")
    t = await b.token()
    r = await b.post("/login", data={"csrf_token": t}, headers={"x-forwarded-for": "192.0.2.77"})
    assert r.status_code == 303
    key = rig.app.engine.keyring.hash_id(b.cookie or "")
    record = await rig.app.store.get(key)
    assert getattr(record, "client_ip", None) == "203.0.113.50"
