"""Requirements of OWASP ASVS 5.0 and the OWASP cheat sheets checked the way an outside client
checks them, through both adapters (Starlette over ASGI, Flask over WSGI), with httpx's own
cookie jar keeping the cookies as a client would, asserting only statuses, headers, bodies and
log lines.

Covered here: IDs are unique and look random (ASVS 7.2.3, 11.5.1); an ID carries no meaning and
a changed character is no session (7.2.2); the ID is read from the cookie only (14.2.1); junk
cookie values are refused calmly and never echoed (Session Management cheat sheet, "Manage
Session ID as Any Other User Input"); the logout's deletion cookie really empties a jar, a kept
copy is dead and Clear-Site-Data names its types quoted (7.4.1, 14.3.1); no legacy or
version-revealing headers (HTTP Headers cheat sheet); attacker-chosen text cannot forge a log
line (16.4.1).
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sessionwarden.asgi import SessionWardenMiddleware
from sessionwarden.clock import ManualClock
from sessionwarden.integrations.flask import SessionWarden
from sessionwarden.monitor import JsonFormatter, JsonLogSink
from sessionwarden.policy import HttpsPolicy, Policy
from sessionwarden.stores import InlineAsyncStore, MemoryStore

from .conftest import SECRET, Recorder
from .two_adapters import BASE, COOKIE, KINDS, _flask, _starlette

pytestmark = pytest.mark.anyio
ADAPTERS = pytest.mark.parametrize("kind", KINDS)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _policy() -> Policy:
    return Policy(secret_keys=(SECRET,), allowed_hosts=("app.test",))


@dataclass
class Jar:
    """A client of one adapter whose cookies live in httpx's cookie jar (never set by hand)."""

    http: httpx.Client | httpx.AsyncClient
    recorder: Recorder
    wsgi: Any = None  # the Flask app behind the WSGI adapter

    async def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        if isinstance(self.http, httpx.AsyncClient):
            return await self.http.request(method, path, **kw)
        return self.http.request(method, path, **kw)

    async def token(self) -> str:
        return str((await self.request("GET", "/token")).json()["csrf_token"])

    async def login(self) -> str:
        """Sign in as ``alice``; the session cookie the jar now holds."""
        token = await self.token()
        r = await self.request("POST", "/login", headers={"x-csrf-token": token})
        assert r.status_code == 200, r.text
        return self.cookie()

    def cookie(self) -> str:
        value = self.http.cookies.get(COOKIE)
        assert value, "the jar holds no session cookie"
        return value

    async def user(self, **kw: Any) -> str | None:
        r = await self.request("GET", "/whoami", **kw)
        assert r.status_code == 200, r.text
        return r.json()["user"]  # type: ignore[no-any-return]


@asynccontextmanager
async def jar(
    kind: str,
    policy: Policy | None = None,
    *,
    store: MemoryStore | None = None,
    sink: Any = None,
    base: str = BASE,
) -> AsyncIterator[Jar]:
    """A fresh client with its own jar over ``store`` (a new one unless given)."""
    recorder = Recorder()
    events = recorder if sink is None else sink
    store = store if store is not None else MemoryStore()
    policy = policy or _policy()
    http: httpx.Client | httpx.AsyncClient
    if kind == "asgi":
        app = SessionWardenMiddleware(
            _starlette(),
            policy=policy,
            store=InlineAsyncStore(store),
            clock=ManualClock(),
            sink=events,
        )
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)
    else:
        flask_app = _flask()
        SessionWarden(flask_app, policy=policy, store=store, clock=ManualClock(), sink=events)
        http = httpx.Client(transport=httpx.WSGITransport(app=flask_app), base_url=base)
    try:
        yield Jar(http, recorder, None if kind == "asgi" else flask_app)
    finally:
        if isinstance(http, httpx.AsyncClient):
            await http.aclose()
        else:
            http.close()


