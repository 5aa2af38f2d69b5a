"""Clients written from the specifications, against the demo served for real.

``python -m sessionwarden.demo`` (Starlette on uvicorn) and its Flask twin run as processes on
127.0.0.1 over the SQLite store, behind a trusted proxy on loopback (``--trusted-proxy
127.0.0.1``: a request that names ``X-Forwarded-For`` and ``X-Forwarded-Proto: https`` comes
from that client over HTTPS, one that names neither comes from this machine). Every request
crosses a real socket. The clients:

* :class:`Browser` keeps its cookies in :class:`http.cookiejar.CookieJar` (through httpx), whose
  policy differs from the standard one in a single point RFC 6265bis leaves to the user agent:
  ``http://127.0.0.1`` counts as a secure origin (as browsers treat loopback), so ``Secure``
  cookies set there are sent back there;
* :func:`parse_set_cookie` reads ``Set-Cookie`` the way RFC 6265bis section 5.6 does, and
  :func:`host_prefix_problems` applies its ``__Host-`` rules (section 5.7);
* :func:`raw` sends what no polite client would (repeated headers, control characters,
  lower-case methods) with :mod:`http.client`.

Items of the requirements checklist (A1, A2, A3, A9, A10 and Go's CrossOriginProtection
procedure) are named in each test's docstring. Nothing is read from the library's code: only
statuses, headers, bodies, the cookie jar and the JSON event lines the demo writes.
"""

from __future__ import annotations

import base64
import email.message
import email.utils
import http.client
import http.cookiejar
import json
import re
import secrets
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from sessionwarden.cookies import CookieWriter
from sessionwarden.policy import CookiePolicy

from .demo.conftest import FLASK_DEMO, STARLETTE_DEMO, USERS, DemoServer, run_demo

COOKIE = "__Host-id"
FINGERPRINT_NAMES = ("sessionid", "session", "phpsessid", "jsessionid", "asp.net_sessionid")
#: The browser every request of these tests comes from, unless a test says otherwise.
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
_META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
_FORM_TOKEN = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]+)">')
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


@pytest.fixture(scope="module", params=["asgi", "flask"])
def demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoServer]:
    """The demo (Starlette or Flask) on SQLite, behind a trusted proxy on loopback."""
    module = STARLETTE_DEMO if request.param == "asgi" else FLASK_DEMO
    workdir = tmp_path_factory.mktemp(f"spec-{request.param}")
    with run_demo(
        f"sqlite:///{workdir}/demo.db",
        workdir / "demo.key",
        workdir,
        module=module,
        extra_args=["--trusted-proxy", "127.0.0.1"],
    ) as server:
        yield server


# --------------------------------------------------------------------------------------------
# RFC 6265bis: parsing Set-Cookie, the __Host- prefix, a cookie jar
# --------------------------------------------------------------------------------------------


@dataclass
class SetCookie:
    name: str
    value: str
    #: Every attribute in order, names lower-cased (section 5.6: names match case-insensitively).
    attributes: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        """The last value of an attribute (section 5.7 uses the last occurrence)."""
        found = [v for n, v in self.attributes if n == name]
        return found[-1] if found else None

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.attributes)

    def expires_now(self) -> bool:
        """Whether a user agent deletes the cookie on receipt: ``Max-Age`` of zero or less
        (Max-Age wins over Expires), else an ``Expires`` in the past."""
        max_age = self.get("max-age")
        if max_age is not None and re.fullmatch(r"-?[0-9]+", max_age):
            return int(max_age) <= 0
        expires = self.get("expires")
        if expires is None:
            return False
        return email.utils.parsedate_to_datetime(expires).timestamp() < time.time()


def parse_set_cookie(header: str) -> SetCookie:
    """RFC 6265bis section 5.6, steps 1-6 and the attribute loop."""
    pair, _, unparsed = header.partition(";")
    name, sep, value = pair.partition("=")
    if not sep:  # a pair without "=" is a value with an empty name
        name, value = "", pair
    cookie = SetCookie(name.strip(" \t"), value.strip(" \t"))
    for av in unparsed.split(";") if unparsed else []:
        attr, _, attr_value = av.partition("=")
        cookie.attributes.append((attr.strip(" \t").lower(), attr_value.strip(" \t")))
    return cookie


