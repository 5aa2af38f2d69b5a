"""Cross-origin verdicts, token verdicts and form-token extraction, as tables."""

from __future__ import annotations

import time
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionwarden.csrf import (
    Verdict,
    cross_origin_verdict,
    extract_form_token,
    is_exempt,
    token_verdict,
)
from sessionwarden.facts import RequestFacts
from sessionwarden.policy import CsrfPolicy
from sessionwarden.tokens import mask_token, new_csrf_secret

HOST = "app.example"
TRUSTED = "https://partner.example"
POLICY = CsrfPolicy(trusted_origins=(TRUSTED,), exempt_paths=("/hooks",))


def facts(
    method: str = "POST",
    *,
    site: str | None = None,
    origin: str | None = None,
    host: str = HOST,
    scheme: str = "https",
    path: str = "/account",
) -> RequestFacts:
    return RequestFacts(
        method=method,
        scheme=scheme,
        host=host,
        path=path,
        client_ip="203.0.113.7",
        origin=origin,
        sec_fetch_site=site,
    )


# --- cross_origin_verdict: the full grid ---------------------------------------------------------

ORIGINS = {
    "absent": None,
    "same": "https://app.example",
    "other-host": "https://evil.example",
    "other-port": "https://app.example:8443",
    "other-scheme": "http://app.example",
    "null": "null",
    "trusted": TRUSTED,
    "malformed": "https://app.example/path",
}
SITES = {
    "absent": None,
    "same-origin": "same-origin",
    "none": "none",
    "same-site": "same-site",
    "cross-site": "cross-site",
    "junk": "Same-Origin",  # header values are case-sensitive tokens
}
# Expected reason for an unsafe method: rows are Sec-Fetch-Site, columns are Origin.
# Reasons with ok=True: see PASSING below.
GRID: dict[str, dict[str, str]] = {
    "absent": {
        "absent": "no-browser-headers",
        "same": "origin-matches-host",
        "other-host": "origin-mismatch",
        "other-port": "origin-mismatch",
        "other-scheme": "origin-mismatch",
        "null": "null-origin",
        "trusted": "trusted-origin",
        "malformed": "malformed-origin",
    },
    "same-origin": dict.fromkeys(ORIGINS, "same-origin-fetch"),
    "none": dict.fromkeys(ORIGINS, "user-initiated"),
    "same-site": {**dict.fromkeys(ORIGINS, "cross-site-fetch"), "trusted": "trusted-origin"},
    "cross-site": {**dict.fromkeys(ORIGINS, "cross-site-fetch"), "trusted": "trusted-origin"},
    "junk": {**dict.fromkeys(ORIGINS, "cross-site-fetch"), "trusted": "trusted-origin"},
}
PASSING = {
    "disabled",
    "safe-method",
    "exempt-path",
    "same-origin-fetch",
    "user-initiated",
    "trusted-origin",
    "origin-matches-host",
    "no-browser-headers",
}
SAFE = ("GET", "HEAD", "OPTIONS")
UNSAFE = ("POST", "PUT", "PATCH", "DELETE", "TRACE", "PROPFIND")


@pytest.mark.parametrize("origin_key", list(ORIGINS))
@pytest.mark.parametrize("site_key", list(SITES))
@pytest.mark.parametrize("method", SAFE + UNSAFE)
def test_grid(method: str, site_key: str, origin_key: str) -> None:
    verdict = cross_origin_verdict(
        facts(method, site=SITES[site_key], origin=ORIGINS[origin_key]), POLICY
    )
    expected = "safe-method" if method in SAFE else GRID[site_key][origin_key]
    assert verdict == Verdict(expected in PASSING, expected)


