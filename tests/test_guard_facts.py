"""The guard reads the same facts from ASGI's byte headers as from decoded text headers."""

from __future__ import annotations

import pytest

from sessionwarden.guard import Guard
from sessionwarden.policy import CsrfPolicy, HttpsPolicy, Policy

SECRET = b"guard-facts-test-secret-0123456789abcdef"

HEADERS: list[list[tuple[str, str]]] = [
    [],
    [("host", " App.Example:8443 "), ("user-agent", "UA/1"), ("accept", "text/html")],
    [
        ("cookie", "a=1"),
        ("x-other", "z"),
        ("cookie", "b=2"),
        ("host", "a.test"),
        ("host", "b.test"),
    ],
    [("x-csrf-token", "  tok  "), ("origin", "https://a.test"), ("sec-fetch-site", "same-origin")],
    [("content-type", "application/json"), ("accept-language", "fr"), ("accept", "*/*")],
    [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=1.2.3.4"),
    ],
    [("host", "h\xe9.test"), ("user-agent", "caf\xe9")],
]


def guard(token_header: str = "x-csrf-token") -> Guard:
    return Guard(
        Policy(
            secret_keys=(SECRET,),
            csrf=CsrfPolicy(header_name=token_header),
            https=HttpsPolicy(trusted_proxies=("127.0.0.1/32",)),
        )
    )


@pytest.mark.parametrize("token_header", ["x-csrf-token", "host", "x-forwarded-for", "cookie"])
@pytest.mark.parametrize("headers", HEADERS)
def test_raw_facts_equal_decoded_facts(token_header: str, headers: list[tuple[str, str]]) -> None:
    g = guard(token_header)
    common = {"method": "post", "scheme": "http", "path": "/p", "peer_ip": "127.0.0.1"}
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    assert g.raw_facts(**common, raw_headers=raw) == g.facts(**common, raw_headers=headers)


def test_facts_read_the_last_single_header_and_every_cookie() -> None:
    facts = guard().raw_facts(
        method="get",
        scheme="https",
        path="/",
        peer_ip="198.51.100.7",
        raw_headers=[
            (b"cookie", b"a=1"),
            (b"host", b"A.test"),
            (b"cookie", b"b=2"),
            (b"host", b" B.Test "),
            (b"x-csrf-token", b" t "),
        ],
    )
    assert facts.method == "GET"
    assert facts.host == "b.test"
    assert facts.cookie_header == "a=1; b=2"
    assert facts.csrf_header == "t"
    assert facts.client_ip == "198.51.100.7"


def test_a_token_header_named_like_a_read_header_is_not_a_token() -> None:
    facts = guard("host").facts(
        method="GET", scheme="https", path="/", peer_ip="", raw_headers=[("host", "a.test")]
    )
    assert facts.host == "a.test"
    assert facts.csrf_header is None