def host_prefix_problems(cookie: SetCookie) -> list[str]:
    """What makes a user agent ignore a ``__Host-`` cookie (section 5.7, step 22: the prefix
    matches case-insensitively)."""
    if not cookie.name.lower().startswith("__host-"):
        return ["no __Host- prefix"]
    problems = []
    if not cookie.has("secure"):
        problems.append("not Secure")
    if cookie.has("domain"):
        problems.append("has a Domain")
    if cookie.get("path") != "/":
        problems.append("Path is not /")
    if len(cookie.name.encode()) + len(cookie.value.encode()) > 4096:
        problems.append("name and value over 4096 octets")
    if any(len(v.encode()) > 1024 for _, v in cookie.attributes):
        problems.append("an attribute value over 1024 octets")
    return problems


def set_cookies(response: httpx.Response | list[tuple[str, str]]) -> list[SetCookie]:
    headers = (
        response.headers.get_list("set-cookie")
        if isinstance(response, httpx.Response)
        else [v for k, v in response if k.lower() == "set-cookie"]
    )
    return [parse_set_cookie(h) for h in headers]


class LoopbackIsSecure(http.cookiejar.DefaultCookiePolicy):
    """The standard policy, except that ``http://127.0.0.1`` is a secure origin."""

    def return_ok_secure(
        self, cookie: http.cookiejar.Cookie, request: urllib.request.Request
    ) -> bool:
        if urlsplit(request.get_full_url()).hostname == "127.0.0.1":
            return True
        return bool(super().return_ok_secure(cookie, request))


class _Answer:
    """An httpx response as :meth:`http.cookiejar.CookieJar.extract_cookies` reads one."""

    def __init__(self, response: httpx.Response) -> None:
        self._headers = email.message.Message()
        for value in response.headers.get_list("set-cookie"):
            self._headers["Set-Cookie"] = value

    def info(self) -> email.message.Message:
        return self._headers


class Browser:
    """One user agent with its own cookie jar. ``ip``: the address the trusted proxy names
    (requests then come over HTTPS through it); ``None``: straight from this machine."""

    def __init__(self, demo: DemoServer, *, agent: str = FIREFOX, ip: str | None = None) -> None:
        self.demo = demo
        self.agent = agent
        self.ip = ip
        self.jar = http.cookiejar.CookieJar(LoopbackIsSecure())
        # httpx copies a jar into one with the standard policy for every request, so the
        # jar is consulted here, as urllib's HTTPCookieProcessor does, and httpx keeps none.
        self.http = httpx.Client(base_url=demo.base_url, follow_redirects=False, timeout=15)

    def close(self) -> None:
        self.http.close()

    @property
    def origin(self) -> str:
        return self.demo.base_url if self.ip is None else "https" + self.demo.base_url[4:]

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"user-agent": self.agent}
        if self.ip is not None:
            headers |= {"x-forwarded-for": self.ip, "x-forwarded-proto": "https"}
        headers |= kw.pop("headers", None) or {}
        asked = urllib.request.Request(self.demo.base_url + path, method=method)
        self.jar.add_cookie_header(asked)
        cookie = asked.get_header("Cookie")
        if cookie is not None:
            headers["cookie"] = cookie
        response = self.http.request(method, path, headers=headers, **kw)
        self.http.cookies.clear()
        self.jar.extract_cookies(_Answer(response), asked)
        return response

    def session_cookie(self) -> str | None:
        found = [c.value for c in self.jar if c.name == COOKIE]
        assert len(found) <= 1, "the jar holds two session cookies"
        return found[0] if found else None

    def token(self, path: str = "/login") -> str:
        r = self.request("GET", path)
        assert r.status_code == 200, (path, r.status_code)
        match = _META_TOKEN.search(r.text)
        assert match, "no csrf-token meta tag"
        return match.group(1)

    def api_token(self) -> str:
        r = self.request("GET", "/api/csrf", headers={"accept": "application/json"})
        assert r.status_code == 200
        return str(r.json()["csrf_token"])

    def post_form(self, path: str, fields: dict[str, str], **headers: str) -> httpx.Response:
        hdrs = {"sec-fetch-site": "same-origin", "origin": self.origin} | headers
        return self.request("POST", path, data=fields, headers=hdrs)

    def sign_in(self, user: str = "alice") -> httpx.Response:
        token = self.token()
        r = self.post_form(
            "/login", {"username": user, "password": USERS[user], "csrf_token": token}
        )
        assert r.status_code == 303, r.text
        return r

    def user(self) -> str | None:
        r = self.request("GET", "/api/me", headers={"accept": "application/json"})
        if r.status_code == 401:
            return None
        assert r.status_code == 200, r.text
        return str(r.json()["user"])

    def transfer(self, token: str | None, **headers: str) -> httpx.Response:
        """A JSON transfer of 1.00 to bob, the token in ``X-CSRF-Token`` when given."""
        hdrs = {"content-type": "application/json", "accept": "application/json"}
        if token is not None:
            hdrs["x-csrf-token"] = token
        hdrs |= headers
        body = json.dumps({"to": "bob", "amount": "1"})
        return self.request("POST", "/api/transfer", content=body, headers=hdrs)