@pytest.mark.parametrize(
    ("origin", "reason"),
    [
        ("https://app.example:443", "origin-matches-host"),  # default port == no port
        ("HTTPS://APP.EXAMPLE", "origin-matches-host"),
        (" https://app.example ", "origin-matches-host"),
        ("https://app.example.", "origin-mismatch"),
        ("https://app.example.evil.example", "origin-mismatch"),
        ("https://evil-app.example", "origin-mismatch"),
        ("https://app.example:80", "origin-mismatch"),
        ("HTTPS://Partner.Example", "trusted-origin"),  # trusted match ignores case
        ("https://partner.example:443", "origin-mismatch"),  # trusted match is exact
        ("https://partner.example/", "malformed-origin"),
        ("app.example", "malformed-origin"),
        ("https://", "malformed-origin"),
        ("://app.example", "malformed-origin"),
        ("https://app example", "malformed-origin"),
        ("https://user@app.example", "malformed-origin"),
        ("https://app.example?x", "malformed-origin"),
        ("https://app.example#x", "malformed-origin"),
        ("https://app.example:", "malformed-origin"),
        ("https://app.example:99999", "malformed-origin"),
        ("https://app.example:-1", "malformed-origin"),
        ("https://app.example:٤٤٣", "malformed-origin"),  # non-ASCII digits
        ("https://app.exämple", "malformed-origin"),
        ("https://[::1", "malformed-origin"),
        ("https://[zz]", "malformed-origin"),
        ("h ttps://app.example", "malformed-origin"),
        ("https://" + "a" * 5000, "malformed-origin"),
        ("\x00", "malformed-origin"),
        ("", "malformed-origin"),
        ("NULL", "malformed-origin"),
    ],
)
def test_origin_without_fetch_metadata(origin: str, reason: str) -> None:
    assert cross_origin_verdict(facts(origin=origin), POLICY) == Verdict(reason in PASSING, reason)


@pytest.mark.parametrize(
    ("scheme", "host", "origin", "ok"),
    [
        ("https", "app.example:443", "https://app.example", True),
        ("https", "app.example:8443", "https://app.example:8443", True),
        ("https", "app.example:8443", "https://app.example", False),
        ("http", "localhost:8000", "http://localhost:8000", True),
        ("http", "localhost:8000", "https://localhost:8000", False),
        ("http", "[::1]:8000", "http://[::1]:8000", True),
        ("http", "127.0.0.1:8000", "http://localhost:8000", False),
        ("https", "", "https://app.example", False),
        ("https", "app.example:junk", "https://app.example", False),
    ],
)
def test_origin_compared_with_this_request(scheme: str, host: str, origin: str, ok: bool) -> None:
    verdict = cross_origin_verdict(facts(scheme=scheme, host=host, origin=origin), POLICY)
    assert verdict.ok is ok


@pytest.mark.parametrize(
    ("site", "reason"),
    [
        ("", "no-browser-headers"),  # an empty header is no header
        (" same-origin ", "same-origin-fetch"),
        ("cross-site, same-origin", "cross-site-fetch"),
        ("\x00", "cross-site-fetch"),
    ],
)
def test_fetch_site_edge_values(site: str, reason: str) -> None:
    assert cross_origin_verdict(facts(site=site), POLICY).reason == reason


def test_disabled_policy_passes_everything() -> None:
    off = CsrfPolicy(enabled=False)
    assert cross_origin_verdict(facts(site="cross-site"), off) == Verdict(True, "disabled")


@pytest.mark.parametrize("site", [None, "cross-site", "same-site"])
def test_exempt_path_passes_cross_site(site: str | None) -> None:
    verdict = cross_origin_verdict(
        facts(site=site, origin="https://stripe.example", path="/hooks/stripe"), POLICY
    )
    assert verdict == Verdict(True, "exempt-path")


