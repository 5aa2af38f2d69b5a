"""The network check's size (``MonitorPolicy.ipv4_prefix`` / ``ipv6_prefix``): a new address
inside the session's network passes, one outside it is a network change (the configured action
and an ``anomaly.detected`` event); /32 and /128 bind the session to its exact address. Over
both adapters, the client's address set through a trusted proxy."""

from __future__ import annotations

import pytest

from sessionwarden.events import EventKind
from sessionwarden.policy import HttpsPolicy, MonitorPolicy, Policy
from sessionwarden.scoring import network_of

from .conftest import SECRET
from .two_adapters import KINDS, Client, client

pytestmark = pytest.mark.anyio
ADAPTERS = pytest.mark.parametrize("kind", KINDS)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _policy(**monitor: object) -> Policy:
    return Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("app.test",),
        rotate_every=0,
        # The test transports connect from 127.0.0.1: trusted, so X-Forwarded-For names the
        # client (the sign-in, without one, comes from 127.0.0.1 itself).
        https=HttpsPolicy(trusted_proxies=("127.0.0.1",)),
        monitor=MonitorPolicy(on_low="revoke", **monitor),  # type: ignore[arg-type]
    )


async def _user_from(c: Client, ip: str) -> str | None:
    response = await c.request("GET", "/whoami", headers={"x-forwarded-for": ip})
    user: str | None = response.json()["user"]
    return user


def _network_changes(c: Client) -> list[str]:
    return [e.reason for e in c.recorder.of(EventKind.ANOMALY)]


@ADAPTERS
async def test_by_default_the_same_slash_24_passes_and_another_slash_16_does_not(
    kind: str,
) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        assert await _user_from(c, "127.0.0.200") == "alice"
        assert _network_changes(c) == []
        assert await _user_from(c, "127.9.0.1") is None  # on_low="revoke"
        assert _network_changes(c) == ["network-changed"]


@ADAPTERS
async def test_a_wider_network_is_configurable(kind: str) -> None:
    with client(kind, _policy(ipv4_prefix=16)) as c:
        await c.login()
        assert await _user_from(c, "127.0.200.1") == "alice"  # another /24, the same /16
        assert _network_changes(c) == []
        assert await _user_from(c, "127.9.0.1") is None
        assert _network_changes(c) == ["network-changed"]


@ADAPTERS
async def test_strict_mode_binds_the_session_to_its_exact_address(kind: str) -> None:
    with client(kind, _policy(ipv4_prefix=32, ipv6_prefix=128)) as c:
        await c.login()
        assert await _user_from(c, "127.0.0.1") == "alice"
        assert await _user_from(c, "127.0.0.2") is None  # the next address is another network
        assert _network_changes(c) == ["network-changed"]


def test_network_of_uses_the_given_sizes() -> None:
    assert network_of("198.51.100.7") == "198.51.100.0/24"
    assert network_of("198.51.100.7", 16) == "198.51.0.0/16"
    assert network_of("198.51.100.7", 32) == "198.51.100.7/32"
    assert network_of("2001:db8:1:2::1") == "2001:db8:1::/48"
    assert network_of("2001:db8:1:2::1", v6_prefix=64) == "2001:db8:1:2::/64"
    assert network_of("2001:db8:1:2::1", v6_prefix=128) == "2001:db8:1:2::1/128"
    assert network_of("::ffff:198.51.100.7", 32) == "198.51.100.7/32"
    assert network_of("not an address", 32) == ""


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ipv4_prefix", 0),
        ("ipv4_prefix", 33),
        ("ipv6_prefix", 0),
        ("ipv6_prefix", 129),
        ("ipv4_prefix", True),
        ("ipv6_prefix", 48.0),
    ],
)
def test_prefix_sizes_are_validated(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"monitor.{name}"):
        MonitorPolicy(**{name: value})  # type: ignore[arg-type]


@ADAPTERS
async def test_a_new_size_applies_to_existing_sessions_at_once(kind: str) -> None:
    with client(kind, _policy()) as c:
        await c.login()  # its fingerprint stores a /24
        c.restart(_policy(ipv4_prefix=16))
        assert await _user_from(c, "127.0.200.1") == "alice"  # not a move: the same /16
        assert _network_changes(c) == []
        c.restart(_policy(ipv4_prefix=32))
        assert await _user_from(c, "127.0.0.1") == "alice"
        assert await _user_from(c, "127.0.0.2") is None
        assert _network_changes(c) == ["network-changed"]