@pytest.fixture
def browser(demo: DemoServer) -> Iterator[Any]:
    made: list[Browser] = []

    def make(agent: str = FIREFOX, ip: str | None = None) -> Browser:
        b = Browser(demo, agent=agent, ip=ip)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def raw(
    demo: DemoServer,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request exactly as written (repeated headers kept, in order)."""
    port = urlsplit(demo.base_url).port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if not any(k.lower() == "host" for k, _ in headers):
            conn.putheader("Host", f"127.0.0.1:{port}")
        for name, value in headers:
            conn.putheader(name, value.encode("latin-1") if isinstance(value, str) else value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def events(demo: DemoServer, kind: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, demo.events()) if e["event"] == kind]


def _decoded(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


# --------------------------------------------------------------------------------------------
# A2: every Set-Cookie, read as RFC 6265bis reads it
# --------------------------------------------------------------------------------------------


def test_every_session_cookie_is_a_valid_host_prefixed_browser_session_cookie(
    browser: Any,
) -> None:
    """A1.5, A2.10-16: every ``Set-Cookie`` of a visit (first page, sign-in, a signed-in page,
    sign-out) names a generic ``__Host-`` cookie a user agent keeps: ``Secure``, ``Path=/``, no
    ``Domain``, ``HttpOnly``, one explicit ``SameSite=Lax``, no ``Max-Age``/``Expires`` (a
    browser-session cookie), at most 4096 octets, an opaque value of >= 16 random bytes; the
    sign-out's deletion repeats the prefix's attributes and expires at once."""
    b = browser()
    seen: list[tuple[str, SetCookie]] = []
    r = b.request("GET", "/login")
    seen += [("first", c) for c in set_cookies(r)]
    seen += [("sign-in", c) for c in set_cookies(b.sign_in())]
    seen += [("account", c) for c in set_cookies(b.request("GET", "/account"))]
    token = b.token("/account")
    out = b.post_form("/logout", {"csrf_token": token})
    assert out.status_code == 303
    seen += [("sign-out", c) for c in set_cookies(out)]

    assert [step for step, _ in seen] == ["first", "sign-in", "sign-out"]
    for step, cookie in seen:
        assert cookie.name == COOKIE and cookie.name.lower() not in FINGERPRINT_NAMES
        assert host_prefix_problems(cookie) == [], (step, cookie)
        assert cookie.has("httponly"), step
        assert [v for n, v in cookie.attributes if n == "samesite"] == ["Lax"], step
        if step == "sign-out":
            assert cookie.value == "" and cookie.expires_now()
        else:
            assert not cookie.has("max-age") and not cookie.has("expires"), step
            assert _B64URL.fullmatch(cookie.value) and len(_decoded(cookie.value)) >= 16
    first, signed_in = seen[0][1].value, seen[1][1].value
    assert first != signed_in


def test_a_cookie_jar_follows_sign_in_rotation_and_sign_out(browser: Any) -> None:
    """A3.18, A2.16: with a real cookie jar, the sign-in replaces the pre-login cookie P with
    S; P alone is then no session; sign-out empties the jar, and a kept copy of S is dead."""
    b = browser()
    b.request("GET", "/login")
    before = b.session_cookie()
    assert before
    b.sign_in()
    after = b.session_cookie()
    assert after and after != before
    assert b.user() == "alice"

    old = browser()
    old.jar.set_cookie(_jar_cookie(COOKIE, before))
    assert old.user() is None

    token = b.token("/account")
    assert b.post_form("/logout", {"csrf_token": token}).status_code == 303
    assert b.session_cookie() is None  # the deletion was honoured by the jar
    copy = browser()
    copy.jar.set_cookie(_jar_cookie(COOKIE, after))
    assert copy.user() is None


def _jar_cookie(name: str, value: str, path: str = "/") -> http.cookiejar.Cookie:
    return http.cookiejar.Cookie(
        0, name, value, None, False, "127.0.0.1", False, False, path, True, True,
        None, False, None, None, {},
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# A1.8-9: hostile Cookie headers
# --------------------------------------------------------------------------------------------


def _cookie_variants(valid: str) -> dict[str, str]:
    pct = valid[:4] + "%" + format(ord(valid[4]), "02X") + valid[5:]
    return {
        "quote only": f'{COOKIE}="',
        "unbalanced quotes": f'{COOKIE}="{valid}',
        "comma joined": f"{COOKIE}={valid},other=1",
        "percent-encoded": f"{COOKIE}={pct}",
        "case variant name": f"__host-id={valid}",
        "upper-case name": f"__HOST-ID={valid}",
        "__Secure- name": f"__Secure-id={valid}",
        "nameless": valid,
        "empty value": f"{COOKIE}=",
        "sql": f"{COOKIE}=' OR 1=1--",
        "markup": f"{COOKIE}=<script>alert(1)</script>",
        "nul": f"{COOKIE}=%00",
        "control characters": f"{COOKIE}=a\x01b\x7fc",
        "latin-1": f"{COOKIE}=\xe9t\xe9",
        "8 KB": f"{COOKIE}=" + "A" * 8192,
        "semicolons only": ";;;;",
        "three thousand pairs": "; ".join(f"c{i}=v" for i in range(3000)),
    }


@pytest.mark.parametrize("variant", list(_cookie_variants("x" * 43)))
def test_hostile_cookie_headers_are_no_session_never_an_error_never_echoed(
    demo: DemoServer, browser: Any, variant: str
) -> None:
    """A1.8-9: every malformed ``Cookie`` header, some built around a valid signed-in ID,
    gets a normal answer (never 5xx), is not authenticated, and is not echoed in the body; the
    signed-in browser is still signed in afterwards (nothing in a malformed header ends it)."""
    b = browser()
    b.sign_in()
    valid = b.session_cookie()
    assert valid
    value = _cookie_variants(valid)[variant]
    status, _, body = raw(
        demo,
        "GET",
        "/api/me",
        [("Cookie", value), ("Accept", "application/json"), ("User-Agent", FIREFOX)],
    )
    # 401 from the app; a server may refuse control characters itself (uvicorn: 400).
    assert status == 401 or (status == 400 and variant == "control characters"), (variant, status)
    if status == 401:
        assert json.loads(body) == {"error": "not-authenticated"}
    assert value.encode("latin-1")[-40:] not in body
    assert b.user() == "alice"


def test_two_session_cookies_with_different_paths_are_refused_and_reported(
    demo: DemoServer, browser: Any
) -> None:
    """A1.9: a jar holding the session cookie twice (``Path=/`` and a ``Path=/api`` shadow a
    sibling planted) sends both to ``/api/me``, more specific first; the server authenticates
    neither, reports ``session.cookie_tossing`` and expires the name on the shadow's path too."""
    victim, attacker = browser(), browser()
    victim.sign_in()
    attacker.sign_in("bob")
    planted = attacker.session_cookie()
    assert planted
    victim.jar.set_cookie(_jar_cookie(COOKIE, planted, path="/api"))
    tossed_before = len(events(demo, "session.cookie_tossing"))
    r = victim.request("GET", "/api/me", headers={"accept": "application/json"})
    assert r.status_code == 401
    cleared = {c.get("path") for c in set_cookies(r) if c.name == COOKIE and c.expires_now()}
    assert {"/", "/api"} <= cleared
    _wait_for(lambda: len(events(demo, "session.cookie_tossing")) > tossed_before)
    assert victim.session_cookie() is None  # both copies were expired in the jar
    assert victim.user() is None and attacker.user() is None  # neither is adopted afterwards


def _wait_for(condition: Any, timeout: float = 5.0) -> None:
    """The demo writes its event lines as it answers; give the pipe a moment."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the event line never came"
        time.sleep(0.02)


# --------------------------------------------------------------------------------------------
# A10 and section C: the cross-origin check, on a signed-in session with a valid token
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("site", "passes"),
    [
        ("same-origin", True),
        ("none", True),
        ("cross-site", False),
        ("same-site", False),  # a sibling subdomain is not the origin
        ("Same-Origin", False),  # the value is case-sensitive
        ("same-origin, cross-site", False),  # a list is no single same-origin
        ("garbage", False),  # unknown values are not ignored
    ],
)
def test_sec_fetch_site_is_read_first(
    demo: DemoServer, browser: Any, site: str, passes: bool
) -> None:
    """A10.54, section C step 2: with a valid token, ``same-origin`` and ``none`` pass and every
    other value is refused with 403 and a ``csrf.cross_origin_refused`` event naming the header,
    even with a matching ``Origin``."""
    b = browser()
    b.sign_in()
    token = b.api_token()
    r = b.transfer(token, **{"sec-fetch-site": site, "origin": b.origin})
    if passes:
        assert r.status_code == 200 and r.json()["ok"] is True
        return
    assert r.status_code == 403 and r.json()["error"] == "cross-origin"
    _wait_for(
        lambda: any(
            e["detail"].get("header") == "sec-fetch-site" and e["path"] == "/api/transfer"
            for e in events(demo, "csrf.cross_origin_refused")
        )
    )


def _origins(own: str) -> dict[str, bool]:
    port = urlsplit(own).port
    return {
        own: True,
        "null": False,
        "http://evil.test": False,
        f"http://127.0.0.1:{port}.evil.test": False,  # suffix-confusable host
        f"http://x@127.0.0.1:{port}": False,  # user info (golang/go#78563)
        f"http://127.0.0.1:{port}/": False,  # a path: not a serialized origin
        f"https://127.0.0.1:{port}": False,  # another scheme
        f"http://localhost:{port}": False,  # another host of the same machine
        f"http://127.0.0.1:{port + 1 if port != 65535 else 1}": False,  # another port
        "http://127.0.0.1": False,  # the default port
    }


@pytest.mark.parametrize("case", range(10))
def test_origin_decides_when_sec_fetch_site_is_absent(
    demo: DemoServer, browser: Any, case: int
) -> None:
    """A10.55, section C steps 3-4: without ``Sec-Fetch-Site``, only an ``Origin`` equal to
    the server's own (scheme, host and port) passes; ``null``, other sites, a confusable
    suffix, user info, a path, another scheme, host or port are refused with 403."""
    b = browser()
    b.sign_in()
    token = b.api_token()
    origin, passes = list(_origins(demo.base_url).items())[case]
    r = b.transfer(token, origin=origin)
    assert r.status_code == (200 if passes else 403), (origin, r.text)
    if not passes:
        assert r.json()["error"] == "cross-origin"


def test_without_either_header_the_token_decides(browser: Any) -> None:
    """A10.56-57 (Go's default: no browser sent it): a bare POST passes the origin check and
    meets the token check: valid token 200, none or a wrong one 403 ``csrf``."""
    b = browser()
    b.sign_in()
    token = b.api_token()
    assert b.transfer(None).json() == {"error": "csrf", "reason": "missing-token"}
    wrong = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert b.transfer(wrong).status_code == 403
    assert b.transfer(token).status_code == 200


@pytest.mark.parametrize(
    ("name", "first", "second"),
    [
        ("Sec-Fetch-Site", "cross-site", "same-origin"),
        ("Sec-Fetch-Site", "same-origin", "cross-site"),
        ("Origin", "http://evil.test", "{own}"),
        ("Origin", "{own}", "http://evil.test"),
    ],
)
def test_a_repeated_fetch_metadata_or_origin_header_never_lets_a_post_through(
    demo: DemoServer, browser: Any, name: str, first: str, second: str
) -> None:
    """Section C reads one value; a request that repeats ``Sec-Fetch-Site`` or ``Origin`` with
    a cross-site value, in either order, is refused (one list-valued field, RFC 9110 5.3, which
    is no single ``same-origin`` or matching origin) through both adapters alike."""
    b = browser()
    b.sign_in()
    token = b.api_token()
    cookie = f"{COOKIE}={b.session_cookie()}"
    own = demo.base_url
    status, _, body = raw(
        demo,
        "POST",
        "/api/transfer",
        [
            ("Cookie", cookie),
            ("User-Agent", FIREFOX),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
            ("X-CSRF-Token", token),
            (name, first.format(own=own)),
            (name, second.format(own=own)),
        ],
        json.dumps({"to": "bob", "amount": "1"}).encode(),
    )
    assert status == 403, body[:200]
    assert json.loads(body)["error"] == "cross-origin"


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_safe_methods_are_not_inspected_and_change_nothing(browser: Any, method: str) -> None:
    """Section C step 1, A10.53: a cross-site GET, HEAD or OPTIONS is not refused by the
    origin check (no 403) and does not transfer anything (the route only accepts POST)."""
    b = browser()
    b.sign_in()
    r = b.request(
        method,
        "/api/transfer",
        headers={"sec-fetch-site": "cross-site", "origin": "http://evil.test"},
    )
    assert r.status_code == 405, r.status_code  # the route's answer: nothing was sent
    assert b.user() == "alice"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "TRACE", "post", "pOsT"])
def test_every_other_method_meets_the_cross_origin_check(
    demo: DemoServer, browser: Any, method: str
) -> None:
    """Section C: everything but GET, HEAD and OPTIONS is checked; a cross-site request with a
    valid token is refused. A method in odd case is never treated as safe: the server refuses
    it as malformed (uvicorn, 400) or it meets the check (403); it never succeeds."""
    b = browser()
    b.sign_in()
    token = b.api_token()
    status, _, body = raw(
        demo,
        method,
        "/api/transfer",
        [
            ("Cookie", f"{COOKIE}={b.session_cookie()}"),
            ("User-Agent", FIREFOX),
            ("Content-Type", "application/json"),
            ("X-CSRF-Token", token),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        b'{"to": "bob", "amount": "1"}',
    )
    if method.isupper():
        assert status == 403 and json.loads(body)["error"] == "cross-origin"
    else:
        assert status in (400, 403), status


# --------------------------------------------------------------------------------------------
# A10.57-59: the synchronizer token
# --------------------------------------------------------------------------------------------


def test_the_token_works_from_a_form_or_the_header_only_and_only_for_its_session(
    browser: Any,
) -> None:
    """A10.57 with ``Sec-Fetch-Site: same-origin``: the masked token is accepted in the form
    field and in ``X-CSRF-Token``, each rendering masked differently; refused when only in the
    query string, when it is another signed-in user's, or tampered with."""
    alice, bob = browser(), browser()
    alice.sign_in()
    bob.sign_in("bob")
    first, second = alice.token("/account"), alice.token("/account")
    assert first != second  # masked afresh for every page
    form = {"to": "carol", "amount": "1", "csrf_token": first}
    assert alice.post_form("/transfer", form).status_code == 303
    assert alice.transfer(second, **{"sec-fetch-site": "same-origin"}).status_code == 200

    query = alice.request(
        "POST",
        f"/transfer?csrf_token={first}",
        data={"to": "carol", "amount": "1"},
        headers={"sec-fetch-site": "same-origin"},
    )
    assert query.status_code == 403
    stolen = bob.token("/account")
    assert alice.post_form("/transfer", form | {"csrf_token": stolen}).status_code == 403
    assert alice.transfer(stolen, **{"sec-fetch-site": "same-origin"}).status_code == 403
    flipped = first[:10] + ("A" if first[10] != "A" else "B") + first[11:]
    assert alice.post_form("/transfer", form | {"csrf_token": flipped}).status_code == 403


def test_tokens_from_before_a_sign_in_or_a_sign_out_are_dead(browser: Any) -> None:
    """A10.58: a token captured on the sign-in page is refused after the sign-in; a token of
    the signed-in session is refused once it signed out (the browser's new anonymous session
    has another secret)."""
    b = browser()
    before = b.token("/login")
    b.sign_in()
    assert b.transfer(before, **{"sec-fetch-site": "same-origin"}).status_code == 403
    signed_in = b.token("/account")
    assert b.transfer(signed_in, **{"sec-fetch-site": "same-origin"}).status_code == 200
    assert b.post_form("/logout", {"csrf_token": signed_in}).status_code == 303
    b.request("GET", "/login")  # a new anonymous session
    r = b.post_form("/logout", {"csrf_token": signed_in})
    assert r.status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "cross-site"},
        {"origin": "http://evil.test"},
        {"origin": "null"},
        {},
    ],
    ids=["cross-site", "evil-origin", "null-origin", "no-headers-no-token"],
)
def test_login_csrf_signs_nobody_in(browser: Any, headers: dict[str, str]) -> None:
    """A10.59: an attacker's page posting its own credentials to ``/login`` (cross-site, from
    another or a ``null`` origin, or without any token) is refused with 403 and the jar holds
    no signed-in session afterwards."""
    b = browser()
    r = b.request(
        "POST",
        "/login",
        data={"username": "bob", "password": USERS["bob"]},
        headers=headers,
    )
    assert r.status_code == 403
    assert b.user() is None