@pytest.mark.parametrize(
    ("prefixes", "path", "exempt"),
    [
        (("/hooks",), "/hooks", True),
        (("/hooks",), "/hooks/", True),
        (("/hooks",), "/hooks/stripe", True),
        (("/hooks",), "/hooks/a/b", True),
        (("/hooks",), "/hooksx", False),
        (("/hooks",), "/hook", False),
        (("/hooks",), "/other/hooks", False),
        (("/hooks",), "/Hooks", False),
        (("/hooks",), "/hooks/../admin", False),
        (("/hooks",), "/hooks/./x", False),
        (("/hooks",), "/hooks/..", False),
        (("/hooks",), "/hooks/.well-known", True),
        (("/hooks/",), "/hooks", False),  # CVE-2025-47910: no widening to the bare path
        (("/hooks/",), "/hooks/", True),
        (("/hooks/",), "/hooks/x", True),
        (("/hooks/",), "//hooks/", False),
        (("/hooks/",), "/hooks/../admin", False),
        (("/api/hooks", "/ping"), "/ping", True),
        (("/api/hooks", "/ping"), "/api/hooks/x", True),
        (("/api/hooks", "/ping"), "/api", False),
        (("/",), "/anything", True),
        ((), "/hooks", False),
    ],
)
def test_is_exempt(prefixes: tuple[str, ...], path: str, exempt: bool) -> None:
    assert is_exempt(path, CsrfPolicy(exempt_paths=prefixes)) is exempt


# --- token_verdict -------------------------------------------------------------------------------

SECRET = new_csrf_secret()


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def test_token_round_trip() -> None:
    assert token_verdict(mask_token(SECRET), SECRET) == Verdict(True, "token-ok")


def test_every_rendering_differs_and_verifies() -> None:
    tokens = {mask_token(SECRET) for _ in range(200)}
    assert len(tokens) == 200
    assert all(token_verdict(t, SECRET).ok for t in tokens)


_TOKEN = mask_token(SECRET)


@pytest.mark.parametrize(
    ("presented", "reason"),
    [
        (None, "missing-token"),
        ("", "missing-token"),
        (mask_token(new_csrf_secret()), "bad-token"),  # another session's token
        (_flip(_TOKEN, 5), "bad-token"),  # tampered mask
        (_flip(_TOKEN, 50), "bad-token"),  # tampered masked half
        (_TOKEN[:-1], "malformed-token"),  # truncated
        (_TOKEN + "A", "malformed-token"),  # extended
        (_TOKEN[:-1] + "é", "malformed-token"),  # non-ASCII
        (_TOKEN[:-1] + "\ud800", "malformed-token"),  # lone surrogate
        (_TOKEN[:-1] + "=", "malformed-token"),
        (_TOKEN[:-1] + "+", "malformed-token"),  # standard, not URL-safe, alphabet
        (" " + _TOKEN[1:], "malformed-token"),
        (SECRET, "malformed-token"),  # the unmasked secret itself
        ("x" * 10_000, "malformed-token"),
    ],
)
def test_token_refusals(presented: str | None, reason: str) -> None:
    assert token_verdict(presented, SECRET) == Verdict(False, reason)


def test_token_against_malformed_secret_is_refused() -> None:
    assert token_verdict(_TOKEN, "not-a-secret") == Verdict(False, "bad-token")


# --- extract_form_token: urlencoded --------------------------------------------------------------

URLENC = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        (URLENC, b"a=1&csrf_token=TOK&b=2", "TOK"),
        (URLENC, b"csrf_token=TOK", "TOK"),
        (URLENC + "; charset=UTF-8", b"csrf_token=TOK", "TOK"),
        ("Application/X-WWW-Form-URLEncoded", b"csrf_token=TOK", "TOK"),
        (URLENC, b"csrf_token=a%2Bb%3D", "a+b="),
        (URLENC, b"csrf_token=first&csrf_token=second", "first"),
        (URLENC, b"csrf_token=", ""),
        (URLENC, b"a=1", None),
        (URLENC, b"", None),
        (URLENC, b"csrf_token", None),  # strict: a field without "=" is junk
        (URLENC, b"a=1&&csrf_token=TOK", None),
        (URLENC, b"csrf_token=TOK;a=1", "TOK;a=1"),  # ";" is not a separator
        (URLENC, b"\xff\xfe=\x00&csrf_token=TOK", "TOK"),
        (URLENC, b"&".join([b"f=1"] * 1001) + b"&csrf_token=TOK", None),  # too many fields
        ("application/json", b'{"csrf_token": "TOK"}', None),
        ("text/plain", b"csrf_token=TOK", None),
        ("", b"csrf_token=TOK", None),
    ],
)
def test_urlencoded(content_type: str, body: bytes, expected: str | None) -> None:
    assert extract_form_token(content_type, body, "csrf_token") == expected


