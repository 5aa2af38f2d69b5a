"""Property-based fuzzing (hypothesis) of every parser that reads attacker-controlled text.

For each target two things must hold: no exception escapes (``parse_store_url`` may raise only
``ValueError``), and nothing is ACCEPTED that should not be. The atheris harnesses in ``fuzz/``
run the same properties for millions of executions; these keep them in every test run.
"""

from __future__ import annotations

import base64
import ipaddress

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sessionwarden import csrf, tokens
from sessionwarden.cookies import MAX_COOKIE_HEADER, cookie_values
from sessionwarden.facts import RequestFacts
from sessionwarden.policy import CsrfPolicy
from sessionwarden.proxy import TrustedProxies
from sessionwarden.stores import parse_store_url

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECRET = tokens.new_csrf_secret()
SECRET_BYTES = base64.urlsafe_b64decode(SECRET + "=")
NAME = "__Host-id"

latin1 = st.text(alphabet=st.characters(max_codepoint=255), max_size=400)
any_text = st.one_of(latin1, st.text(max_size=200))

# -- cookies --------------------------------------------------------------------------------------

piece_names = st.sampled_from([NAME, "__host-id", "__HOST-ID", "__Host-id_", "other", " " + NAME])
piece_values = st.text(alphabet=st.characters(blacklist_characters=";"), max_size=60)


@FAST
@given(header=any_text)
def test_cookie_values_never_raises(header: str) -> None:
    values = cookie_values(header, NAME)
    assert isinstance(values, list) and len(set(values)) == len(values)
    for v in values:
        assert isinstance(v, str) and ";" not in v and v in header
    if len(header) > MAX_COOKIE_HEADER:
        assert values == []


@FAST
@given(pieces=st.lists(st.tuples(piece_names, piece_values), max_size=8))
def test_cookie_values_reads_only_the_exact_name(pieces: list[tuple[str, str]]) -> None:
    header = "; ".join(f"{n}={v}" for n, v in pieces)
    expected: list[str] = []
    for n, v in pieces:
        if n.strip(" \t") != NAME:
            continue  # case variants and look-alikes are other cookies
        v = v.strip(" \t")
        if len(v) >= 2 and v[0] == v[-1] == '"':
            v = v[1:-1]
        if v not in expected:
            expected.append(v)
    assert cookie_values(header, NAME) == expected


@FAST
@given(value=any_text)
def test_only_well_formed_ids_reach_the_store(value: str) -> None:
    if tokens.is_well_formed_id(value):
        assert len(value) == 43
        assert all(c.isascii() and (c.isalnum() or c in "-_") for c in value)


# -- CSRF tokens ----------------------------------------------------------------------------------


@FAST
@given(token=any_text, secret=st.one_of(st.just(SECRET), any_text))
def test_token_decoder_never_raises_and_never_accepts_junk(token: str, secret: str) -> None:
    unmasked = tokens.unmask_token(token)
    assert unmasked is None or (isinstance(unmasked, bytes) and len(unmasked) == 32)
    ok = tokens.verify_masked_token(token, secret)
    assert csrf.token_verdict(token, secret).ok == ok
    if ok:
        assert unmasked == tokens.b64d(secret)
        raw = base64.urlsafe_b64decode(token + "==")
        assert bytes(a ^ b for a, b in zip(raw[:32], raw[32:], strict=True)) == tokens.b64d(secret)


@FAST
@given(mask=st.binary(min_size=32, max_size=32), other=st.binary(min_size=32, max_size=32))
def test_token_made_from_another_secret_is_refused(mask: bytes, other: bytes) -> None:
    token = tokens.b64e(mask + bytes(a ^ b for a, b in zip(mask, other, strict=True)))
    assert tokens.verify_masked_token(token, SECRET) == (other == SECRET_BYTES)
    # and the genuine masking of the secret with that same mask is accepted
    genuine = tokens.b64e(mask + bytes(a ^ b for a, b in zip(mask, SECRET_BYTES, strict=True)))
    assert tokens.verify_masked_token(genuine, SECRET)


@FAST
@given(position=st.integers(0, 85), char=st.characters(min_codepoint=32, max_codepoint=0x2FF))
def test_tampered_real_token_is_refused(position: int, char: str) -> None:
    good = tokens.mask_token(SECRET)
    bad = good[:position] + char + good[position + 1 :]
    if bad != good:
        assert not tokens.verify_masked_token(bad, SECRET)


form_types = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        "multipart/form-data; boundary=XyZ",
        'multipart/form-data; boundary="a;b"',
        "multipart/form-data",
        "application/json",
        "text/plain",
    ]
)


@FAST
@given(ctype=st.one_of(form_types, any_text), body=st.binary(max_size=2000))
def test_extract_form_token_never_raises(ctype: str, body: bytes) -> None:
    found = csrf.extract_form_token(ctype, body, "csrf_token")
    assert found is None or isinstance(found, str)
    media = ctype.split(";", 1)[0].strip().lower()
    if media not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        assert found is None