# --------------------------------------------------------------------------------------------
# A3.20 and A9: strict mode, binding, the client address
# --------------------------------------------------------------------------------------------


def test_a_planted_id_is_neither_adopted_nor_kept_by_the_sign_in(
    demo: DemoServer, browser: Any
) -> None:
    """A3.20: a well-formed ID the server never issued, planted in the jar, is not a session;
    the sign-in issues another ID and a ``session.unknown_id`` event is written."""
    planted = secrets.token_urlsafe(32)
    b = browser(ip="198.51.100.20")
    b.jar.set_cookie(_jar_cookie(COOKIE, planted))
    assert b.user() is None
    _wait_for(lambda: bool(events(demo, "session.unknown_id")))
    b.jar.set_cookie(_jar_cookie(COOKIE, planted))
    b.sign_in()
    assert b.session_cookie() not in (None, planted)
    assert b.user() == "alice"


def test_the_address_behind_the_trusted_proxy_is_recorded_and_shown(
    demo: DemoServer, browser: Any
) -> None:
    """A9.45, A9.48: through the trusted proxy with ``X-Forwarded-For: 6.6.6.6, <real>``, the
    session records ``<real>`` (the left-most entry is the client's to forge) and the sessions
    page shows it with the browser and the times."""
    b = browser(ip="6.6.6.6, 203.0.113.45")
    b.sign_in()
    page = b.request("GET", "/sessions")
    assert page.status_code == 200
    assert "203.0.113.45" in page.text and "6.6.6.6" not in page.text
    assert "Firefox 128" in page.text
    logged_in = [e for e in events(demo, "session.logged_in") if e["ip"] == "203.0.113.45"]
    assert logged_in and not any(e["ip"] == "6.6.6.6" for e in events(demo, "session.logged_in"))