def _decoded(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


# -- IDs from a CSPRNG, >= 128 bits, unique, no pattern (ASVS 7.2.3, 11.5.1) ------------------


async def test_five_thousand_ids_are_unique_long_and_pass_monobit_and_runs() -> None:
    """5,000 sessions; all IDs distinct, >= 16 random bytes each, no shared prefix or suffix
    byte, and the concatenated bits pass the frequency (monobit) and runs tests of NIST SP
    800-22 at a threshold a true random source misses once in millions of runs (|z| < 5),
    while a counter, a clock or a reused value fails them by orders of magnitude."""
    store = MemoryStore()
    issued: list[str] = []
    async with jar("asgi", store=store) as client:
        for _ in range(5000):
            client.http.cookies.clear()
            await client.request("GET", "/token")  # a new anonymous session each time
            issued.append(client.cookie())
    assert len(set(issued)) == 5000
    raw = [_decoded(v) for v in issued]
    assert min(len(r) for r in raw) >= 16
    # No constant prefix or suffix: the first and last byte take almost every value.
    assert len({r[0] for r in raw}) > 200 and len({r[-1] for r in raw}) > 200
    bits = "".join(f"{byte:08b}" for r in raw for byte in r)
    n = len(bits)
    ones = bits.count("1")
    assert abs(2 * ones - n) / math.sqrt(n) < 5, "monobit"
    pi = ones / n
    runs = 1 + sum(1 for a, b in itertools.pairwise(bits) if a != b)
    expected = 2 * n * pi * (1 - pi)
    assert abs(runs - expected) / (2 * math.sqrt(2 * n) * pi * (1 - pi)) < 5, "runs"
    # No correlation with sequence: consecutive IDs differ in about half their bits.
    flips = [
        sum(bin(x ^ y).count("1") for x, y in zip(a, b, strict=True)) / (8 * len(a))
        for a, b in itertools.pairwise(raw)
    ]
    assert 0.49 < sum(flips) / len(flips) < 0.51


# -- the token carries no meaning; one changed character is no session (ASVS 7.2.2) -------------


@ADAPTERS
async def test_token_carries_no_user_or_time_and_a_flipped_character_is_anonymous(
    kind: str,
) -> None:
    async with jar(kind) as client:
        value = await client.login()
        raw = _decoded(value)
        for needle in (b"alice", b'{"', str(int(ManualClock().now()))[:6].encode()):
            assert needle not in raw and needle.decode() not in value
        for i in (0, len(value) // 2, len(value) - 2):
            flipped = value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1 :]
            client.http.cookies.clear()
            assert await client.user(headers={"cookie": f"{COOKIE}={flipped}"}) is None
        client.http.cookies.set(COOKIE, value, domain="app.test")
        assert await client.user() == "alice"


# -- accepted from the configured cookie only (ASVS 14.2.1) ------------------------------------


@ADAPTERS
@pytest.mark.parametrize(
    "carrier",
    ["query-sid", "query-id", "form-id", "x-session-id", "bearer", "other-cookie-name"],
)
async def test_a_valid_token_outside_the_cookie_is_not_a_session(kind: str, carrier: str) -> None:
    async with jar(kind) as owner:
        token_value = await owner.login()
        owner.http.cookies.clear()  # from now on: no session cookie at all
        path, headers = "/whoami", {"accept": "application/json"}
        if carrier == "query-sid":
            path = f"/whoami?sid={token_value}"
        elif carrier == "query-id":
            path = f"/whoami?id={token_value}"
        elif carrier == "x-session-id":
            headers["x-session-id"] = token_value
        elif carrier == "bearer":
            headers["authorization"] = f"Bearer {token_value}"
        elif carrier == "other-cookie-name":
            headers["cookie"] = f"id={token_value}; session={token_value}"
        if carrier == "form-id":
            csrf = await owner.token()
            owner.http.cookies.clear()
            r = await owner.request(
                "POST",
                "/transfer",
                content=f"id={token_value}&csrf_token={csrf}".encode(),
                headers={**headers, "content-type": "application/x-www-form-urlencoded"},
            )
            assert r.status_code == 403  # no session: the token belongs to nobody here
            assert token_value not in r.text
            return
        r = await owner.request("GET", path, headers=headers)
        assert r.status_code == 200 and r.json() == {"user": None}
        assert token_value not in r.text


# -- malformed IDs are bad input, never a server error, never echoed ---------------------------

_JUNK: list[bytes] = [
    b"' OR 1=1--",
    b"<script>x</script>",
    b"A" * 8192,
    b"%00",
    b"\x00",
    "h\u00e9llo".encode("latin-1"),  # non-ASCII as a Latin-1 byte
    "h\u00e9llo\u2028".encode(),  # non-ASCII as UTF-8 bytes
    b'"quoted"',
    b"\xff\xfe\xfd",
]


@ADAPTERS
@pytest.mark.parametrize("junk", _JUNK, ids=lambda j: j[:12].decode("latin-1").encode().hex())
async def test_junk_cookie_values_are_anonymous_with_a_normal_status(
    kind: str, junk: bytes
) -> None:
    cookie = b"__Host-id=" + junk
    shown = junk.decode("latin-1")
    async with jar(kind) as client:
        if kind == "asgi":
            r = await client.request("GET", "/whoami", headers={"cookie": cookie})
            status, headers, body = r.status_code, list(r.headers.items()), r.text
        else:  # httpx's WSGI transport only passes ASCII headers; a server passes Latin-1
            status, headers, body = _wsgi_get(client.wsgi, "/whoami", shown)
        assert status == 200 and json.loads(body) == {"user": None}
        assert len(shown) < 4 or shown not in body
        for _, value in headers:
            assert len(shown) < 4 or shown not in value


def _wsgi_get(app: Any, path: str, cookie: str) -> tuple[int, list[tuple[str, str]], str]:
    """GET ``path`` from a WSGI app as a server would, the Cookie header decoded as Latin-1
    (PEP 3333)."""
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path=path, base_url=BASE).get_environ()
    environ["HTTP_COOKIE"] = "__Host-id=" + cookie
    environ["REMOTE_ADDR"] = "198.51.100.7"
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
        started[:] = [int(status.split()[0]), headers]
        return lambda data: None

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks).decode()
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return started[0], started[1], body