@FAST
@given(
    token=st.text(alphabet="abcXYZ019-_", min_size=1, max_size=90), filler=st.binary(max_size=200)
)
def test_multipart_file_part_named_like_the_token_never_counts(token: str, filler: bytes) -> None:
    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="csrf_token"; filename="t.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\n" + token.encode() + b"\r\n"
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="note"\r\n\r\n'
        + filler.replace(b"--XyZ", b"")
        + b"\r\n"
        b"--XyZ--\r\n"
    )
    assert csrf.extract_form_token("multipart/form-data; boundary=XyZ", body, "csrf_token") is None


# -- proxies -------------------------------------------------------------------------------------

PROXIES = TrustedProxies(("10.0.0.0/8", "fd00::/8"))
header_names = st.sampled_from(
    ["forwarded", "x-forwarded-for", "x-forwarded-proto", "X-Forwarded-For"]
)
ip_like = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]:443"),
    st.sampled_from(["unknown", "_hidden", "", "1.2.3.4:99999", '"for=1.2.3.4"']),
)
fwd_value = st.one_of(
    any_text,
    st.lists(ip_like, max_size=5).map(", ".join),
    st.lists(st.tuples(ip_like, st.sampled_from(["http", "https", "ftp", ""])), max_size=4).map(
        lambda items: ", ".join(f"for={ip};proto={p}" if p else f"for={ip}" for ip, p in items)
    ),
)
headers_st = st.lists(st.tuples(header_names, fwd_value), max_size=4)


@FAST
@example(peer="203.0.113.9", headers=[("x-forwarded-for", "127.0.0.1")], scheme="http")
@given(
    peer=st.one_of(
        st.sampled_from(["203.0.113.9", "2001:db8::1", "", "junk", "::1"]),
        st.ip_addresses().map(str).filter(lambda a: not a.startswith(("10.", "fd"))),
    ),
    headers=headers_st,
    scheme=st.sampled_from(["http", "https"]),
)
def test_untrusted_peer_headers_are_ignored(
    peer: str, headers: list[tuple[str, str]], scheme: str
) -> None:
    try:
        ip = ipaddress.ip_address(peer)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if PROXIES.is_trusted(ip):
            return
        expected = str(ip)
    except ValueError:
        expected = ""
    assert PROXIES.resolve(peer, scheme, headers) == (expected, scheme)


@FAST
@given(
    peer=st.sampled_from(["10.0.0.1", "10.200.3.4", "fd00::1", "::ffff:10.1.1.1"]),
    headers=headers_st,
    scheme=st.sampled_from(["http", "https"]),
)
def test_trusted_peer_yields_an_address_and_a_known_scheme(
    peer: str, headers: list[tuple[str, str]], scheme: str
) -> None:
    client, got = PROXIES.resolve(peer, scheme, headers)
    ipaddress.ip_address(client)  # never arbitrary header text
    assert got in ("http", "https")


FORWARDED_PROXIES = TrustedProxies(("10.0.0.0/8", "fd00::/8"), header="forwarded")
UNIX_PROXIES = TrustedProxies(("unix",))