@pytest.mark.parametrize(
    ("agent", "thief"),
    [
        ("spec-client/1.0", "other-tool/1.0"),
        ("Mozilla/5.0 (compatible; RareBrowser/3.1)", "Mozilla/5.0 (compatible; OddBrowser/3.1)"),
        (FIREFOX, "spec-client/1.0"),
    ],
)
def test_a_changed_user_agent_ends_the_session_whoever_the_agents_are(
    demo: DemoServer, browser: Any, agent: str, thief: str
) -> None:
    """A9.46: the cookie replayed with a different ``User-Agent`` (from the same address) is
    refused and the session ends for its owner too, with an ``anomaly.detected`` event
    (``agent-changed``), also when neither agent is a browser the library knows by name."""
    owner = browser(agent=agent)
    owner.sign_in()
    stolen = owner.session_cookie()
    assert stolen
    copy = browser(agent=thief)
    copy.jar.set_cookie(_jar_cookie(COOKIE, stolen))
    assert copy.user() is None
    assert owner.user() is None
    _wait_for(lambda: any("agent-changed" in e["reason"] for e in events(demo, "anomaly.detected")))


def test_an_updated_unrecognised_agent_keeps_its_session(browser: Any) -> None:
    """A9.46, the other way: a client that is no known browser and updates itself (only its
    version numbers change) stays signed in."""
    b = browser(agent="spec-client/1.0 (build 7)")
    b.sign_in()
    b.agent = "spec-client/1.2.5 (build 19)"
    assert b.user() == "alice"


