"""Trusted proxies, loopback hosts and the HTTPS redirect, as tables."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionwarden.facts import RequestFacts
from sessionwarden.policy import HttpsPolicy
from sessionwarden.proxy import (
    TrustedProxies,
    https_redirect_target,
    is_loopback_host,
    is_valid_host,
)

TRUSTED = ("10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.1")
#: The default: the proxies set X-Forwarded-For (and -Proto); Forwarded is the client's.
PROXIES = TrustedProxies(TRUSTED)
#: Proxies that set RFC 7239 Forwarded; X-Forwarded-* are the client's.
FORWARDED_PROXIES = TrustedProxies(TRUSTED, header="forwarded")
PEER = "10.0.0.1"
CLIENT = "203.0.113.7"

Headers = list[tuple[str, str]]

CASES: list[tuple[str, str, Headers, tuple[str, str]]] = [
    # (id, peer, headers, (client_ip, scheme)); the incoming scheme is always "http".
    ("no headers", PEER, [], (PEER, "http")),
    ("xff one hop", PEER, [("x-forwarded-for", CLIENT)], (CLIENT, "http")),
    (
        "xff + proto",
        PEER,
        [("x-forwarded-for", CLIENT), ("x-forwarded-proto", "https")],
        (CLIENT, "https"),
    ),
    (
        "xfp upper case",
        PEER,
        [("x-forwarded-for", CLIENT), ("x-forwarded-proto", "HTTPS")],
        (CLIENT, "https"),
    ),
    ("xfp alone", PEER, [("x-forwarded-proto", "https")], (PEER, "https")),
    (
        "xfp junk",
        PEER,
        [("x-forwarded-for", CLIENT), ("x-forwarded-proto", "gopher")],
        (PEER, "http"),
    ),
    ("client spoofs leftmost", PEER, [("x-forwarded-for", f"1.1.1.1, {CLIENT}")], (CLIENT, "http")),
    (
        "client spoofs a trusted address",
        PEER,
        [("x-forwarded-for", f"10.9.9.9, {CLIENT}")],
        (CLIENT, "http"),
    ),
    (
        "chain of proxies",
        "10.0.0.4",
        [("x-forwarded-for", f"1.1.1.1, {CLIENT}, 10.0.0.2, 10.0.0.3")],
        (CLIENT, "http"),
    ),
    ("all hops trusted", PEER, [("x-forwarded-for", "10.0.0.2, 10.0.0.3")], ("10.0.0.2", "http")),
    (
        "client's proto ignored",
        PEER,
        [("x-forwarded-for", CLIENT), ("x-forwarded-proto", "https, http")],
        (CLIENT, "http"),
    ),
    (
        "proto aligned with chain",
        PEER,
        [("x-forwarded-for", f"{CLIENT}, 10.0.0.2"), ("x-forwarded-proto", "https, http")],
        (CLIENT, "https"),
    ),
    (
        "overwriting proxies leave one proto",
        PEER,
        [("x-forwarded-for", f"{CLIENT}, 10.0.0.2"), ("x-forwarded-proto", "https")],
        (CLIENT, "https"),
    ),
    (
        "repeated xff headers join",
        PEER,
        [("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", f"{CLIENT}, 10.0.0.2")],
        (CLIENT, "http"),
    ),
    (
        "header names any case",
        PEER,
        [("X-Forwarded-For", CLIENT), ("X-FORWARDED-PROTO", "https")],
        (CLIENT, "https"),
    ),
    ("xff with port", PEER, [("x-forwarded-for", f"{CLIENT}:4711")], (CLIENT, "http")),
    ("xff bare ipv6", PEER, [("x-forwarded-for", "2001:db8::7")], ("2001:db8::7", "http")),
    (
        "xff bracketed ipv6 with port",
        PEER,
        [("x-forwarded-for", "[2001:db8::7]:443")],
        ("2001:db8::7", "http"),
    ),
    ("xff ipv4-mapped", PEER, [("x-forwarded-for", "::ffff:203.0.113.7")], (CLIENT, "http")),
    ("xff rightmost junk", PEER, [("x-forwarded-for", f"{CLIENT}, garbage")], (PEER, "http")),
    (
        "xff junk left of client",
        PEER,
        [("x-forwarded-for", f"garbage, {CLIENT}")],
        (CLIENT, "http"),
    ),
    ("xff empty entry", PEER, [("x-forwarded-for", f"{CLIENT}, ")], (PEER, "http")),
    ("xff unknown", PEER, [("x-forwarded-for", "unknown")], (PEER, "http")),
    ("xff bad port", PEER, [("x-forwarded-for", f"{CLIENT}:99999")], (PEER, "http")),
    ("xff empty", PEER, [("x-forwarded-for", "")], (PEER, "http")),
    # untrusted or odd peers: every forwarding header ignored
    (
        "untrusted peer xff",
        "198.51.100.1",
        [("x-forwarded-for", CLIENT), ("x-forwarded-proto", "https")],
        ("198.51.100.1", "http"),
    ),
    (
        "untrusted peer forwarded",
        "198.51.100.1",
        [("forwarded", f"for={CLIENT};proto=https")],
        ("198.51.100.1", "http"),
    ),
    ("peer just outside a /32", "192.0.2.2", [("x-forwarded-for", CLIENT)], ("192.0.2.2", "http")),
    ("peer /32 trusted", "192.0.2.1", [("x-forwarded-for", CLIENT)], (CLIENT, "http")),
    ("ipv6 peer trusted", "2001:db8:ffff::1", [("x-forwarded-for", CLIENT)], (CLIENT, "http")),
    (
        "ipv6 peer untrusted",
        "2001:db8:fffe::1",
        [("x-forwarded-for", CLIENT)],
        ("2001:db8:fffe::1", "http"),
    ),
    (
        "ipv4-mapped peer trusted",
        "::ffff:10.0.0.1",
        [("x-forwarded-for", CLIENT)],
        (CLIENT, "http"),
    ),
    ("unix socket peer", "", [("x-forwarded-for", CLIENT)], ("", "http")),
    ("junk peer", "not-an-ip", [("x-forwarded-for", CLIENT)], ("", "http")),
]


FORWARDED_CASES: list[tuple[str, str, Headers, tuple[str, str]]] = [
    # As CASES, for proxies that set RFC 7239 Forwarded (``header="forwarded"``).
    ("forwarded", PEER, [("forwarded", f"for={CLIENT};proto=https")], (CLIENT, "https")),
    ("forwarded quoted", PEER, [("forwarded", f'for="{CLIENT}";proto="https"')], (CLIENT, "https")),
    (
        "forwarded ipv6 port",
        PEER,
        [("forwarded", 'for="[2001:db8:cafe::17]:4711"')],
        ("2001:db8:cafe::17", "http"),
    ),
    (
        "forwarded ipv6 no port",
        PEER,
        [("forwarded", 'for="[2001:db8:cafe::17]"')],
        ("2001:db8:cafe::17", "http"),
    ),
    ("forwarded obfuscated port", PEER, [("forwarded", f'for="{CLIENT}:_abc"')], (CLIENT, "http")),
    (
        "forwarded keys any case",
        PEER,
        [("forwarded", f"For={CLIENT};PROTO=HTTPS")],
        (CLIENT, "https"),
    ),
    (
        "forwarded extra params",
        PEER,
        [("forwarded", f"by=10.0.0.1;for={CLIENT};host=app.example;proto=https")],
        (CLIENT, "https"),
    ),
    (
        "forwarded escaped quote",
        PEER,
        [("forwarded", f'for="{CLIENT}";x="a\\"b"')],
        (CLIENT, "http"),
    ),
    (
        "forwarded spoofed leftmost",
        PEER,
        [("forwarded", f"for=1.1.1.1;proto=https, for={CLIENT}")],
        (CLIENT, "http"),
    ),
    (
        "forwarded chain",
        PEER,
        [("forwarded", f"for={CLIENT};proto=https, for=10.0.0.2;proto=http")],
        (CLIENT, "https"),
    ),
    (
        "xff ignored when forwarded is the header",
        PEER,
        [("forwarded", f"for={CLIENT}"), ("x-forwarded-for", "1.1.1.1")],
        (CLIENT, "http"),
    ),
    (
        "forwarded empty: no fallback to xff",
        PEER,
        [("forwarded", ""), ("x-forwarded-for", "1.1.1.1"), ("x-forwarded-proto", "https")],
        (PEER, "http"),
    ),
    ("xff alone ignored", PEER, [("x-forwarded-for", CLIENT)], (PEER, "http")),
    ("forwarded unknown", PEER, [("forwarded", "for=unknown")], (PEER, "http")),
    ("forwarded obfuscated", PEER, [("forwarded", "for=_hidden")], (PEER, "http")),
    ("forwarded without for", PEER, [("forwarded", "proto=https")], (PEER, "http")),
    ("forwarded duplicate for", PEER, [("forwarded", f"for=1.1.1.1;for={CLIENT}")], (PEER, "http")),
    ("forwarded unterminated quote", PEER, [("forwarded", f'for="{CLIENT}')], (PEER, "http")),
    ("forwarded stray quote", PEER, [("forwarded", f'for={CLIENT}"')], (PEER, "http")),
    (
        "forwarded junk proto",
        PEER,
        [("forwarded", f"for={CLIENT};proto=javascript")],
        (PEER, "http"),
    ),
    (
        "forwarded unbracketed ipv6 with port",
        PEER,
        [("forwarded", "for=2001:db8::1:80")],
        ("2001:db8::1:80", "http"),
    ),  # reads as a bare address, as the grammar has no other way
    (
        "client quote cannot swallow our element",
        PEER,
        [("forwarded", f'for="1.1.1.1, for={CLIENT}')],
        (CLIENT, "http"),
    ),
    ("forwarded junk", PEER, [("forwarded", ";;;===,,,")], (PEER, "http")),
]


@pytest.mark.parametrize(
    ("peer", "headers", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_resolve(peer: str, headers: Headers, expected: tuple[str, str]) -> None:
    assert PROXIES.resolve(peer, "http", headers) == expected


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [c[1:] for c in FORWARDED_CASES],
    ids=[c[0] for c in FORWARDED_CASES],
)
def test_resolve_forwarded(peer: str, headers: Headers, expected: tuple[str, str]) -> None:
    assert FORWARDED_PROXIES.resolve(peer, "http", headers) == expected


def test_a_clients_forwarded_header_does_not_beat_the_proxys_x_forwarded_for() -> None:
    """Behind a proxy that appends X-Forwarded-For but passes Forwarded through, the client
    wrote the Forwarded header: it must pick neither the client address nor the scheme."""
    headers = [
        ("forwarded", "for=1.1.1.1;proto=https"),  # the client's
        ("x-forwarded-for", f"9.9.9.9, {CLIENT}"),  # the client's guess, then our proxy's entry
        ("x-forwarded-proto", "http"),
    ]
    assert PROXIES.resolve(PEER, "http", headers) == (CLIENT, "http")


def test_the_header_not_named_is_ignored_whatever_it_says() -> None:
    spoof = [("x-forwarded-for", "1.1.1.1"), ("x-forwarded-proto", "https")]
    assert FORWARDED_PROXIES.resolve(PEER, "http", spoof) == (PEER, "http")
    spoof = [("forwarded", "for=1.1.1.1;proto=https")]
    assert PROXIES.resolve(PEER, "http", spoof) == (PEER, "http")


def test_the_header_setting_is_checked() -> None:
    assert TrustedProxies(TRUSTED, header="X-Forwarded-For").header == "x-forwarded-for"
    assert TrustedProxies(TRUSTED, header="Forwarded").header == "forwarded"
    with pytest.raises(ValueError, match="forwarded_header"):
        TrustedProxies(TRUSTED, header="x-real-ip")


def test_from_policy_reads_the_https_settings() -> None:
    https = HttpsPolicy(trusted_proxies=("10.0.0.0/8",), forwarded_header="forwarded")
    proxies = TrustedProxies.from_policy(https)
    assert proxies.header == "forwarded"
    assert proxies.resolve(PEER, "http", [("forwarded", f"for={CLIENT}")]) == (CLIENT, "http")
    assert TrustedProxies.from_policy(HttpsPolicy()).header == "x-forwarded-for"
    with pytest.raises(ValueError, match="forwarded_header"):
        HttpsPolicy(forwarded_header="x-real-ip")  # type: ignore[arg-type]


# -- Unix-socket peers ----------------------------------------------------------------------------

UNIX = TrustedProxies(("unix",))


@pytest.mark.parametrize(
    ("proxies", "peer", "headers", "expected"),
    [
        pytest.param(PROXIES, "", [("x-forwarded-for", CLIENT)], ("", "http"), id="not-trusted"),
        pytest.param(
            UNIX,
            "",
            [("x-forwarded-for", CLIENT), ("x-forwarded-proto", "https")],
            (CLIENT, "https"),
            id="unix-trusted",
        ),
        pytest.param(
            UNIX, "", [("x-forwarded-for", f"1.1.1.1, {CLIENT}")], (CLIENT, "http"), id="rightmost"
        ),
        pytest.param(UNIX, "", [("forwarded", f"for={CLIENT}")], ("", "http"), id="other-header"),
        pytest.param(UNIX, "", [], ("", "http"), id="no-header"),
        pytest.param(
            UNIX, "203.0.113.9", [("x-forwarded-for", CLIENT)], ("203.0.113.9", "http"), id="tcp"
        ),
        pytest.param(
            UNIX, "not-an-ip", [("x-forwarded-for", CLIENT)], ("", "http"), id="junk-peer"
        ),
        pytest.param(
            TrustedProxies(("unix", "10.0.0.0/8")),
            PEER,
            [("x-forwarded-for", CLIENT)],
            (CLIENT, "http"),
            id="unix-and-cidr",
        ),
    ],
)
def test_a_unix_socket_peer_is_trusted_only_when_named(
    proxies: TrustedProxies, peer: str, headers: Headers, expected: tuple[str, str]
) -> None:
    """ASGI servers report no client address behind a Unix socket (``client=None``). With the
    token ``"unix"`` in ``trusted_proxies`` that peer is a proxy whose header is believed."""
    assert proxies.resolve(peer, "http", headers) == expected


def test_unix_token_is_accepted_by_the_policy() -> None:
    assert HttpsPolicy(trusted_proxies=("unix", "10.0.0.1")).trusted_proxies[0] == "unix"
    with pytest.raises(ValueError, match="trusted_proxies"):
        HttpsPolicy(trusted_proxies=("unix-socket",))


def test_https_peer_keeps_its_scheme_without_proto() -> None:
    assert PROXIES.resolve(PEER, "https", [("x-forwarded-for", CLIENT)]) == (CLIENT, "https")


def test_no_proxies_configured_ignores_everything() -> None:
    nobody = TrustedProxies(())
    headers = [("x-forwarded-for", CLIENT), ("forwarded", f"for={CLIENT};proto=https")]
    assert nobody.resolve(PEER, "http", headers) == (PEER, "http")


def test_asgi_bytes_and_mapping_headers() -> None:
    asgi = [(b"x-forwarded-for", CLIENT.encode()), (b"x-forwarded-proto", b"https")]
    assert PROXIES.resolve(PEER, "http", asgi) == (CLIENT, "https")
    mapping = {"Forwarded": f"for={CLIENT}"}
    assert FORWARDED_PROXIES.resolve(PEER, "http", mapping) == (CLIENT, "http")


def test_long_chains_are_bounded() -> None:
    chain = ", ".join(["10.0.0.9"] * 10_000)
    client, _ = PROXIES.resolve(PEER, "http", [("x-forwarded-for", f"{CLIENT}, {chain}")])
    assert client == "10.0.0.9"  # the walk gave up inside our own hops, never past them
    forwarded = ", ".join(["for=10.0.0.9"] * 10_000)
    client, _ = FORWARDED_PROXIES.resolve(
        PEER, "http", [("forwarded", f"for={CLIENT}, {forwarded}")]
    )
    assert client == "10.0.0.9"


def test_invalid_cidr_refused() -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        TrustedProxies(("10.0.0.0/33",))


@settings(max_examples=400, deadline=None)
@given(
    peer=st.text(max_size=20) | st.sampled_from([PEER, "::ffff:10.0.0.1", "2001:db8:ffff::2"]),
    scheme=st.sampled_from(["http", "https"]),
    headers=st.lists(
        st.tuples(
            st.sampled_from(["forwarded", "x-forwarded-for", "x-forwarded-proto", "host"])
            | st.text(max_size=10),
            st.text(max_size=60)
            | st.lists(
                st.sampled_from(
                    [
                        "for=",
                        "proto=",
                        '"',
                        ";",
                        ",",
                        "[",
                        "]",
                        ":",
                        "_x",
                        "unknown",
                        CLIENT,
                        "10.0.0.2",
                        "2001:db8::1",
                        "https",
                        " ",
                        "\\",
                        "=",
                    ]
                ),
                max_size=20,
            ).map("".join),
        ),
        max_size=5,
    ),
)
def test_resolve_never_raises(peer: str, scheme: str, headers: Headers) -> None:
    client, resolved = PROXIES.resolve(peer, scheme, headers)
    assert isinstance(client, str)
    assert resolved in ("http", "https")


# --- hosts ----------------------------------------------------------------------------------------

HOSTS = [
    # (host, valid, loopback)
    ("localhost", True, True),
    ("localhost:8000", True, True),
    ("LOCALHOST:8000", True, True),
    ("localhost.", True, True),
    ("app.localhost", True, True),
    ("a.b.localhost:3000", True, True),
    ("127.0.0.1", True, True),
    ("127.0.0.1:8000", True, True),
    ("127.1.2.3", True, True),
    ("[::1]", True, True),
    ("[::1]:8000", True, True),
    ("[::ffff:127.0.0.1]:80", True, True),
    ("app.example", True, False),
    ("app.example:8443", True, False),
    ("localhost.example", True, False),
    ("notlocalhost", True, False),
    ("128.0.0.1", True, False),
    ("0.0.0.0", True, False),
    ("[2001:db8::1]:443", True, False),
    ("xn--bcher-kva.example", True, False),
    ("::1", False, False),  # IPv6 must be bracketed in a Host header
    ("[::1", False, False),
    ("[::1]x", False, False),
    ("[zz::1]", False, False),
    ("[]", False, False),
    ("", False, False),
    ("localhost:", False, False),
    ("localhost:99999", False, False),
    ("localhost:80:80", False, False),
    ("local host", False, False),
    ("evil.example/path", False, False),
    ("user@localhost", False, False),
    ("bücher.example", False, False),
    ("app.example:٨٠", False, False),
    ("a" * 300, False, False),
]


@pytest.mark.parametrize(("host", "valid", "loopback"), HOSTS)
def test_hosts(host: str, valid: bool, loopback: bool) -> None:
    assert is_valid_host(host) is valid
    assert is_loopback_host(host) is loopback


# --- the HTTPS redirect ---------------------------------------------------------------------------


def facts(host: str, scheme: str = "http") -> RequestFacts:
    return RequestFacts(method="POST", scheme=scheme, host=host, path="/", client_ip=CLIENT)


ON = HttpsPolicy()
REDIRECTS = [
    # (host, scheme, target, policy, expected)
    ("app.example", "http", "/a/b?x=1&y=2", ON, "https://app.example/a/b?x=1&y=2"),
    ("app.example", "https", "/a", ON, None),
    ("app.example", "http", "/a", HttpsPolicy(redirect=False), None),
    ("APP.example", "http", "/", ON, "https://app.example/"),
    ("app.example:80", "http", "/", ON, "https://app.example/"),
    ("app.example:8080", "http", "/", ON, "https://app.example:8080/"),
    ("[2001:db8::1]", "http", "/", ON, "https://[2001:db8::1]/"),
    ("localhost:8000", "http", "/", ON, None),
    ("127.0.0.1", "http", "/", ON, None),
    ("[::1]:8000", "http", "/", ON, None),
    (
        "localhost:8000",
        "http",
        "/",
        HttpsPolicy(allow_loopback_http=False),
        "https://localhost:8000/",
    ),
    ("", "http", "/", ON, None),  # invalid hosts: see is_valid_host
    ("evil.example/x", "http", "/", ON, None),
    ("app.example\r\nSet-Cookie: a=b", "http", "/", ON, None),
    (
        "app.example",
        "http",
        "/a b\r\nSet-Cookie: x=1",
        ON,
        "https://app.example/a%20b%0D%0ASet-Cookie:%20x=1",
    ),
    ("app.example", "http", "/caf%C3%A9", ON, "https://app.example/caf%C3%A9"),
    ("app.example", "http", "/café", ON, "https://app.example/caf%C3%A9"),
    ("app.example", "http", '/"<>', ON, "https://app.example/%22%3C%3E"),
    ("app.example", "http", "//evil.example/x", ON, "https://app.example//evil.example/x"),
    ("app.example", "http", "*", ON, "https://app.example/"),
    ("app.example", "http", "", ON, "https://app.example/"),
    ("app.example", "http", "https://evil.example/", ON, "https://app.example/"),
]


@pytest.mark.parametrize(("host", "scheme", "target", "policy", "expected"), REDIRECTS)
def test_https_redirect_target(
    host: str, scheme: str, target: str, policy: HttpsPolicy, expected: str | None
) -> None:
    assert https_redirect_target(facts(host, scheme), target, policy) == expected


@settings(max_examples=300, deadline=None)
@given(host=st.text(max_size=40), target=st.text(max_size=40))
def test_hosts_and_redirects_never_raise(host: str, target: str) -> None:
    is_valid_host(host)
    is_loopback_host(host)
    location = https_redirect_target(facts(host), target, ON)
    if location is not None:
        assert location.startswith("https://")
        assert location.isascii()
        assert not any(c in location for c in ' \r\n\t"<>')


def test_the_guard_believes_a_unix_socket_proxy_named_in_the_policy() -> None:
    """End to end through the guard: the token is read from ``Policy.https.trusted_proxies``."""
    from sessionwarden.guard import Guard
    from sessionwarden.policy import Policy

    headers = [(b"host", b"app.test"), (b"x-forwarded-for", CLIENT.encode())]

    def client_of(trusted: tuple[str, ...]) -> str:
        guard = Guard(Policy(secret_keys=(b"k" * 32,), https=HttpsPolicy(trusted_proxies=trusted)))
        facts = guard.facts(method="GET", scheme="http", path="/", peer_ip="", headers=headers)
        return facts.client_ip

    assert client_of(("unix",)) == CLIENT
    assert client_of(()) == ""


def test_the_guard_reads_only_the_forwarding_header_the_policy_names() -> None:
    """End to end through the guard: ``Policy.https.forwarded_header`` picks the one header read,
    and the other one (which the proxy passes through from the client) changes nothing."""
    from sessionwarden.guard import Guard
    from sessionwarden.policy import Policy

    proxy = "10.0.0.1"
    headers = [
        (b"host", b"app.test"),
        (b"forwarded", b"for=198.51.100.9;proto=https"),
        (b"x-forwarded-for", b"203.0.113.7"),
    ]

    def client_of(header: str) -> str:
        https = HttpsPolicy(trusted_proxies=("10.0.0.0/8",), forwarded_header=header)
        guard = Guard(Policy(secret_keys=(b"k" * 32,), https=https))
        facts = guard.facts(method="GET", scheme="http", path="/", peer_ip=proxy, headers=headers)
        return facts.client_ip

    assert client_of("forwarded") == "198.51.100.9"
    assert client_of("x-forwarded-for") == "203.0.113.7"


HOST_PROXIES = TrustedProxies(TRUSTED, host=True)


@pytest.mark.parametrize(
    ("peer", "headers", "host"),
    [
        (PEER, [("x-forwarded-host", "App.Test")], "app.test"),
        (PEER, [("x-forwarded-host", " ")], None),
        # Two proxies appending: the outer one (10.0.0.2) met the client and wrote first.
        (
            PEER,
            [("x-forwarded-for", f"{CLIENT}, 10.0.0.2"), ("x-forwarded-host", "app.test, in")],
            "app.test",
        ),
        # The client's own value on the left of the one our proxy appended is not read.
        (
            PEER,
            [("x-forwarded-for", CLIENT), ("x-forwarded-host", "evil.test, app.test")],
            "app.test",
        ),
        # An unreadable hop: neither the scheme nor the host is believed.
        (PEER, [("x-forwarded-for", "junk"), ("x-forwarded-host", "app.test")], None),
        (CLIENT, [("x-forwarded-host", "app.test")], None),  # not a proxy of ours
    ],
)
def test_the_forwarded_host(peer: str, headers: Headers, host: str | None) -> None:
    assert HOST_PROXIES.resolve_forwarded(peer, "http", headers).host == host
    assert PROXIES.resolve_forwarded(peer, "http", headers).host is None  # not asked for


def test_the_host_parameter_of_forwarded() -> None:
    proxies = TrustedProxies(TRUSTED, header="forwarded", host=True)
    header = [("forwarded", f'for=1.1.1.1;host=evil.test, for={CLIENT};host="App.Test:8443"')]
    assert proxies.resolve_forwarded(PEER, "http", header) == (CLIENT, "http", "app.test:8443")
    assert proxies.resolve_forwarded(PEER, "http", [("x-forwarded-host", "a.test")]).host is None