def _outside(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not PROXIES.is_trusted(address)


#: What our trusted proxy writes: the address it saw (a client outside our proxies' networks),
#: appended or as the only entry.
proxy_seen = st.ip_addresses().filter(_outside).map(str)
trusted_peers = st.sampled_from(["10.0.0.1", "fd00::1", "::ffff:10.1.1.1"])


@FAST
@example(
    client_headers=[("forwarded", "for=1.1.1.1;proto=https")],
    client_guess=["9.9.9.9"],
    seen="203.0.113.7",
    proto="http",
    peer="10.0.0.1",
)
@given(
    client_headers=headers_st,
    client_guess=st.lists(ip_like, max_size=3),
    seen=proxy_seen,
    proto=st.sampled_from(["http", "https"]),
    peer=trusted_peers,
)
def test_a_client_controlled_header_never_changes_the_resolved_client_x_forwarded_for(
    client_headers: list[tuple[str, str]],
    client_guess: list[str],
    seen: str,
    proto: str,
    peer: str,
) -> None:
    """Proxies that set X-Forwarded-For (the default): whatever the client sends (Forwarded,
    its own X-Forwarded-For and -Proto entries, which our proxy appends to), the resolved
    client is the address the trusted proxy saw, and the scheme the one it reported."""
    proxy_only = [("x-forwarded-for", seen), ("x-forwarded-proto", proto)]
    expected = PROXIES.resolve(peer, "http", proxy_only)
    # The client's own forwarding headers: Forwarded passes through untouched, while
    # X-Forwarded-For / -Proto it sent end up to the left of what our proxy appends.
    passed = [(n, v) for n, v in client_headers if n.lower() == "forwarded"]
    guess = ", ".join([*client_guess, seen])
    appended = [("x-forwarded-for", guess), ("x-forwarded-proto", proto), *passed]
    assert PROXIES.resolve(peer, "http", appended)[0] == expected[0]
    assert PROXIES.resolve(peer, "http", [*passed, *proxy_only]) == expected


@FAST
@given(client_headers=headers_st, seen=proxy_seen, peer=trusted_peers)
def test_a_client_controlled_header_never_changes_the_resolved_client_forwarded(
    client_headers: list[tuple[str, str]], seen: str, peer: str
) -> None:
    """Proxies that set Forwarded (and overwrite it): X-Forwarded-* from the client change
    nothing."""
    node = f'"[{seen}]"' if ":" in seen else seen
    proxy_only = [("forwarded", f"for={node};proto=https")]
    expected = FORWARDED_PROXIES.resolve(peer, "http", proxy_only)
    assert expected[1] == "https" and expected[0] != peer
    passed = [(n, v) for n, v in client_headers if n.lower() != "forwarded"]
    assert FORWARDED_PROXIES.resolve(peer, "http", [*passed, *proxy_only]) == expected
    assert FORWARDED_PROXIES.resolve(peer, "http", [*proxy_only, *passed]) == expected


@FAST
@given(client_headers=headers_st, seen=proxy_seen)
def test_a_unix_socket_proxy_is_read_like_any_trusted_one(
    client_headers: list[tuple[str, str]], seen: str
) -> None:
    passed = [(n, v) for n, v in client_headers if n.lower() == "forwarded"]
    headers = [("x-forwarded-for", seen), *passed]
    assert (
        UNIX_PROXIES.resolve("", "http", headers)[0]
        == PROXIES.resolve("10.0.0.1", "http", [("x-forwarded-for", seen)])[0]
    )


# -- origins -------------------------------------------------------------------------------------

POLICY = CsrfPolicy(trusted_origins=("https://partner.test",))
sites = st.one_of(
    st.sampled_from([None, "same-origin", "none", "same-site", "cross-site", ""]), any_text
)
origins = st.one_of(
    st.sampled_from(
        [
            None,
            "null",
            "https://evil.test",
            "https://app.test",
            "https://partner.test",
            "http://app.test",
            "https://app.test:443",
            "https://app.test.evil.test",
        ]
    ),
    any_text,
)


@FAST
@given(
    method=st.sampled_from(["POST", "PUT", "DELETE", "PATCH"]),
    site=sites,
    origin=origins,
    scheme=st.sampled_from(["http", "https"]),
    host=st.one_of(st.sampled_from(["app.test", "app.test:8443", "[::1]:8000", ""]), any_text),
)
def test_unsafe_cross_site_request_never_ok_without_trusted_origin(
    method: str, site: str | None, origin: str | None, scheme: str, host: str
) -> None:
    facts = RequestFacts(
        method=method,
        scheme=scheme,
        host=host.lower(),
        path="/transfer",
        client_ip="203.0.113.1",
        origin=origin,
        sec_fetch_site=site,
    )
    verdict = csrf.cross_origin_verdict(facts, POLICY)
    trusted = origin is not None and origin.strip().lower() == "https://partner.test"
    s = (site or "").strip()
    if s and s not in ("same-origin", "none"):
        assert verdict.ok == trusted
    if not s and origin is not None and verdict.ok and not trusted:
        assert verdict.reason == "origin-matches-host"
        o = origin.strip().lower()
        assert o.startswith(scheme + "://")
        assert "evil" not in o or "evil" in host.lower()


@FAST
@given(
    evil=st.from_regex(r"[a-z]{1,10}\.(test|example)", fullmatch=True), port=st.integers(1, 65535)
)
def test_another_host_is_never_same_origin(evil: str, port: int) -> None:
    facts = RequestFacts(
        method="POST",
        scheme="https",
        host="app.test",
        path="/",
        client_ip="203.0.113.1",
        origin=f"https://{evil}:{port}",
    )
    if evil != "app.test":
        assert not csrf.cross_origin_verdict(facts, POLICY).ok


# -- store URLs ------------------------------------------------------------------------------------


@FAST
@given(
    url=st.one_of(
        any_text,
        st.tuples(
            st.sampled_from(
                [
                    "redis://",
                    "rediss://",
                    "sqlite:///",
                    "sqlite:////",
                    "memory://",
                    "REDIS://",
                    "sqlite://",
                ]
            ),
            any_text,
        ).map("".join),
    )
)
def test_parse_store_url_raises_only_value_error(url: str) -> None:
    try:
        spec = parse_store_url(url)
    except ValueError:
        return
    assert spec.kind in ("memory", "sqlite", "redis")
    if spec.kind == "sqlite":
        assert spec.path and "\x00" not in spec.path
    if spec.kind == "redis":
        assert spec.url.startswith(("redis://", "rediss://")) and "?" not in spec.url