# -- logout through a real jar (ASVS 7.4.1, 14.3.1) --------------------------------------------


@ADAPTERS
async def test_logout_empties_the_jar_and_a_kept_copy_is_dead(kind: str) -> None:
    store = MemoryStore()
    async with jar(kind, store=store) as victim, jar(kind, store=store) as thief:
        stolen = await victim.login()
        token = await victim.token()
        r = await victim.request("POST", "/logout", headers={"x-csrf-token": token})
        assert r.status_code == 200
        (deletion,) = r.headers.get_list("set-cookie")
        attrs = [a.strip() for a in deletion.split(";")]
        assert attrs[0] == f"{COOKIE}="
        assert {"Path=/", "Secure", "Max-Age=0"} <= set(attrs)
        assert not any(a.lower().startswith("domain") for a in attrs)
        assert victim.http.cookies.get(COOKIE) is None  # the jar honoured the deletion
        assert "no-store" in r.headers["cache-control"]
        tokens_sent = [t.strip() for t in r.headers["clear-site-data"].split(",")]
        assert tokens_sent == ['"cookies"', '"storage"']  # quoted, or browsers ignore them
        thief.http.cookies.set(COOKIE, stolen, domain="app.test")
        assert await thief.user() is None
        assert await victim.user() is None


@ADAPTERS
@pytest.mark.parametrize(
    ("base", "hosts", "cleared"),
    [
        ("https://app.test", ("app.test",), True),
        ("http://localhost:8000", (), True),  # a secure context to browsers over plain HTTP
    ],
)
async def test_clear_site_data_only_where_a_browser_honours_it(
    kind: str, base: str, hosts: tuple[str, ...], cleared: bool
) -> None:
    """Clear-Site-Data is honoured in secure contexts only: HTTPS, and plain HTTP to a loopback
    host. Plain HTTP to a public host never carries a session to end (no cookie is set or
    cleared there: ``tests/test_standards_https_live.py``)."""
    policy = Policy(secret_keys=(SECRET,), allowed_hosts=hosts, https=HttpsPolicy(redirect=False))
    async with jar(kind, policy, base=base) as client:
        # Python's cookie jar keeps a Secure cookie from plain-HTTP pages (browsers do so for
        # loopback hosts only) but will not send it back: the cookie is sent by hand here.
        r = await client.request("GET", "/token")
        sent = {"cookie": f"{COOKIE}={client.http.cookies[COOKIE]}"}
        r = await client.request(
            "POST", "/login", headers={**sent, "x-csrf-token": r.json()["csrf_token"]}
        )
        assert r.status_code == 200, r.text
        sent = {"cookie": f"{COOKIE}={client.http.cookies[COOKIE]}"}
        token = (await client.request("GET", "/token", headers=sent)).json()["csrf_token"]
        r = await client.request("POST", "/logout", headers={**sent, "x-csrf-token": token})
        assert r.status_code == 200
        assert r.headers.get_list("set-cookie")[0].startswith(f"{COOKIE}=;")
        assert ("clear-site-data" in r.headers) is cleared
        assert await client.user(headers=sent) is None


# -- no legacy or version-revealing headers ----------------------------------------------------


@ADAPTERS
@pytest.mark.parametrize("path", ["/whoami", "/nope", "/login"])
async def test_no_xss_auditor_server_or_powered_by_headers(kind: str, path: str) -> None:
    async with jar(kind) as client:
        await client.login()
        r = await client.request("GET", path)  # 200, 404 and 405
        assert r.headers.get("x-xss-protection") in (None, "0")
        assert "x-powered-by" not in r.headers
        assert "sessionwarden" not in r.headers.get("server", "").lower()


# -- attacker-controlled text cannot forge a log record (ASVS 16.4.1) ---------------------------


@pytest.mark.parametrize(
    ("kind", "agent"),
    [
        ("asgi", 'a\r\n{"event":"session.logged_out"}'),
        ("wsgi", 'a\r\n{"event":"session.logged_out"}'),
        # UTF-8 on the wire (httpx's WSGI transport passes ASCII headers only)
        ("asgi", 'a\u2028{"event":"session.logged_out"}'),
    ],
    ids=["crlf-asgi", "crlf-wsgi", "u2028-asgi"],
)
async def test_a_forged_line_in_the_user_agent_stays_inside_one_record(
    kind: str, agent: str
) -> None:
    logger = logging.getLogger(f"sessionwarden.test.forged_line.{kind}")
    logger.handlers.clear()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    async with jar(kind, sink=JsonLogSink(logger)) as client:
        client.http.headers["user-agent"] = agent
        await client.login()
        token = await client.token()
        await client.request("POST", "/logout", headers={"x-csrf-token": token})
    lines = buffer.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records].count("session.logged_out") == 1
    for record in records:
        assert set(record) >= {"event", "at", "ref", "user", "ip", "ua", "path", "reason"}
        assert record["ua"].startswith("a") and "logged_out" in record["ua"]