def test_custom_field_name() -> None:
    assert extract_form_token(URLENC, b"_csrf=T&csrf_token=X", "_csrf") == "T"


# --- extract_form_token: multipart ---------------------------------------------------------------

BOUNDARY = "----WebKitFormBoundary7MA4YWxkTrZu0gW"
MULTI = f"multipart/form-data; boundary={BOUNDARY}"


def part(disposition: str, content: bytes, *extra_headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in (f"Content-Disposition: {disposition}", *extra_headers))
    return f"--{BOUNDARY}\r\n{head}\r\n".encode() + content + b"\r\n"


def multipart(*parts: bytes, close: bool = True) -> bytes:
    return b"".join(parts) + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


TOKEN_PART = part('form-data; name="csrf_token"', b"TOK")
TEXT_PART = part('form-data; name="title"', b"hello\r\n--not-a-boundary")
FILE_PART = part(
    'form-data; name="csrf_token"; filename="evil.txt"', b"FILE", "Content-Type: text/plain"
)


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        (MULTI, multipart(TOKEN_PART), "TOK"),
        (MULTI, multipart(TEXT_PART, TEXT_PART, TOKEN_PART), "TOK"),  # a later part
        (MULTI, multipart(FILE_PART, TOKEN_PART), "TOK"),  # the file part is ignored
        (MULTI, multipart(FILE_PART), None),
        (
            MULTI,
            multipart(part("form-data; name=\"csrf_token\"; filename*=UTF-8''x.txt", b"F")),
            None,
        ),
        (MULTI, multipart(TEXT_PART), None),
        (MULTI, multipart(part("form-data; name=csrf_token", b"TOK")), "TOK"),  # unquoted
        (MULTI, multipart(part('FORM-DATA; NAME="csrf_token"', b"TOK")), "TOK"),
        (MULTI, multipart(part('form-data; name="csrf_token_2"', b"X"), TOKEN_PART), "TOK"),
        (MULTI, multipart(part('form-data; name="CSRF_TOKEN"', b"X")), None),  # names are exact
        (MULTI, multipart(part('attachment; name="csrf_token"', b"X")), None),
        (MULTI, multipart(part('form-data; name="csrf_token"', b"TOK\r\n")), "TOK"),
        (MULTI, multipart(part('form-data; name="csrf_token"', b"")), ""),
        (
            MULTI,
            multipart(part('form-data; filename="a; name=\\"csrf_token\\""; name="x"', b"X")),
            None,
        ),
        (MULTI, multipart(TOKEN_PART, part('form-data; name="csrf_token"', b"SECOND")), "TOK"),
        (MULTI, b"preamble text\r\n" + multipart(TOKEN_PART), "TOK"),
        (
            MULTI,
            multipart(TOKEN_PART).replace(
                f"--{BOUNDARY}\r\n".encode(), f"--{BOUNDARY}  \r\n".encode()
            ),
            "TOK",
        ),  # transport padding after the delimiter
        (f'multipart/form-data; boundary="{BOUNDARY}"', multipart(TOKEN_PART), "TOK"),
        (f"Multipart/Form-Data; charset=utf-8; BOUNDARY={BOUNDARY}", multipart(TOKEN_PART), "TOK"),
        (MULTI, multipart(TOKEN_PART, close=False), None),  # no delimiter after: maybe cut short
        (MULTI, multipart(TOKEN_PART)[:-30], None),  # truncated inside the token part
        (MULTI, multipart(TOKEN_PART).replace(b"\r\n", b"\n"), None),  # bare LF is not MIME
        ("multipart/form-data", multipart(TOKEN_PART), None),  # missing boundary
        ("multipart/form-data; boundary=", multipart(TOKEN_PART), None),
        ("multipart/form-data; boundary=" + "b" * 71, multipart(TOKEN_PART), None),
        ('multipart/form-data; boundary="unterminated', multipart(TOKEN_PART), None),
        ("multipart/form-data; boundary=a\x00b", multipart(TOKEN_PART), None),
        (MULTI, b"", None),
        (MULTI, b"\x00\xff junk", None),
        (MULTI, f"--{BOUNDARY}--\r\n".encode(), None),
        (MULTI, f"--{BOUNDARY}\r\nno blank line".encode(), None),
        (MULTI, f"--{BOUNDARY}junk\r\n".encode() + TOKEN_PART, None),
    ],
)
def test_multipart(content_type: str, body: bytes, expected: str | None) -> None:
    assert extract_form_token(content_type, body, "csrf_token") == expected