# --------------------------------------------------------------------------------------------
# A2.11: the prefix rules in any case
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "field_name"),
    [
        ({"name": "__HOST-id", "path": "/app"}, "cookie.path"),
        ({"name": "__host-id", "secure": False}, "cookie.secure"),
        ({"name": "__SECURE-id", "secure": False}, "cookie.secure"),
    ],
)
def test_a_prefix_in_another_case_is_held_to_the_prefix_rules(
    kw: dict[str, Any], field_name: str
) -> None:
    """RFC 6265bis 5.7 matches ``__Host-`` and ``__Secure-`` case-insensitively, so a browser
    drops ``__HOST-id`` with ``Path=/app``: the policy refuses to configure a cookie no
    browser keeps, whatever the case of its prefix."""
    with pytest.raises(ValueError, match=field_name):
        CookiePolicy(**kw)


def test_a_domain_turns_a_host_prefix_in_any_case_into_secure() -> None:
    with pytest.warns(UserWarning, match="__Secure-id"):
        policy = CookiePolicy(name="__host-id", domain="example.test")
    assert policy.name == "__Secure-id"
    cookie = parse_set_cookie(CookieWriter(policy).issue("v"))
    assert cookie.name == "__Secure-id" and cookie.get("domain") == "example.test"
    assert cookie.has("secure")


