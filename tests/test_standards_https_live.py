"""HTTPS enforcement, proxies, hosts and caching checked from outside, against live servers.

Each adapter runs in a process of its own (uvicorn for the ASGI middleware around Starlette,
Werkzeug's server for Flask over WSGI; ``tests/live_https.py``) with plain-HTTP and TLS listeners
on loopback ports, a real certificate for ``app.test`` and one SQLite store. The tests speak HTTP
over sockets with httpx and its cookie jar (which, like a browser, never sends a ``Secure``
cookie over plain HTTP: where a test sends one there, it does so by hand, as a careless client or
a sniffed copy would), and assert only statuses, headers, bodies and, to show that no session
was created, the number of sessions the store file holds.

Items (OWASP ASVS 5.0 and the cheat sheets, as listed in the requirements): plain HTTP is
redirected, API paths refused, and no cookie is ever set or a session made over plain HTTP, even
with the redirect off (ASVS 4.1.2, 12.2.1; Session Management cheat sheet "Transport Layer
Security"); a forged ``X-Forwarded-Proto``/``Forwarded`` from a peer that is not a trusted proxy
changes nothing (4.1.3); the first ``Set-Cookie`` of a session comes over HTTPS; hosts outside
the allowlist get 400 and never a ``Location`` to them; production mode refuses to start with an
insecure configuration (13.4.2); ``Cache-Control: no-store`` on every signed-in and
cookie-setting response, never ``public`` or ``s-maxage``, and no account page under a static-
looking path (14.2.2, 14.2.5, 14.3.2); ``Clear-Site-Data`` quoted, over HTTPS only; the security
headers on 404, 405, 500, redirects, streamed and static responses.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .live_https import (
    ACCOUNT_MARK,
    CACHEABLE,
    HOST,
    ROOT,
    STATIC_CSS,
    LiveApp,
    free_port,
    live_app,
)
from .live_servers import server_env

COOKIE = "__Host-id"
ONE_YEAR = 31_536_000
LISTENERS = [
    ("default", "http"),
    ("default", "https"),
    ("no-redirect", "http"),
    ("no-redirect-tokenless", "http"),
    ("proxy", "http"),
    ("forwarded", "http"),
    ("logout-cache", "https"),
]
#: Requests from here are not the trusted proxy (127.0.0.1) of the ``proxy`` variants.
STRANGER = "127.0.0.2"


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApp]:
    workdir = tmp_path_factory.mktemp(f"https-{request.param}")
    with live_app(request.param, workdir, LISTENERS) as started:
        yield started


# -- helpers -------------------------------------------------------------------------------------


def sign_in(app: LiveApp, variant: str = "default") -> tuple[httpx.Client, str]:
    """A TLS client signed in as ``alice`` the way a page of the site does it; the session
    cookie its jar now holds."""
    c = app.client(variant, "https")
    token = c.get("/token").json()["csrf_token"]
    r = c.post("/login", headers={"x-csrf-token": token, "sec-fetch-site": "same-origin"})
    assert r.status_code == 200, r.text
    value = c.cookies.get(COOKIE)
    assert value
    return c, value


def set_cookies(r: httpx.Response) -> list[str]:
    return r.headers.get_list("set-cookie")


def by_hand(value: str) -> dict[str, str]:
    return {"cookie": f"{COOKIE}={value}"}


def stranger(app: LiveApp, variant: str) -> httpx.Client:
    """A plain-HTTP client whose connections come from 127.0.0.2: not the trusted proxy."""
    transport = httpx.HTTPTransport(local_address=STRANGER)
    return app.client(variant, "http", transport=transport)


def directives(cache_control: str | None) -> set[str]:
    if cache_control is None:
        return set()
    return {d.strip().split("=", 1)[0].lower() for d in cache_control.split(",") if d.strip()}


def assert_hardened(r: httpx.Response, https: bool) -> None:
    """Items 64, 66 and 68: HSTS (HTTPS only), frame-ancestors 'none', nosniff."""
    hsts = r.headers.get("strict-transport-security")
    if https:
        assert hsts is not None, (r.request.url, r.status_code)
        parts = [p.strip() for p in hsts.split(";")]
        assert int(parts[0].removeprefix("max-age=")) >= ONE_YEAR
        assert "includeSubDomains" in parts and "preload" not in parts
    else:
        assert hsts is None  # ignored over plain HTTP; sending it there means nothing
    csp = r.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, (r.request.url, r.status_code)
    assert r.headers.get("x-content-type-options") == "nosniff"


# -- item 75: plain HTTP is redirected, APIs refused, no cookie ever ------------------------------


def test_a_plain_http_page_with_a_session_cookie_is_redirected_without_a_cookie(
    app: LiveApp,
) -> None:
    browser, session = sign_in(app)
    plain = app.url("default", "http")
    with app.client("default", "http") as c:
        for method in ("GET", "POST"):
            r = c.request(method, "/account?tab=devices&x=%2F", headers=by_hand(session))
            assert r.status_code in (301, 308), r.status_code
            assert r.headers["location"] == "https://app.test/account?tab=devices&x=%2F"
            assert set_cookies(r) == []
            assert ACCOUNT_MARK not in r.text
    # The browser's jar never sent the Secure cookie there, and the redirect ended nothing.
    r = browser.get(plain + "/whoami")
    assert r.status_code == 308 and set_cookies(r) == []
    assert "cookie" not in r.request.headers
    assert browser.get("/whoami").json() == {"user": "alice"}
    browser.close()


@pytest.mark.parametrize("variant", ["default", "no-redirect"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_api_paths_over_plain_http_fail_instead_of_redirecting(
    app: LiveApp, variant: str, method: str
) -> None:
    browser, session = sign_in(app)
    browser.close()
    before = app.live_sessions()
    with app.client(variant, "http") as c:
        for headers in ({}, by_hand(session)):
            r = c.request(method, "/api/x", headers={"accept": "application/json", **headers})
            assert 400 <= r.status_code < 500, r.status_code
            assert "location" not in r.headers
            assert set_cookies(r) == []
            assert r.json() == {"error": "https-required", "reason": "plain-http"}
    assert app.live_sessions() == before


@pytest.mark.parametrize("variant", ["default", "no-redirect"])
def test_json_clients_over_plain_http_fail_wherever_they_go(app: LiveApp, variant: str) -> None:
    """An API client (it sends JSON or asks for it) fails over plain HTTP on any path, not
    only under ``refuse_paths``; a browser's navigation to the same path is redirected (or,
    with the redirect off, served without a session)."""
    with app.client(variant, "http") as c:
        asks = c.get("/whoami", headers={"accept": "application/json"})
        sends = c.post("/transfer", json={"amount": 1})
        for r in (asks, sends):
            assert r.status_code == 403, (r.request.url, r.status_code)
            assert r.json() == {"error": "https-required", "reason": "plain-http"}
            assert "location" not in r.headers and set_cookies(r) == []
        page = c.get("/whoami", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        assert page.status_code == (308 if variant == "default" else 200)


def test_with_the_redirect_off_plain_http_is_served_without_any_session(app: LiveApp) -> None:
    """Item 75's "no Set-Cookie on any HTTP response, and a session is never created over
    HTTP" holds when the operator turned the redirect off: pages are served, anonymous; the
    cookie a client sends in the clear is not honoured (nor renewed or cleared); a sign-in form
    cannot be posted (the CSRF check still runs, and there is no session to hold a token)."""
    browser, session = sign_in(app)
    before = app.live_sessions()
    with app.client("no-redirect", "http") as c:
        seen: list[httpx.Response] = []
        seen.append(page := c.get("/token"))
        assert page.status_code == 200
        token = page.json()["csrf_token"]
        seen.append(c.post("/login", headers={"x-csrf-token": token}))
        assert seen[-1].status_code == 403
        seen.append(who := c.get("/whoami", headers=by_hand(session)))
        assert who.status_code == 200 and who.json() == {"user": None}
        seen.append(account := c.get("/account", headers=by_hand(session)))
        assert account.status_code == 303 and ACCOUNT_MARK not in account.text
        seen.append(c.post("/logout", headers={**by_hand(session), "x-csrf-token": token}))
        assert seen[-1].status_code == 403
        for r in seen:
            assert set_cookies(r) == [], (r.request.method, r.request.url)
            assert "clear-site-data" not in r.headers
        assert c.cookies.get(COOKIE) is None
    assert app.live_sessions() == before
    assert browser.get("/whoami").json() == {"user": "alice"}  # nothing over HTTP ended it
    browser.close()


def test_a_sign_in_over_plain_http_is_refused_even_when_no_token_is_needed(app: LiveApp) -> None:
    before = app.live_sessions()
    with app.client("no-redirect-tokenless", "http") as c:
        r = c.post(
            "/login", headers={"sec-fetch-site": "same-origin", "accept": "application/json"}
        )
        assert r.status_code == 403
        assert r.json() == {"error": "https-required", "reason": "plain-http"}
        assert set_cookies(r) == []
        assert c.get("/whoami").json() == {"user": None}
    assert app.live_sessions() == before


# -- item 76: the scheme only from trusted proxies -------------------------------------------------

SPOOFS = [
    {"x-forwarded-proto": "https"},
    {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7"},
    {"forwarded": "for=203.0.113.7;proto=https"},
    {"x-forwarded-ssl": "on", "front-end-https": "on", "x-url-scheme": "https"},
]


@pytest.mark.parametrize("spoof", SPOOFS, ids=lambda h: "+".join(h))
def test_a_forged_scheme_on_a_direct_connection_is_still_plain_http(
    app: LiveApp, spoof: dict[str, str]
) -> None:
    before = app.live_sessions()
    with app.client("default", "http") as direct:  # no proxy is trusted at all
        r = direct.get("/token", headers=spoof)
        assert r.status_code == 308 and r.headers["location"] == "https://app.test/token"
        assert set_cookies(r) == [] and "strict-transport-security" not in r.headers
    for variant in ("proxy", "forwarded"):  # a proxy is trusted, but this peer is not it
        with stranger(app, variant) as c:
            r = c.get("/token", headers=spoof)
            assert r.status_code == 308, variant
            assert set_cookies(r) == [] and "strict-transport-security" not in r.headers
    with app.client("no-redirect", "http") as served:  # served, but still without a session
        r = served.get("/token", headers=spoof)
        assert r.status_code == 200 and set_cookies(r) == []
    assert app.live_sessions() == before


def test_the_trusted_proxy_is_believed_through_its_own_header_only(app: LiveApp) -> None:
    with app.client("proxy", "http") as via_proxy:  # 127.0.0.1 is the trusted proxy
        r = via_proxy.get(
            "/token", headers={"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7"}
        )
        assert r.status_code == 200 and set_cookies(r)
        assert "strict-transport-security" in r.headers
        # Its header is X-Forwarded-*: a Forwarded header is the client's, never read.
        r = via_proxy.get("/token", headers={"forwarded": "for=203.0.113.7;proto=https"})
        assert r.status_code == 308 and set_cookies(r) == []
    with app.client("forwarded", "http") as via_proxy:
        r = via_proxy.get("/token", headers={"forwarded": "for=203.0.113.7;proto=https"})
        assert r.status_code == 200 and set_cookies(r)
        r = via_proxy.get(
            "/token", headers={"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7"}
        )
        assert r.status_code == 308 and set_cookies(r) == []


def test_forwarding_headers_from_a_peer_that_is_not_a_proxy_are_reported_once(
    app: LiveApp,
) -> None:
    """Production checks cannot see a proxy in front at start-up; the first request whose
    forwarding headers are ignored says so in the log (a warning naming the setting), once."""
    spoof = {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7"}
    with app.client("logout-cache", "https") as direct:  # no proxy configured here
        for n in range(3):
            assert direct.get(f"/proxy-check-{n}", headers=spoof).status_code == 404
    with app.client("proxy", "http") as via_proxy:  # from the trusted proxy: nothing to say
        assert via_proxy.get("/proxy-check-trusted", headers=spoof).status_code == 404
    reported = [
        line
        for line in app.log.read_text(errors="replace").splitlines()
        if '"event":"config.proxy_headers_ignored"' in line and "/proxy-check" in line
    ]
    assert len(reported) == 1, reported
    assert "trusted_proxies" in reported[0] and '"path":"/proxy-check-0"' in reported[0]


# -- item 77: the first Set-Cookie of a session comes over HTTPS ----------------------------------


def test_the_first_set_cookie_of_a_session_comes_over_https(app: LiveApp) -> None:
    """A browser that types the address without a scheme: every hop is followed by hand (the
    listeners are on loopback ports, ``app.test`` resolves nowhere), recording which responses
    carried a cookie."""
    https_base = app.url("default", "https")
    c = httpx.Client(headers={"host": HOST}, verify=app.tls(), timeout=10)
    hops: list[httpx.Response] = []
    url = app.url("default", "http") + "/account"
    for _ in range(5):
        r = c.get(url)
        hops.append(r)
        if r.status_code not in (301, 302, 303, 307, 308):
            break
        location = r.headers["location"]
        if location.startswith("https://app.test/"):
            url = https_base + location.removeprefix("https://app.test")
        else:
            assert location.startswith("/"), location
            url = (https_base if r.url.scheme == "https" else app.url("default", "http")) + location
    else:
        raise AssertionError("redirect loop")
    assert hops[0].url.scheme == "http" and hops[0].status_code == 308
    hops.append(page := c.get(https_base + "/token"))
    hops.append(
        c.post(
            https_base + "/login",
            headers={"x-csrf-token": page.json()["csrf_token"], "sec-fetch-site": "same-origin"},
        )
    )
    assert hops[-1].status_code == 200
    carrying = [r for r in hops if set_cookies(r)]
    assert carrying, "the walk never got a session"
    assert all(r.url.scheme == "https" for r in carrying)
    assert c.get(https_base + "/whoami").json() == {"user": "alice"}
    c.close()


# -- item 78: hosts outside the allowlist ----------------------------------------------------------

EVIL_HOSTS = [
    "evil.test",
    "evil.test:8443",
    "app.test.evil.test",
    "evil.app-test",
    "app.test@evil.test",
    "evil.test/app.test",
    "evil.test\\app.test",
]


@pytest.mark.parametrize("scheme", ["https", "http"])
@pytest.mark.parametrize("host", EVIL_HOSTS)
def test_an_unknown_host_gets_400_and_never_a_location_to_it(
    app: LiveApp, scheme: str, host: str
) -> None:
    with app.client("default", scheme, headers={"host": host}) as c:
        for path in ("/account", "/token", "/go"):
            r = c.get(path)
            assert r.status_code == 400, (host, path, r.status_code)
            assert "location" not in r.headers
            assert set_cookies(r) == []
            assert "evil" not in r.text


def test_an_absolute_request_target_never_redirects_to_its_host(app: LiveApp) -> None:
    """``GET http://evil.test/account`` with ``Host: app.test`` over plain HTTP (RFC 9112 lets
    the target's authority override Host): a 400, or a redirect to app.test, never to evil."""
    port = int(app.url("default", "http").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"GET http://evil.test/account HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
        )
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    status = int(head.split(" ", 2)[1])
    assert status in (308, 400), head
    assert "evil" not in head
    for line in head.split("\r\n"):
        if line.startswith("location:"):
            assert line.split(":", 1)[1].strip().startswith("https://app.test/")