def test_multipart_part_without_headers_is_skipped() -> None:
    body = f"--{BOUNDARY}\r\n\r\nloose\r\n".encode() + multipart(TOKEN_PART)
    assert extract_form_token(MULTI, body, "csrf_token") == "TOK"


@pytest.mark.parametrize(
    "body",
    [
        (f"\r\n--{BOUNDARY}\r\n\r\n".encode()) * 50_000,  # a flood of empty parts
        b"\r\n--" * 200_000,  # near-misses of the delimiter
        f"--{BOUNDARY}\r\nContent-Disposition: ".encode() + b'"' * 500_000,
        f"--{BOUNDARY}\r\n".encode() + b"X: y\r\n" * 150_000,  # endless headers
        (
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=".encode()
            + b'"a;' * 2600
            + b"\r\n\r\nx\r\n"
        )
        * 130,  # every part's header at the size limit, full of quotes
    ],
)
def test_hostile_multipart_is_cheap(body: bytes) -> None:
    # CPU time of this process, not wall time: the work the parser does, whatever else the
    # machine runs (the worst body takes about 0.2 s; a super-linear scan would take minutes).
    start = time.process_time()
    assert extract_form_token(MULTI, body, "csrf_token") is None
    assert time.process_time() - start < 1.5


# --- never raise ---------------------------------------------------------------------------------

_fragments = st.sampled_from(
    [
        b"--b",
        b"\r\n",
        b"\r\n\r\n",
        b'Content-Disposition: form-data; name="csrf_token"',
        b"; filename=x",
        b'"',
        b"\\",
        b";",
        b"=",
        b"TOK",
        b"--",
        b"\xff",
    ]
)
_content_types = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [URLENC, "multipart/form-data; boundary=b", 'multipart/form-data; boundary="b"']
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    method=st.text(max_size=10),
    scheme=st.text(max_size=8),
    host=st.text(max_size=40),
    path=st.text(max_size=40),
    origin=st.none() | st.text(max_size=60) | st.sampled_from(list(ORIGINS.values())),
    site=st.none() | st.text(max_size=20) | st.sampled_from(list(SITES.values())),
)
def test_cross_origin_verdict_never_raises(
    method: str, scheme: str, host: str, path: str, origin: str | None, site: str | None
) -> None:
    verdict = cross_origin_verdict(
        RequestFacts(
            method=method,
            scheme=scheme,
            host=host,
            path=path,
            client_ip="",
            origin=origin,
            sec_fetch_site=site,
        ),
        POLICY,
    )
    assert verdict.reason


@settings(max_examples=300, deadline=None)
@given(presented=st.none() | st.text(max_size=120), secret=st.text(max_size=60))
def test_token_verdict_never_raises(presented: str | None, secret: str) -> None:
    assert token_verdict(presented, secret).ok is False


@settings(max_examples=500, deadline=None)
@given(
    content_type=_content_types,
    body=st.binary(max_size=300) | st.lists(_fragments, max_size=40).map(b"".join),
    field=st.text(max_size=12) | st.just("csrf_token"),
)
def test_extract_form_token_never_raises(content_type: str, body: bytes, field: str) -> None:
    result = extract_form_token(content_type, body, field)
    assert result is None or isinstance(result, str)


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=200))
def test_urlencoded_round_trip(value: str) -> None:
    body = urllib.parse.urlencode({"a": "1", "csrf_token": value}).encode()
    assert extract_form_token(URLENC, body, "csrf_token") == value
