"""Same core, same tests: one behaviour suite run through the ASGI and the WSGI adapter.

Both apps are built from one table of handlers, so the only thing that differs between the two
runs is the adapter: a Starlette app with ``SessionWardenMiddleware`` (driven by
``httpx.ASGITransport``) and a raw WSGI app (werkzeug request parsing) in ``SessionWardenWSGI``
(driven by ``httpx.WSGITransport``). Every assertion is written once. A case where the adapters
disagree is a library bug and is marked ``xfail(strict=True)`` for that adapter with the reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from werkzeug.wrappers import Request as WRequest
from werkzeug.wrappers import Response as WResponse

from sessionwarden.asgi import SessionWardenMiddleware, get_context, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.core import Session
from sessionwarden.guard import RequestContext
from sessionwarden.policy import Policy
from sessionwarden.stores import InlineAsyncStore, MemoryStore, StoreUnavailable
from sessionwarden.wsgi import SessionWardenWSGI

from .conftest import SECRET

BASE = "https://app.test"
MAX_AGE = 300
SECURITY_HEADERS = (
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "cross-origin-opener-policy",
    "strict-transport-security",
    "content-security-policy",
)

ADAPTERS = ["asgi", "wsgi"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- a store that can be made to fail -------------------------------------------------------------
_READS = ("get",)
_WRITES = ("insert", "rotate", "update", "revoke", "delete")


class FlakyStore(MemoryStore):
    """A memory store whose calls raise :class:`StoreUnavailable`: every call while ``broken``,
    only the writes while ``writes_broken`` (so the load succeeds and the commit fails)."""

    broken = False
    writes_broken = False

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        get = super().__getattribute__
        if (name in _READS and get("broken")) or (
            name in _WRITES and (get("broken") or get("writes_broken"))
        ):

            def fail(*args: Any, **kwargs: Any) -> Any:
                raise StoreUnavailable("redis://10.0.0.5:6379 unreachable: ConnectionError")

            return fail
        return attr


# -- one table of handlers ------------------------------------------------------------------------
@dataclass
class Ctx:
    session: Session
    context: RequestContext
    body: bytes
    form: dict[str, str]
    files: dict[str, bytes]


@dataclass
class Out:
    body: bytes | str
    status: int = 200
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _json(value: Any, status: int = 200) -> Out:
    return Out(json.dumps(value), status)


def handlers(ran: list[str]) -> dict[tuple[str, str], Callable[[Ctx], Out]]:
    def home(c: Ctx) -> Out:
        s = c.session
        return _json(
            {"user": s.user_id, "visits": s.get("visits"), "return_to": s.get("return_to")}
        )

    def count(c: Ctx) -> Out:
        s = c.session
        s["visits"] = int(s.get("visits") or 0) + 1  # type: ignore[arg-type]
        return _json({"visits": s["visits"]})

    def page(c: Ctx) -> Out:
        nonce = c.context.nonce
        html = f'<!doctype html><script nonce="{nonce}">1</script>'
        return Out(html, content_type="text/html; charset=utf-8")

    def token(c: Ctx) -> Out:
        return _json({"csrf_token": c.context.csrf_token(), "nonce": c.context.nonce})

    def login(c: Ctx) -> Out:
        c.session.login(c.form.get("user", "alice"))
        return Out("ok", content_type="text/plain")

    def logout(c: Ctx) -> Out:
        c.session.logout()
        return Out("bye", content_type="text/plain")

    def echo(c: Ctx) -> Out:
        ran.append("echo")
        files = {k: v.decode() for k, v in c.files.items()}
        digest = hashlib.sha256(c.body).hexdigest()
        return _json({"form": c.form, "files": files, "sha256": digest})

    def sensitive(c: Ctx) -> Out:
        c.session["return_to"] = "/sensitive"
        c.session.require_recent_auth(MAX_AGE)
        return Out("secret", content_type="text/plain")

    def redirect(c: Ctx) -> Out:
        return Out("", 302, "text/plain", {"location": "/"})

    def fail(c: Ctx) -> Out:
        return Out("failed", 500, "text/plain")

    def cacheable(c: Ctx) -> Out:
        return Out("{}", headers={"cache-control": "public, max-age=60"})

    return {
        ("GET", "/"): home,
        ("GET", "/count"): count,
        ("GET", "/page"): page,
        ("GET", "/token"): token,
        ("POST", "/login"): login,
        ("POST", "/logout"): logout,
        ("POST", "/echo"): echo,
        ("GET", "/sensitive"): sensitive,
        ("GET", "/redirect"): redirect,
        ("GET", "/fail"): fail,
        ("GET", "/cacheable"): cacheable,
    }


STREAM_CHUNKS = (b"one,", b"two,", b"three")


# -- the ASGI app: Starlette ---------------------------------------------------------------------
def starlette_routes(ran: list[str]) -> list[Route]:
    routes = []
    for (method, path), handler in handlers(ran).items():

        async def endpoint(request: Request, handler: Callable[[Ctx], Out] = handler) -> Response:
            body = await request.body()
            form: dict[str, str] = {}
            files: dict[str, bytes] = {}
            if request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            ):
                async with request.form() as parsed:
                    for key, value in parsed.multi_items():
                        if isinstance(value, str):
                            form[key] = value
                        else:
                            files[key] = await value.read()
            out = handler(Ctx(get_session(request), get_context(request), body, form, files))
            return Response(out.body, out.status, out.headers, media_type=out.content_type)

        routes.append(Route(path, endpoint, methods=[method]))

    async def stream(request: Request) -> Response:
        get_session(request)["streamed"] = True

        async def chunks() -> AsyncIterator[bytes]:
            for chunk in STREAM_CHUNKS:
                yield chunk

        return StreamingResponse(chunks(), media_type="text/plain")

    routes.append(Route("/stream", stream))
    return routes


# -- the WSGI app: raw WSGI with werkzeug's request parsing ----------------------------------------
def wsgi_app(ran: list[str]) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
    table = handlers(ran)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = WRequest(environ)
        if request.path == "/stream":
            # A lazy WSGI app (PEP 3333 allows start_response at the first iteration).
            environ["sessionwarden.session"]["streamed"] = True

            def chunks() -> Iterator[bytes]:
                start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
                yield from STREAM_CHUNKS

            return chunks()
        handler = table.get((request.method, request.path))
        if handler is None:
            allowed = any(path == request.path for _, path in table)
            status = 405 if allowed else 404
            return WResponse("Not Found", status, mimetype="text/plain")(environ, start_response)
        body = request.get_data(cache=True)
        form = {k: v for k, v in request.form.items(multi=True)}
        files = {k: v.read() for k, v in request.files.items(multi=True)}
        ctx = Ctx(environ["sessionwarden.session"], environ["sessionwarden"], body, form, files)
        out = handler(ctx)
        response = WResponse(out.body, out.status, out.headers, content_type=out.content_type)
        return response(environ, start_response)

    return app


# -- drivers --------------------------------------------------------------------------------------
class Driver:
    """The same async calls for both adapters (the WSGI client is synchronous underneath)."""

    def __init__(self, kind: str, app: Any, base_url: str) -> None:
        self.kind = kind
        if kind == "asgi":
            self.aclient: httpx.AsyncClient | None = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=base_url
            )
            self.sclient: httpx.Client | None = None
        else:
            self.aclient = None
            self.sclient = httpx.Client(transport=httpx.WSGITransport(app=app), base_url=base_url)

    @property
    def client(self) -> httpx.Client | httpx.AsyncClient:
        client = self.aclient or self.sclient
        assert client is not None
        return client

    @property
    def cookies(self) -> httpx.Cookies:
        return self.client.cookies

    async def send(self, request: httpx.Request) -> httpx.Response:
        if self.aclient is not None:
            return await self.aclient.send(request)
        assert self.sclient is not None
        return self.sclient.send(request)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await self.send(self.client.build_request(method, url, **kwargs))

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def token(self) -> str:
        return str((await self.get("/token")).json()["csrf_token"])

    async def login(self, user: str = "alice") -> httpx.Response:
        r = await self.post(
            "/login", data={"user": user}, headers={"x-csrf-token": await self.token()}
        )
        assert r.status_code == 200, r.text
        return r

    async def aclose(self) -> None:
        if self.aclient is not None:
            await self.aclient.aclose()
        if self.sclient is not None:
            self.sclient.close()


@dataclass
class Harness:
    kind: str
    store: FlakyStore
    clock: ManualClock
    ran: list[str]
    app: Any
    drivers: list[Driver] = field(default_factory=list)

    def client(self, base_url: str = BASE) -> Driver:
        driver = Driver(self.kind, self.app, base_url)
        self.drivers.append(driver)
        return driver


def build(kind: str, *, reauth_redirect: str | None = "/reauth") -> Harness:
    store = FlakyStore()
    clock = ManualClock()
    ran: list[str] = []
    policy = Policy(secret_keys=(SECRET,), allowed_hosts=("*",))
    app: Any
    if kind == "asgi":
        app = Starlette(
            routes=starlette_routes(ran),
            middleware=[
                Middleware(
                    SessionWardenMiddleware,
                    policy=policy,
                    store=InlineAsyncStore(store),
                    clock=clock,
                    reauth_redirect=reauth_redirect,
                )
            ],
        )
    else:
        app = SessionWardenWSGI(
            wsgi_app(ran), policy=policy, store=store, clock=clock, reauth_redirect=reauth_redirect
        )
    return Harness(kind, store, clock, ran, app)


@pytest.fixture(params=ADAPTERS)
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    harness = build(request.param)
    yield harness
    for driver in harness.drivers:
        await driver.aclose()


def session_cookie(r: httpx.Response) -> str | None:
    for value in r.headers.get_list("set-cookie"):
        if value.startswith("__Host-id="):
            return value
    return None


def cookie_value(r: httpx.Response) -> str:
    found = session_cookie(r)
    assert found is not None
    return found.split(";", 1)[0].split("=", 1)[1]


def assert_security_headers(r: httpx.Response) -> None:
    missing = [name for name in SECURITY_HEADERS if name not in r.headers]
    assert missing == [], f"{r.status_code} {r.request.url} lacks {missing}"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"


pytestmark = pytest.mark.anyio


# -- the suite ------------------------------------------------------------------------------------
async def test_session_round_trip(h: Harness) -> None:
    c = h.client()
    r = await c.get("/count")
    assert r.json() == {"visits": 1}
    cookie = session_cookie(r)
    assert cookie is not None and cookie.startswith("__Host-id=")
    assert "; Secure" in cookie and "; HttpOnly" in cookie and "; SameSite=Lax" in cookie
    assert "; Path=/" in cookie and "Domain" not in cookie
    for n in (2, 3):
        r = await c.get("/count")
        assert r.json() == {"visits": n}
        assert session_cookie(r) is None  # the ID is not reissued on every response
    assert (await c.get("/")).json() == {"user": None, "visits": 3, "return_to": None}
    # a browser without the cookie is someone else
    assert (await h.client().get("/")).json()["visits"] is None


async def test_login_rotates_the_cookie(h: Harness) -> None:
    c = h.client()
    await c.get("/count")
    before = c.cookies["__Host-id"]
    r = await c.login("alice")
    after = cookie_value(r)
    assert after != before
    assert (await c.get("/")).json() == {"user": "alice", "visits": 1, "return_to": None}
    # the pre-login ID is dead: a planted (fixated) ID never becomes a signed-in session
    other = h.client()
    r = await other.get("/", headers={"cookie": f"__Host-id={before}"})
    assert r.json()["user"] is None and r.json()["visits"] is None


async def test_logout_kills_the_session_and_clears_site_data(h: Harness) -> None:
    c = h.client()
    await c.login()
    stolen = c.cookies["__Host-id"]
    r = await c.post("/logout", headers={"x-csrf-token": await c.token()})
    assert r.status_code == 200 and r.text == "bye"
    cleared = session_cookie(r)
    assert cleared is not None and cleared.startswith("__Host-id=;") and "Max-Age=0" in cleared
    assert r.headers["clear-site-data"] == '"cookies", "storage"'
    assert r.headers["cache-control"] == "no-store"
    # a copy of the cookie taken before logout reaches nothing
    thief = h.client()
    r = await thief.get("/", headers={"cookie": f"__Host-id={stolen}"})
    assert r.status_code == 200 and r.json()["user"] is None


async def test_csrf_missing_bad_and_foreign_tokens_refused_before_the_app(h: Harness) -> None:
    c = h.client()
    await c.login()
    json_accept = {"accept": "application/json"}
    r = await c.post("/echo", data={"a": "1"}, headers=json_accept)
    assert r.status_code == 403
    assert r.json() == {"error": "csrf", "reason": "missing-token"}
    r = await c.post("/echo", headers={**json_accept, "x-csrf-token": "not-a-token"})
    assert r.status_code == 403 and r.json() == {"error": "csrf", "reason": "malformed-token"}
    r = await c.post("/echo", data={"csrf_token": "x" * 86})
    assert r.status_code == 403 and "form expired" in r.text
    other = h.client()
    await other.login("mallory")
    foreign = await other.token()
    r = await c.post("/echo", headers={**json_accept, "x-csrf-token": foreign})
    assert r.status_code == 403 and r.json() == {"error": "csrf", "reason": "bad-token"}
    r = await c.post("/echo", data={"csrf_token": foreign, "a": "1"})
    assert r.status_code == 403
    # an anonymous client with no session has no token to present
    r = await h.client().post("/echo", headers={**json_accept, "x-csrf-token": foreign})
    assert r.status_code == 403 and r.json()["error"] == "csrf"
    assert h.ran == []
    assert_security_headers(r)


async def test_token_in_header_and_in_forms_with_body_replayed_intact(h: Harness) -> None:
    c = h.client()
    await c.login()
    t = await c.token()
    r = await c.post("/echo", json={"a": 1}, headers={"x-csrf-token": t})
    assert r.status_code == 200 and r.json()["form"] == {}

    req = c.client.build_request(
        "POST", "/echo", data={"csrf_token": t, "amount": "42", "n": "ü &="}
    )
    sent = hashlib.sha256(req.read()).hexdigest()
    r = await c.send(req)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "form": {"csrf_token": t, "amount": "42", "n": "ü &="},
        "files": {},
        "sha256": sent,
    }

    payload = b"file body\r\n--not-a-boundary\r\n" * 50
    req = c.client.build_request(
        "POST",
        "/echo",
        data={"amount": "7", "csrf_token": t},
        files={"upload": ("a.txt", payload, "text/plain")},
    )
    sent = hashlib.sha256(req.read()).hexdigest()
    r = await c.send(req)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["form"] == {"amount": "7", "csrf_token": t}
    assert body["files"] == {"upload": payload.decode()}
    assert body["sha256"] == sent
    assert h.ran == ["echo", "echo", "echo"]


async def test_cross_site_fetch_refused_even_with_a_valid_token(h: Harness) -> None:
    c = h.client()
    await c.login()
    t = await c.token()
    r = await c.post(
        "/echo",
        data={"csrf_token": t},
        headers={"sec-fetch-site": "cross-site", "origin": "https://evil.test"},
    )
    assert r.status_code == 403 and "Cross-site" in r.text
    r = await c.post(
        "/echo",
        headers={"x-csrf-token": t, "sec-fetch-site": "same-site", "accept": "application/json"},
    )
    assert r.status_code == 403
    assert r.json() == {"error": "cross-origin", "reason": "cross-site-fetch"}
    r = await c.post("/echo", headers={"x-csrf-token": t, "origin": "https://evil.test"})
    assert r.status_code == 403
    assert h.ran == []
    r = await c.post("/echo", headers={"x-csrf-token": t, "sec-fetch-site": "same-origin"})
    assert r.status_code == 200 and h.ran == ["echo"]


async def test_plain_http_gets_308_with_query_kept_but_not_loopback(h: Harness) -> None:
    plain = h.client("http://app.test")
    r = await plain.post("/echo?x=1&y=a%20b", data={"a": "b"})
    assert r.status_code == 308
    assert r.headers["location"] == "https://app.test/echo?x=1&y=a%20b"
    assert session_cookie(r) is None
    assert r.headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" not in r.headers  # meaningless (and ignored) over HTTP
    r = await plain.get("/count?z=%2F")
    assert r.status_code == 308 and r.headers["location"] == "https://app.test/count?z=%2F"
    assert h.ran == []
    loopback = h.client("http://127.0.0.1:8000")
    r = await loopback.get("/")
    assert r.status_code == 200 and r.json()["user"] is None


async def test_security_headers_on_every_kind_of_response(h: Harness) -> None:
    c = h.client()
    r = await c.get("/page")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert_security_headers(r)
    nonce = r.text.split('nonce="', 1)[1].split('"', 1)[0]
    assert len(nonce) >= 22
    assert f"'nonce-{nonce}'" in r.headers["content-security-policy"]
    r2 = await c.get("/page")
    assert f"'nonce-{nonce}'" not in r2.headers["content-security-policy"]  # fresh per response
    for path, status in (("/", 200), ("/redirect", 302), ("/missing", 404), ("/fail", 500)):
        r = await c.get(path)
        assert r.status_code == status, path
        assert_security_headers(r)
    r = await c.post("/echo", headers={"accept": "application/json"})
    assert r.status_code == 403
    assert_security_headers(r)


async def test_no_store_on_authenticated_responses(h: Harness) -> None:
    c = h.client()
    r = await c.get("/cacheable")
    assert r.headers["cache-control"] == "public, max-age=60"  # anonymous, no cookie: app's own
    await c.login()
    for path in ("/", "/cacheable", "/page"):
        r = await c.get(path)
        assert r.headers.get_list("cache-control") == ["no-store"], path


async def test_store_unavailable_is_a_clean_503(h: Harness) -> None:
    c = h.client()
    await c.login()
    h.store.broken = True
    r = await c.get("/")
    assert r.status_code == 503
    assert "temporarily unavailable" in r.text
    assert "Traceback" not in r.text and "redis" not in r.text.lower()
    assert "10.0.0.5" not in r.text
    assert r.headers["retry-after"] == "1"
    assert session_cookie(r) is None
    assert_security_headers(r)
    r = await c.get("/", headers={"accept": "application/json"})
    assert r.status_code == 503
    assert r.json() == {"error": "store-unavailable", "reason": "session-store"}
    h.store.broken = False
    assert (await c.get("/")).json()["user"] == "alice"
    # a failure while committing (a touch is due) replaces the app's response as well
    h.clock.advance(120)
    h.store.writes_broken = True
    r = await c.get("/count")
    assert r.status_code == 503 and "temporarily unavailable" in r.text
    assert '"visits"' not in r.text
    assert session_cookie(r) is None
    assert_security_headers(r)
    h.store.writes_broken = False
    assert (await c.get("/")).json() == {"user": "alice", "visits": None, "return_to": None}


async def test_store_failing_at_commit_of_a_streamed_response_is_a_503(h: Harness) -> None:
    # a lazy WSGI app calls start_response at its first iteration (PEP 3333 allows it)
    c = h.client()
    await c.login()
    r = await c.get("/stream")
    assert r.status_code == 200 and r.content == b"".join(STREAM_CHUNKS)
    h.clock.advance(120)  # a touch is due, so the commit writes
    h.store.writes_broken = True
    r = await c.get("/stream")
    assert r.status_code == 503
    assert "temporarily unavailable" in r.text
    assert_security_headers(r)


async def test_reauthentication_required_is_401_for_json_and_303_for_browsers(h: Harness) -> None:
    c = h.client()
    await c.login()
    r = await c.get("/sensitive")
    assert r.status_code == 200 and r.text == "secret"
    h.clock.advance(MAX_AGE + 1)
    r = await c.get("/sensitive", headers={"accept": "application/json"})
    assert r.status_code == 401
    assert r.json() == {
        "error": "reauthentication-required",
        "reason": "authentication-too-old",
        "reauth_required": True,
    }
    assert "www-authenticate" not in r.headers
    assert_security_headers(r)
    r = await c.get("/sensitive")
    assert r.status_code == 303 and r.headers["location"] == "/reauth"
    assert "sign in again" in r.text
    assert_security_headers(r)
    # still signed in: only the sensitive operation needs a fresh proof
    assert (await c.get("/")).json()["user"] == "alice"
    anon = h.client()
    r = await anon.get("/sensitive", headers={"accept": "application/json"})
    assert r.status_code == 401 and r.json()["reason"] == "not-authenticated"


async def test_reauthentication_without_redirect_is_401_for_browsers_too() -> None:
    for kind in ADAPTERS:
        harness = build(kind, reauth_redirect=None)
        c = harness.client()
        await c.login()
        harness.clock.advance(MAX_AGE + 1)
        r = await c.get("/sensitive")
        assert r.status_code == 401, kind
        assert "sign in again" in r.text
        await c.aclose()


async def test_session_writes_before_reauthentication_are_kept(h: Harness) -> None:
    # the session is committed on the reauthentication answer, as on any response
    c = h.client()
    await c.login()
    h.clock.advance(MAX_AGE + 1)
    r = await c.get("/sensitive")
    assert r.status_code == 303
    assert (await c.get("/")).json()["return_to"] == "/sensitive"


async def test_malformed_cookies_are_anonymous(h: Harness) -> None:
    c = h.client()
    variants = [
        "",
        "a" * 5000,
        '"unterminated',
        "x" * 43,
        "%00%ff",
        "a=b=c",
        "__Host-id=a; __Host-id=b",
    ]
    for raw in variants:
        r = await c.get("/", headers={"cookie": f"__Host-id={raw}"})
        assert r.status_code == 200, raw
        assert r.json()["user"] is None
    r = await c.get("/", headers={"cookie": "a" * 20_000})
    assert r.status_code == 200 and r.json()["user"] is None


async def test_non_ascii_cookie_bytes_are_anonymous(h: Harness) -> None:
    # httpx's WSGI transport only takes ASCII headers, so these go to each adapter directly.
    for raw in ("ü".encode() * 43, b"\xff\xfe\x00", b"__Host-id=\xc3\x28"):
        status, body = await call_directly(h, b"__Host-id=" + raw)
        assert status == 200, raw
        assert json.loads(body)["user"] is None


async def call_directly(h: Harness, cookie: bytes) -> tuple[int, bytes]:
    if h.kind == "asgi":
        sent: list[dict[str, Any]] = []
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "https",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"app.test"), (b"cookie", cookie)],
            "client": ("127.0.0.1", 1234),
            "server": ("app.test", 443),
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await h.app(scope, receive, send)
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return int(sent[0]["status"]), body
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "app.test",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "app.test",
        "HTTP_COOKIE": cookie.decode("latin-1"),  # PEP 3333: header bytes as latin-1
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    body = b"".join(h.app(environ, start_response))
    return int(statuses[0].split()[0]), body


# -- adapter-specific findings --------------------------------------------------------------------
async def test_asgi_wrapped_around_starlette_answers_reauthentication() -> None:
    store = FlakyStore()
    clock = ManualClock()
    ran: list[str] = []
    app = SessionWardenMiddleware(
        Starlette(routes=starlette_routes(ran)),
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store=InlineAsyncStore(store),
        clock=clock,
        reauth_redirect="/reauth",
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        r = await c.get("/sensitive", headers={"accept": "application/json"})
        assert r.status_code == 401


def test_wsgi_start_response_with_exc_info_commits_once() -> None:
    writes: list[str] = []

    class Counting(MemoryStore):
        def insert(self, *args: Any, **kwargs: Any) -> Any:
            writes.append("insert")
            return super().insert(*args, **kwargs)

        def rotate(self, *args: Any, **kwargs: Any) -> Any:
            writes.append("rotate")
            return super().rotate(*args, **kwargs)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ["sessionwarden.session"].login("alice")
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("failed after start_response")
        except ValueError:
            start_response(
                "500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info()
            )
        return [b"error"]

    mw = SessionWardenWSGI(
        app, policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)), store=Counting()
    )
    transport = httpx.WSGITransport(app=mw, raise_app_exceptions=False)
    with httpx.Client(transport=transport, base_url=BASE) as c:
        r = c.get("/")
    assert r.status_code == 500
    assert writes == ["insert"]
