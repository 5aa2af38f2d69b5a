"""The guard reads the same facts from a WSGI environ as from ASGI's byte headers, and the
headers it adds to a response do not depend on the app's unrelated headers."""

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
            allowed_hosts=("*",),
            csrf=CsrfPolicy(header_name=token_header),
            https=HttpsPolicy(trusted_proxies=("127.0.0.1/32",)),
        )
    )


@pytest.mark.parametrize("token_header", ["x-csrf-token", "host", "x-forwarded-for", "cookie"])
@pytest.mark.parametrize("headers", HEADERS)
def test_wsgi_environ_facts_equal_asgi_header_facts(
    token_header: str, headers: list[tuple[str, str]]
) -> None:
    """The WSGI adapter hands the guard an environ's headers as ASGI would send them. An environ
    holds one value per name (the server joins repeated headers: cookies with "; ", others
    with ", "), so the ASGI request compared is the one with those joined headers."""
    from sessionwarden.wsgi import environ_facts

    g = guard(token_header)
    joined: dict[str, list[str]] = {}
    for name, value in headers:
        joined.setdefault(name, []).append(value)
    single = {name: ("; " if name == "cookie" else ", ").join(v) for name, v in joined.items()}
    environ: dict[str, object] = {
        "REQUEST_METHOD": "post",
        "wsgi.url_scheme": "http",
        "PATH_INFO": "/p",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_X_NOT_READ": "ignored",
    }
    for name, value in single.items():
        key = "CONTENT_TYPE" if name == "content-type" else "HTTP_" + name.upper().replace("-", "_")
        environ[key] = value
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in single.items()]
    asgi = g.facts(method="post", scheme="http", path="/p", peer_ip="127.0.0.1", headers=raw)
    assert environ_facts(g, environ) == asgi


def test_facts_join_a_repeated_single_header_and_read_every_cookie() -> None:
    """A repeated header is one list-valued field (RFC 9110 5.3), as a WSGI server joins it:
    no copy overrides another, so no list passes for one ``same-origin`` or one host."""
    facts = guard().facts(
        method="get",
        scheme="https",
        path="/",
        peer_ip="198.51.100.7",
        headers=[
            (b"cookie", b"a=1"),
            (b"host", b"A.test"),
            (b"sec-fetch-site", b"cross-site"),
            (b"cookie", b"b=2"),
            (b"host", b" B.Test "),
            (b"sec-fetch-site", b"same-origin"),
            (b"x-csrf-token", b" t "),
        ],
    )
    assert facts.method == "GET"
    assert facts.host == "a.test,  b.test"
    assert facts.sec_fetch_site == "cross-site, same-origin"
    assert facts.cookie_header == "a=1; b=2"
    assert facts.csrf_header == "t"
    assert facts.client_ip == "198.51.100.7"


def test_a_token_header_named_like_a_read_header_is_not_a_token() -> None:
    facts = guard("host").facts(
        method="GET", scheme="https", path="/", peer_ip="", headers=[(b"host", b"a.test")]
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
def test_the_common_response_gets_what_any_response_without_our_headers_gets(
    https: bool,
    nonce: str,
    set_cookie: str | None,
    clear_cookie: bool,
    authenticated: bool,
    logged_out: bool,
    no_store: bool,
) -> None:
    """The adapters pass an empty set of names when the app set none of the guard's headers
    (the common response, no set built); the guard answers exactly as when it is told the
    app's unrelated header names, and adds the cookie, ``no-store`` and HSTS when due."""
    from sessionwarden.core import Outcome
    from sessionwarden.guard import RequestContext
    from sessionwarden.policy import HeadersPolicy

    g = Guard(
        Policy(
            secret_keys=(SECRET,), allowed_hosts=("*",), headers=HeadersPolicy(no_store=no_store)
        )
    )
    scheme = "https" if https else "http"
    facts = g.facts(
        method="GET", scheme=scheme, path="/", peer_ip="127.0.0.1", headers=[(b"host", b"a.test")]
    )
    ctx = RequestContext(facts, nonce=nonce, clear_cookie=clear_cookie)
    outcome = Outcome(set_cookie, authenticated, logged_out)
    common, drop = g.response_headers(ctx, outcome, frozenset())
    general, general_drop = g.response_headers(ctx, outcome, {b"x-app", b"content-type"})
    assert not drop and not general_drop
    assert common == general
    names = [name for name, _ in common]
    assert (b"set-cookie" in names) == (set_cookie is not None or clear_cookie)
    wants_no_store = no_store and (set_cookie is not None or clear_cookie or authenticated)
    assert ((b"cache-control", b"no-store") in common) == wants_no_store
    assert (b"strict-transport-security" in names) == https
