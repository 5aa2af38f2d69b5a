"""The guard reads the same facts from ASGI's byte headers as from decoded text headers, and its
shortcut for the common response adds the same headers as the general path."""

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


@pytest.mark.parametrize("https", [True, False])
@pytest.mark.parametrize("nonce", ["", "bm9uY2Utb2YtdGhlLXRlc3Q="])
@pytest.mark.parametrize("set_cookie", [None, "__Host-id=x; Path=/"])
@pytest.mark.parametrize("clear_cookie", [False, True])
@pytest.mark.parametrize("authenticated", [False, True])
@pytest.mark.parametrize("logged_out", [False, True])
@pytest.mark.parametrize("no_store", [False, True])
def test_the_common_response_path_adds_what_the_general_one_adds(
    https: bool,
    nonce: str,
    set_cookie: str | None,
    clear_cookie: bool,
    authenticated: bool,
    logged_out: bool,
    no_store: bool,
) -> None:
    """The shortcut the adapters take when the app set none of our headers answers exactly
    as ``response_headers`` does, or declines (``None``) and leaves it to it."""
    from sessionwarden.core import Outcome
    from sessionwarden.guard import Begun
    from sessionwarden.policy import HeadersPolicy

    g = Guard(Policy(secret_keys=(SECRET,), headers=HeadersPolicy(no_store=no_store)))
    scheme = "https" if https else "http"
    facts = g.facts(
        method="GET", scheme=scheme, path="/", peer_ip="127.0.0.1", raw_headers=[("host", "a.test")]
    )
    begun = Begun(facts, nonce=nonce, clear_cookie=clear_cookie)
    outcome = Outcome(set_cookie, authenticated, logged_out)
    general, drop = g.response_headers(begun, outcome, frozenset())
    common = g.common_response_headers(begun, outcome)
    assert not drop
    if common is not None:
        assert common == general
    else:
        assert set_cookie is not None or clear_cookie or logged_out