def test_a_forwarded_host_counts_only_from_the_trusted_proxy(app: LiveApp) -> None:
    with stranger(app, "proxy") as c:  # not the proxy: its X-Forwarded-Host is ignored
        r = c.get("/account", headers={"x-forwarded-host": "evil.test"})
        assert r.status_code == 308 and r.headers["location"] == "https://app.test/account"
    tls = {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7"}
    with app.client("proxy", "http") as via_proxy:  # the proxy forwards the client's Host
        r = via_proxy.get("/account", headers={**tls, "x-forwarded-host": "evil.test"})
        assert r.status_code == 400 and "location" not in r.headers and "evil" not in r.text
        r = via_proxy.get("/account", headers={**tls, "x-forwarded-host": HOST})
        assert r.status_code == 303  # served: the app's own redirect to its sign-in page
    with app.client("forwarded", "http") as via_proxy:
        r = via_proxy.get(
            "/account", headers={"forwarded": "for=1.2.3.4;proto=https;host=evil.test"}
        )
        assert r.status_code == 400 and "location" not in r.headers


# -- item 79: production mode refuses an insecure configuration at start ---------------------------


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
def test_production_mode_refuses_to_start_with_an_insecure_configuration(
    adapter: str, tmp_path: Path
) -> None:
    port = free_port()
    env = server_env()
    if adapter == "asgi":
        cmd = ["-m", "uvicorn", "--factory", "tests.live_https:insecure_asgi", "--port", str(port)]
    else:
        cmd = [
            "-m",
            "flask",
            "--app",
            "tests.live_https:insecure_flask",
            "run",
            "--port",
            str(port),
        ]
    done = subprocess.run(
        [sys.executable, *cmd], cwd=ROOT, env=env, capture_output=True, timeout=60, text=True
    )
    assert done.returncode != 0
    said = done.stdout + done.stderr
    for setting in ("cookie.secure", "cookie.http_only", "csrf.enabled", "allowed_hosts"):
        assert setting in said, said[-3000:]
    with pytest.raises(httpx.HTTPError):  # nothing listens
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


# -- items 80, 81 and section D: caching ---------------------------------------------------------


SIGNED_IN_PATHS = [
    "/whoami",
    "/account",
    "/token",
    "/cached",
    "/stream",
    "/static/app.css",
    "/go",
    "/nope",
    "/account/foo.css",
    "/transfer",  # 405
    "/api/x",
]


def test_every_signed_in_response_is_no_store_and_never_shared(app: LiveApp) -> None:
    browser, _ = sign_in(app)
    for path in SIGNED_IN_PATHS:
        r = browser.get(path)
        cc = directives(r.headers.get("cache-control"))
        assert "no-store" in cc, (path, r.status_code, r.headers.get("cache-control"))
        assert not cc & {"public", "s-maxage", "max-age"}, (path, r.headers["cache-control"])
        # A CDN obeys its own field over Cache-Control: none may survive either.
        assert "cdn-cache-control" not in r.headers and "surrogate-control" not in r.headers
    browser.close()


def test_cookie_setting_and_clearing_responses_are_no_store(app: LiveApp) -> None:
    c = app.client("default", "https")
    page = c.get("/token")  # a new (anonymous) session: its cookie
    assert set_cookies(page) and "no-store" in directives(page.headers.get("cache-control"))
    token = page.json()["csrf_token"]
    login = c.post("/login", headers={"x-csrf-token": token, "sec-fetch-site": "same-origin"})
    assert set_cookies(login) and "no-store" in directives(login.headers.get("cache-control"))
    token = c.get("/token").json()["csrf_token"]
    out = c.post("/logout", headers={"x-csrf-token": token, "sec-fetch-site": "same-origin"})
    assert set_cookies(out) and "no-store" in directives(out.headers.get("cache-control"))
    assert c.cookies.get(COOKIE) is None
    # A dead cookie presented again: the response clears it, and is not stored either.
    stale = app.client("default", "https")
    r = stale.get("/whoami", headers=by_hand("A" * 43))
    assert set_cookies(r) and "no-store" in directives(r.headers.get("cache-control"))
    c.close()
    stale.close()


def test_a_page_holding_a_csrf_token_is_never_stored(app: LiveApp) -> None:
    """The token belongs to the session that asked (anonymous too, before a sign-in): a shared
    cache that kept the page would hand it to everybody. Pages that hold nothing of the
    session keep their own caching."""
    with app.client("default", "https") as c:
        assert set_cookies(c.get("/token"))  # the first visit stores a session: its cookie
        again = c.get("/token")
        assert set_cookies(again) == []
        assert "no-store" in directives(again.headers.get("cache-control"))
        plain = c.get("/cached")  # same anonymous session, nothing of it in the page
        assert plain.headers["cache-control"] == CACHEABLE["cache-control"]


def test_an_anonymous_public_asset_keeps_its_own_caching(app: LiveApp) -> None:
    with app.client("default", "https") as c:
        r = c.get("/cached")
        assert r.status_code == 200 and set_cookies(r) == []
        for name, value in CACHEABLE.items():
            assert r.headers[name] == value
        css = c.get("/static/app.css")
        assert css.content == STATIC_CSS and "no-store" not in directives(
            css.headers.get("cache-control")
        )


@pytest.mark.parametrize(
    "path", ["/account/foo.css", "/account/x.js", "/account/.css", "/account;x.css"]
)
def test_a_static_looking_path_under_the_account_never_serves_it(app: LiveApp, path: str) -> None:
    browser, _ = sign_in(app)
    r = browser.get(path)
    assert r.status_code in (301, 302, 303, 307, 308, 404), r.status_code
    assert ACCOUNT_MARK not in r.text
    assert "no-store" in directives(r.headers.get("cache-control"))
    browser.close()


@pytest.mark.parametrize(("variant", "cache"), [("default", False), ("logout-cache", True)])
def test_logout_clears_site_data_with_quoted_types_over_https(
    app: LiveApp, variant: str, cache: bool
) -> None:
    browser, _ = sign_in(app, variant)
    token = browser.get("/token").json()["csrf_token"]
    r = browser.post("/logout", headers={"x-csrf-token": token, "sec-fetch-site": "same-origin"})
    assert r.status_code == 200
    sent = [t.strip() for t in r.headers["clear-site-data"].split(",")]
    assert sent == ['"cookies"', '"storage"'] + (['"cache"'] if cache else [])
    (deletion,) = set_cookies(r)
    assert deletion.startswith(f"{COOKIE}=;") and "Max-Age=0" in deletion
    assert "no-store" in directives(r.headers.get("cache-control"))
    browser.close()


def test_a_dead_session_presented_again_is_cleared_with_clear_site_data(app: LiveApp) -> None:
    """The response that ends a session for the browser presenting it (here a copy kept after
    logout) clears site data as the logout did; an ID that was never issued, or plain HTTP to a
    public host, gets no such header."""
    victim, kept = sign_in(app)
    token = victim.get("/token").json()["csrf_token"]
    out = victim.post("/logout", headers={"x-csrf-token": token, "sec-fetch-site": "same-origin"})
    assert out.status_code == 200 and "clear-site-data" in out.headers
    victim.close()
    with app.client("default", "https") as copy:
        r = copy.get("/whoami", headers=by_hand(kept))
        assert r.json() == {"user": None}
        (deletion,) = set_cookies(r)
        assert deletion.startswith(f"{COOKIE}=;") and "Max-Age=0" in deletion
        assert r.headers["clear-site-data"] == '"cookies", "storage"'
        assert "no-store" in directives(r.headers.get("cache-control"))
        never = copy.get("/whoami", headers=by_hand("B" * 43))
        assert set_cookies(never) and "clear-site-data" not in never.headers
    with app.client("no-redirect", "http") as plain:
        r = plain.get("/whoami", headers=by_hand(kept))
        assert set_cookies(r) == [] and "clear-site-data" not in r.headers


# -- item 74: the headers on every response path ------------------------------------------------


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
def test_headers_on_every_response_path(app: LiveApp, signed_in: bool) -> None:
    browser = sign_in(app)[0] if signed_in else app.client("default", "https")
    expected = {
        "/nope": 404,
        "/transfer": 405,
        "/go": 302,
        "/stream": 200,
        "/static/app.css": 200,
        "/account": 200 if signed_in else 303,
    }
    for path, status in expected.items():
        r = browser.get(path)
        assert r.status_code == status, (path, r.status_code)
        assert_hardened(r, https=True)
    assert browser.get("/stream").text == "part 0\npart 1\npart 2\n"
    # The unhandled exception last: a server may close the connection after it.
    r = browser.get("/boom", headers={"connection": "close"})
    assert r.status_code == 500 and "ledger" not in r.text and "Traceback" not in r.text
    assert_hardened(r, https=True)
    browser.close()
    # The guard's own answers: the HTTPS redirect and the refusals.
    with app.client("default", "http") as plain:
        assert_hardened(plain.get("/account"), https=False)
        assert_hardened(plain.get("/api/x"), https=False)
    with app.client("default", "https", headers={"host": "evil.test"}) as evil:
        assert_hardened(evil.get("/account"), https=True)
    with app.client("default", "https") as c:
        r = c.post("/transfer", headers={"sec-fetch-site": "cross-site"})
        assert r.status_code == 403
        assert_hardened(r, https=True)