# --------------------------------------------------------------------------------------------
# A9.47, 49, 50: addresses seen through the trusted proxy
# --------------------------------------------------------------------------------------------


def test_a_nearby_address_passes_and_alternating_networks_end_the_session(
    demo: DemoServer, browser: Any
) -> None:
    """A9.47 and 50: the same /24 is the same place; another network is noted
    (``network-changed``) and let through; going back and forth between the two within minutes
    is two people sharing a cookie (``network-flapping``): the session ends."""
    b = browser(ip="203.0.113.10")
    b.sign_in()
    b.ip = "203.0.113.200"
    assert b.user() == "alice"
    b.ip = "198.18.7.7"
    assert b.user() == "alice"
    b.ip = "203.0.113.10"
    assert b.user() is None
    b.ip = "198.18.7.7"
    assert b.user() is None

    def reasons() -> list[str]:
        return [e["reason"] for e in events(demo, "anomaly.detected")]

    _wait_for(lambda: "network-flapping" in reasons())
    assert "network-changed" in reasons()


def test_many_unknown_ids_from_one_address_are_throttled(demo: DemoServer, browser: Any) -> None:
    """A9.49: well-formed session IDs the server never issued, one after another from one
    address, are answered 429 with ``Retry-After`` past a threshold (well under 100), with a
    ``client.throttled`` event; a client at another address is not affected."""
    guesser = browser(ip="192.0.2.77")
    statuses = []
    for _ in range(100):
        guesser.jar.clear()
        guesser.jar.set_cookie(_jar_cookie(COOKIE, secrets.token_urlsafe(32)))
        r = guesser.request("GET", "/api/me", headers={"accept": "application/json"})
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert r.headers.get("retry-after", "").isdigit()
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {401}, statuses
    _wait_for(lambda: bool(events(demo, "client.throttled")))
    other = browser(ip="192.0.2.200")
    other.sign_in()
    assert other.user() == "alice"
