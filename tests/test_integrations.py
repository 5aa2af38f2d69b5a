"""The Flask extension and the FastAPI dependencies, over HTTP (httpx in-process transports)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import flask
import httpx
import pytest
from fastapi import Depends, FastAPI
from flask import Flask, render_template_string
from starlette.requests import Request
from starlette.responses import RedirectResponse

from sessionwarden.asgi import SessionWardenMiddleware
from sessionwarden.clock import ManualClock
from sessionwarden.core import Session
from sessionwarden.integrations import fastapi as swf
from sessionwarden.integrations.flask import (
    SessionWarden,
    csp_nonce,
    current_context,
    current_session,
    current_user,
    login_required,
    recent_auth_required,
)
from sessionwarden.integrations.flask import session as sw_session
from sessionwarden.policy import HttpsPolicy, Policy
from sessionwarden.stores import InlineAsyncStore, MemoryStore, StoreUnavailable

from .conftest import SECRET

BASE = "https://app.test"
JSON = {"accept": "application/json"}
TOKEN_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def sid(client: httpx.Client | httpx.AsyncClient) -> str:
    return str(client.cookies["__Host-id"])


# == Flask ========================================================================================
def flask_app(warden: SessionWarden | None = None, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config["SESSIONWARDEN_ALLOWED_HOSTS"] = ["app.test"]
    app.config.update(config)
    ran: list[str] = []
    app.config["RAN"] = ran

    @app.get("/")
    def home() -> dict[str, Any]:
        return {"user": sw_session.user_id, "note": sw_session.get("note")}

    @app.get("/page")
    def page() -> str:
        return render_template_string(
            '<form><input name="csrf_token" value="{{ csrf_token() }}">'
            '<input name="again" value="{{ csrf_token() }}"></form>'
            '<script nonce="{{ csp_nonce() }}"></script>'
            "<p>{{ sw_session.user_id or 'anonymous' }}</p>"
        )

    @app.post("/login")
    def login() -> str:
        sw_session.login(flask.request.form.get("user", "alice"))
        return "ok"

    @app.post("/note")
    def note() -> str:
        sw_session["note"] = flask.request.form["note"]
        return "noted"

    @app.get("/private")
    @login_required
    def private() -> str:
        ran.append("private")
        return f"hello {sw_session.user_id}"

    @app.get("/sensitive")
    @recent_auth_required(300)
    def sensitive() -> str:
        ran.append("sensitive")
        return "secret"

    @app.get("/remember-then-sensitive")
    def remember() -> str:
        current_session()["note"] = "/remember-then-sensitive"
        current_session().require_recent_auth(300)
        return "secret"

    @app.post("/reauth")
    def reauth() -> str:
        sw_session.reauthenticated()
        return "again"

    @app.get("/store-down")
    def store_down() -> str:
        raise StoreUnavailable("redis://10.0.0.5 unreachable")

    @app.get("/whoami-proxy")
    def whoami() -> dict[str, Any]:
        same = current_session() is flask.request.environ["sessionwarden.session"]
        return {"same": same, "nonce_ok": csp_nonce() == current_context().nonce}

    if warden is not None:
        warden.init_app(app)
    return app


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def warden(clock: ManualClock) -> SessionWarden:
    return SessionWarden(store=MemoryStore(), clock=clock, reauth_redirect="/reauth-page")


@pytest.fixture
def app(warden: SessionWarden) -> Flask:
    return flask_app(warden, SESSIONWARDEN_SECRET_KEYS=[SECRET])


def client_of(app: Flask) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE)


@pytest.fixture
def c(app: Flask) -> Iterator[httpx.Client]:
    with client_of(app) as client:
        yield client


def page_token(c: httpx.Client) -> str:
    r = c.get("/page")
    found = TOKEN_FIELD.search(r.text)
    assert found is not None, r.text
    return found.group(1)


def flask_login(c: httpx.Client, user: str = "alice") -> None:
    r = c.post("/login", data={"csrf_token": page_token(c), "user": user})
    assert r.status_code == 200, r.text


def test_flask_config_keys_and_store_url() -> None:
    app = flask_app(
        SessionWarden(),
        SESSIONWARDEN_SECRET_KEYS=["s" * 32],  # str keys are taken as UTF-8
        SESSIONWARDEN_STORE="memory://",
    )
    with client_of(app) as c:
        flask_login(c)
        assert c.get("/").json() == {"user": "alice", "note": None}


def test_flask_needs_keys_and_a_store_but_no_secret_key() -> None:
    with pytest.raises(RuntimeError, match="SESSIONWARDEN_SECRET_KEYS"):
        flask_app(SessionWarden(store="memory://"))
    with pytest.raises(RuntimeError, match="SESSIONWARDEN_STORE"):
        flask_app(SessionWarden(), SESSIONWARDEN_SECRET_KEYS=[SECRET])
    with pytest.raises(ValueError, match="32 bytes"):
        flask_app(SessionWarden(store="memory://"), SESSIONWARDEN_SECRET_KEYS=["short"])
    app = flask_app(
        SessionWarden(store="memory://", policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)))
    )
    assert app.config.get("SECRET_KEY") is None  # Flask's own secret is not needed
    with pytest.raises(RuntimeError, match="already installed"):
        SessionWarden(
            store="memory://", policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",))
        ).init_app(app)


def test_flask_session_is_separate_from_flasks_own(app: Flask, c: httpx.Client) -> None:
    @app.post("/both")
    def both() -> str:
        flask.session["theme"] = "dark"  # Flask's signed cookie, its own business
        sw_session["cart"] = 3
        return "ok"

    app.secret_key = "f" * 32
    flask_login(c)
    r = c.post("/both", headers={"x-csrf-token": page_token(c)})
    assert r.status_code == 200
    names = sorted(v.split("=", 1)[0] for v in r.headers.get_list("set-cookie"))
    assert names == ["session"]  # Flask's; sessionwarden's ID did not change
    assert "cart" not in flask.json.dumps(dict(c.cookies))
    with app.test_request_context():
        assert flask.session is not sw_session


def test_flask_templates_get_csrf_token_nonce_and_session(c: httpx.Client) -> None:
    r = c.get("/page")
    tokens = TOKEN_FIELD.findall(r.text) + re.findall(r'name="again" value="([^"]+)"', r.text)
    assert len(tokens) == 2 and tokens[0] != tokens[1]  # freshly masked each call
    nonce = re.search(r'<script nonce="([^"]+)">', r.text)
    assert nonce is not None
    assert f"'nonce-{nonce.group(1)}'" in r.headers["content-security-policy"]
    assert "<p>anonymous</p>" in r.text
    # both masked tokens are valid for the session
    for token in tokens:
        assert c.post("/note", data={"csrf_token": token, "note": "n"}).status_code == 200
    flask_login(c)
    assert "<p>alice</p>" in c.get("/page").text


def test_flask_session_proxy_round_trip(c: httpx.Client) -> None:
    r = c.post("/note", data={"csrf_token": page_token(c), "note": "hello"})
    assert r.status_code == 200 and r.headers["x-frame-options"] == "DENY"
    assert c.get("/").json() == {"user": None, "note": "hello"}
    assert c.get("/whoami-proxy").json() == {"same": True, "nonce_ok": True}
    r = c.post("/note", data={"note": "forged"})
    assert r.status_code == 403
    assert c.get("/").json()["note"] == "hello"


def test_flask_helpers_need_the_extension() -> None:
    bare = Flask(__name__)
    with bare.test_request_context(), pytest.raises(RuntimeError, match="not installed"):
        current_session()
    with bare.test_request_context(), pytest.raises(RuntimeError, match="not installed"):
        sw_session.get("x")


def test_flask_login_required(app: Flask, c: httpx.Client) -> None:
    r = c.get("/private", headers=JSON)
    assert r.status_code == 401
    assert r.json() == {"error": "authentication-required", "reason": "not-authenticated"}
    assert "www-authenticate" not in r.headers
    r = c.get("/private")
    assert r.status_code == 401 and r.headers["x-content-type-options"] == "nosniff"
    assert app.config["RAN"] == []
    flask_login(c)
    r = c.get("/private")
    assert r.status_code == 200 and r.text == "hello alice"
    assert r.headers["cache-control"] == "no-store"


def test_flask_login_required_redirects_browsers_to_login_url(clock: ManualClock) -> None:
    app = flask_app(
        SessionWarden(store="memory://", clock=clock, login_url="/signin"),
        SESSIONWARDEN_SECRET_KEYS=[SECRET],
    )
    with client_of(app) as c:
        r = c.get("/private")
        assert r.status_code == 303 and r.headers["location"] == "/signin?next=%2Fprivate"
        r = c.get("/private?tab=2&x=%2F%2Fevil")
        assert r.headers["location"] == "/signin?next=%2Fprivate%3Ftab%3D2%26x%3D%252F%252Fevil"
        assert r.headers["x-frame-options"] == "DENY"
        assert c.get("/private", headers=JSON).status_code == 401


def test_flask_recent_auth_required(app: Flask, c: httpx.Client, clock: ManualClock) -> None:
    r = c.get("/sensitive", headers=JSON)
    assert r.status_code == 401 and r.json()["reason"] == "not-authenticated"
    flask_login(c)
    assert c.get("/sensitive").text == "secret"
    clock.advance(301)
    r = c.get("/sensitive", headers=JSON)
    assert r.status_code == 401
    assert r.json() == {
        "error": "reauthentication-required",
        "reason": "authentication-too-old",
        "reauth_required": True,
    }
    assert r.headers["content-security-policy"] and r.headers["cache-control"] == "no-store"
    r = c.get("/sensitive")
    assert r.status_code == 303 and r.headers["location"] == "/reauth-page"
    assert app.config["RAN"] == ["sensitive"]
    before = sid(c)
    assert c.post("/reauth", headers={"x-csrf-token": page_token(c)}).status_code == 200
    assert sid(c) != before  # re-authentication rotates the ID
    assert c.get("/sensitive").text == "secret"
    with pytest.raises(ValueError):
        recent_auth_required(0)


def test_flask_reauthentication_keeps_the_views_session_writes(
    c: httpx.Client, clock: ManualClock
) -> None:
    flask_login(c)
    clock.advance(301)
    r = c.get("/remember-then-sensitive")
    assert r.status_code == 303 and r.headers["location"] == "/reauth-page"
    # like both adapters: the session is committed with the reauthentication answer
    assert c.get("/").json() == {"user": "alice", "note": "/remember-then-sensitive"}


def test_flask_store_unavailable_in_a_view_is_a_503(c: httpx.Client) -> None:
    r = c.get("/store-down")
    assert r.status_code == 503
    assert "temporarily unavailable" in r.text and "10.0.0.5" not in r.text
    assert r.headers["strict-transport-security"].startswith("max-age=")


def test_flask_management_calls(app: Flask, warden: SessionWarden, clock: ManualClock) -> None:
    @app.get("/devices")
    def devices() -> list[dict[str, Any]]:
        infos = warden.list_sessions("alice", current_session())
        return [i.to_dict() for i in infos]

    with client_of(app) as laptop, client_of(app) as phone:
        flask_login(laptop)
        clock.advance(1)
        flask_login(phone)
        listed = laptop.get("/devices").json()
        assert len(listed) == 2 and [d["current"] for d in listed] == [True, False]
        phone_ref = listed[1]["ref"]
        # outside a request: the only app's middleware
        assert {i.ref for i in warden.list_sessions("alice")} == {d["ref"] for d in listed}
        assert warden.middleware() is app.wsgi_app
        assert warden.revoke_session("alice", phone_ref) is True
        assert phone.get("/").json()["user"] is None
        assert laptop.get("/").json()["user"] == "alice"
        flask_login(phone)
        assert len(warden.revoke_user("alice")) == 2
        assert laptop.get("/").json()["user"] is None
        assert warden.list_sessions("alice") == []
        flask_login(laptop)
        with app.test_request_context():
            assert len(warden.list_sessions("alice")) == 1
    other = flask_app(warden, SESSIONWARDEN_SECRET_KEYS=[SECRET])
    assert warden.middleware(other) is other.wsgi_app
    with pytest.raises(RuntimeError, match="several apps"):
        warden.list_sessions("alice")


# == FastAPI ======================================================================================
@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fastapi_app() -> FastAPI:
    api = FastAPI()

    @api.get("/me")
    def me(user: swf.SignedInUser) -> dict[str, str]:
        return {"user": user}

    @api.get("/csrf")
    def csrf(token: swf.CsrfToken, nonce: swf.CspNonce, request: Request) -> dict[str, str]:
        return {"csrf_token": token, "nonce": nonce, "direct": swf.csp_nonce(request)}

    @api.post("/login")
    def login(session: swf.CurrentSession) -> dict[str, bool]:
        session.login("bob")
        return {"ok": True}

    @api.post("/reauth")
    def reauth(session: swf.CurrentSession, user: swf.SignedInUser) -> dict[str, str]:
        session.reauthenticated()
        return {"user": user}

    @api.post("/transfer")
    def transfer(
        session: Annotated[Session, Depends(swf.recent_authentication(300))],
    ) -> dict[str, Any]:
        session["transfers"] = int(session.get("transfers") or 0) + 1  # type: ignore[arg-type]
        return {"transfers": session["transfers"]}

    @api.post("/logout")
    def logout(session: swf.CurrentSession) -> RedirectResponse:
        session.logout()
        session["flash"] = "You have been signed out"
        return RedirectResponse("/flash", status_code=303)

    @api.get("/flash")
    def flash(session: swf.CurrentSession) -> dict[str, Any]:
        return {"flash": session.pop("flash", None), "user": session.user_id}

    @api.get("/devices")
    async def devices(
        user: swf.SignedInUser, session: swf.CurrentSession, warden: swf.Warden
    ) -> list[dict[str, Any]]:
        return [i.to_dict() for i in await warden.list_sessions(user, session)]

    return api


@pytest.fixture(params=["add_middleware", "wrapped"])
async def api(
    request: pytest.FixtureRequest, clock: ManualClock
) -> AsyncIterator[httpx.AsyncClient]:
    options: dict[str, Any] = {
        "policy": Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        "store": InlineAsyncStore(MemoryStore()),
        "clock": clock,
    }
    app: Any
    if request.param == "add_middleware":
        app = fastapi_app()
        app.add_middleware(SessionWardenMiddleware, **options)
    else:
        app = SessionWardenMiddleware(fastapi_app(), **options)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


async def api_token(c: httpx.AsyncClient) -> str:
    return str((await c.get("/csrf")).json()["csrf_token"])


@pytest.mark.anyio
async def test_fastapi_anonymous_gets_401_without_www_authenticate(api: httpx.AsyncClient) -> None:
    r = await api.get("/me")
    assert r.status_code == 401 and r.json() == {"detail": "authentication-required"}
    assert "www-authenticate" not in r.headers
    assert r.headers["x-content-type-options"] == "nosniff"
    r = await api.post("/transfer", headers={"x-csrf-token": await api_token(api)})
    assert r.status_code == 401 and r.json() == {"detail": "reauthentication-required"}


@pytest.mark.anyio
async def test_fastapi_csrf_and_nonce_dependencies(api: httpx.AsyncClient) -> None:
    r = await api.get("/csrf")
    body = r.json()
    assert body["nonce"] == body["direct"]
    assert f"'nonce-{body['nonce']}'" in r.headers["content-security-policy"]
    assert (await api.post("/login")).status_code == 403  # the middleware wants the token
    r = await api.post("/login", headers={"x-csrf-token": body["csrf_token"]})
    assert r.status_code == 200
    assert (await api.get("/me")).json() == {"user": "bob"}


@pytest.mark.anyio
async def test_fastapi_a_message_set_after_logout_reaches_the_next_page(
    api: httpx.AsyncClient,
) -> None:
    """Through the middleware's core, as in every adapter: the message lives in a new
    anonymous session whose cookie the sign-out response sets."""
    r = await api.post("/login", headers={"x-csrf-token": await api_token(api)})
    assert r.status_code == 200
    signed_in = api.cookies.get("__Host-id")
    r = await api.post("/logout", headers={"x-csrf-token": await api_token(api)})
    assert r.status_code == 303
    (fresh,) = r.headers.get_list("set-cookie")
    assert "Max-Age=0" not in fresh
    assert r.headers["clear-site-data"] == '"storage"'
    assert api.cookies.get("__Host-id") not in (None, signed_in)
    assert (await api.get("/flash")).json() == {"flash": "You have been signed out", "user": None}
    assert (await api.get("/flash")).json() == {"flash": None, "user": None}


@pytest.mark.anyio
async def test_fastapi_recent_authentication_flow(
    api: httpx.AsyncClient, clock: ManualClock
) -> None:
    r = await api.post("/login", headers={"x-csrf-token": await api_token(api)})
    assert r.status_code == 200
    token = await api_token(api)
    r = await api.post("/transfer", headers={"x-csrf-token": token})
    assert r.status_code == 200 and r.json() == {"transfers": 1}
    clock.advance(301)
    r = await api.post("/transfer", headers={"x-csrf-token": token})
    assert r.status_code == 401
    assert r.json() == {"detail": "reauthentication-required"}
    assert "www-authenticate" not in r.headers
    assert r.headers["cache-control"] == "no-store"
    assert (await api.get("/me")).json() == {"user": "bob"}  # still signed in
    before = sid(api)
    r = await api.post("/reauth", headers={"x-csrf-token": token})
    assert r.status_code == 200 and r.json() == {"user": "bob"}
    assert sid(api) != before  # re-authentication rotated the ID
    token = await api_token(api)
    r = await api.post("/transfer", headers={"x-csrf-token": token})
    assert r.status_code == 200 and r.json() == {"transfers": 2}
    devices = (await api.get("/devices")).json()
    assert len(devices) == 1 and devices[0]["current"] is True and devices[0]["user"] == "bob"


def test_fastapi_dependencies_without_the_middleware() -> None:
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    for dependency in (swf.current_session, swf.csrf_token, swf.csp_nonce, swf.warden):
        with pytest.raises(RuntimeError, match="not installed"):
            dependency(request)
    with pytest.raises(ValueError):
        swf.recent_authentication(-1)


# == behind a TLS-terminating proxy (docs/*.md) ===================================================
PROXIED = Policy(
    secret_keys=(SECRET,), allowed_hosts=("*",), https=HttpsPolicy(trusted_proxies=("10.0.0.2",))
)
FORWARDED = {"x-forwarded-proto": "https", "x-forwarded-for": "198.51.100.7"}


def test_flask_behind_a_trusted_proxy() -> None:
    app = flask_app(SessionWarden(policy=PROXIED, store="memory://"))
    proxy = httpx.WSGITransport(app=app, remote_addr="10.0.0.2")
    with httpx.Client(transport=proxy, base_url="http://app.test") as c:
        r = c.get("/", headers=FORWARDED)
        assert r.status_code == 200 and "strict-transport-security" in r.headers
        assert c.get("/").status_code == 308  # the proxy said plain HTTP
    stranger = httpx.WSGITransport(app=app, remote_addr="10.0.0.9")
    with httpx.Client(transport=stranger, base_url="http://app.test") as c:
        assert c.get("/", headers=FORWARDED).status_code == 308  # not believed


@pytest.mark.anyio
async def test_fastapi_behind_a_trusted_proxy() -> None:
    app = fastapi_app()
    app.add_middleware(SessionWardenMiddleware, policy=PROXIED, store="memory://")
    for peer, status in (("10.0.0.2", 401), ("10.0.0.9", 308)):
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as c:
            assert (await c.get("/me", headers=FORWARDED)).status_code == status, peer


def test_flask_decorators_on_async_views(clock: ManualClock) -> None:
    pytest.importorskip("asgiref")
    app = Flask(__name__)

    @app.get("/a")
    @login_required
    async def private() -> str:
        return f"async {sw_session.user_id}"

    @app.get("/b")
    @recent_auth_required(60)
    async def sensitive() -> str:
        return "async secret"

    @app.post("/login")
    def login() -> str:
        sw_session.login("alice")
        return "ok"

    @app.get("/page")
    def page() -> str:
        return render_template_string('<input name="csrf_token" value="{{ csrf_token() }}">')

    SessionWarden(
        app,
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store="memory://",
        clock=clock,
    )
    with client_of(app) as c:
        assert c.get("/a", headers=JSON).status_code == 401
        flask_login(c)
        assert c.get("/a").text == "async alice"
        assert c.get("/b").text == "async secret"
        clock.advance(61)
        assert c.get("/b", headers=JSON).status_code == 401


# -- start-up: a synchronous store for the ASGI middleware, the store check ---------------------


def test_asgi_middleware_refuses_a_synchronous_store_at_construction() -> None:
    with pytest.raises(TypeError) as info:
        SessionWardenMiddleware(
            fastapi_app(),
            policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
            store=MemoryStore(),  # type: ignore[arg-type]
        )
    message = str(info.value)
    assert "MemoryStore is synchronous" in message
    assert "InlineAsyncStore(MemoryStore(...))" in message and "memory://" in message


def test_asgi_middleware_takes_the_store_the_message_names() -> None:
    from sessionwarden import InlineAsyncStore as Exported

    app = SessionWardenMiddleware(
        fastapi_app(),
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store=Exported(MemoryStore()),
    )
    assert isinstance(app.store, InlineAsyncStore)


@pytest.mark.anyio
async def test_store_check_names_the_cause(tmp_path: Any) -> None:
    from sessionwarden.stores import open_async_store, open_store

    MemoryStore().check()
    await InlineAsyncStore(MemoryStore()).check()
    sqlite_url = f"sqlite:///{tmp_path}/ok.db"
    open_store(sqlite_url).check()
    await open_async_store(sqlite_url).check()
    refused = open_store("redis://:pw-never-shown@127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable) as info:
        refused.check()
    assert "127.0.0.1:1" in str(info.value) and "refused" in str(info.value).lower()
    assert "pw-never-shown" not in str(info.value)
    refused.close()
    async_refused = open_async_store("redis://127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1"):
        await async_refused.check()
    await async_refused.close()


# -- Flask-Login habits: user_loader, current_user, next, unauthorized_handler ------------------


@dataclass
class User:
    id: str
    name: str


def test_flask_user_loader_and_current_user(clock: ManualClock) -> None:
    warden = SessionWarden(store="memory://", clock=clock)
    loads: list[str] = []

    @warden.user_loader
    def load(user_id: str) -> User | None:
        loads.append(user_id)
        return User(user_id, user_id.title()) if user_id == "alice" else None

    app = flask_app(warden, SESSIONWARDEN_SECRET_KEYS=[SECRET])

    @app.get("/who")
    def who() -> dict[str, Any]:
        first = current_user.name if current_user else None
        again = current_user.name if current_user else None  # loaded once per request
        page = render_template_string("{{ current_user.name if current_user else 'nobody' }}")
        return {"name": first, "again": again, "page": page}

    with client_of(app) as c:
        assert c.get("/who").json() == {"name": None, "again": None, "page": "nobody"}
        assert loads == []  # nobody signed in: the loader is not asked
        flask_login(c, "alice")
        assert c.get("/who").json() == {"name": "Alice", "again": "Alice", "page": "Alice"}
        assert loads == ["alice"]
        flask_login(c, "mallory")  # a user the loader does not know
        assert c.get("/who").json()["name"] is None


def test_flask_current_user_needs_a_loader(app: Flask, c: httpx.Client) -> None:
    @app.get("/who-without-loader")
    def who() -> str:
        try:
            return str(current_user.name)
        except RuntimeError as exc:
            return str(exc)

    flask_login(c)
    assert "@warden.user_loader" in c.get("/who-without-loader").text


def test_flask_unauthorized_handler_answers_anonymous_requests(clock: ManualClock) -> None:
    warden = SessionWarden(store="memory://", clock=clock, login_url="/signin")

    @warden.unauthorized_handler
    def unauthorized() -> tuple[str, int]:
        return "please sign in first", 401

    app = flask_app(warden, SESSIONWARDEN_SECRET_KEYS=[SECRET])
    with client_of(app) as c:
        r = c.get("/private")
        assert r.status_code == 401 and r.text == "please sign in first"
        assert r.headers["content-security-policy"]  # still through the middleware
        assert app.config["RAN"] == []
        flask_login(c)
        assert c.get("/private").text == "hello alice"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/account", "/account"),
        ("/account?tab=2#x", "/account?tab=2#x"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example/x", "/"),
        ("/\tevil", "/"),
        ("http:/evil", "/"),
        ("javascript:alert(1)", "/"),
        ("account", "/"),
        ("", "/"),
        (None, "/"),
        ("/" + "a" * 5000, "/"),
    ],
)
def test_safe_next_keeps_only_paths_on_this_site(value: object, expected: str) -> None:
    from sessionwarden.integrations.nextpath import safe_next

    assert safe_next(value) == expected


def test_login_location_never_names_another_site() -> None:
    from sessionwarden.integrations.nextpath import login_location

    assert login_location("/login", "/a", "b=1") == "/login?next=%2Fa%3Fb%3D1"
    assert login_location("/login?lang=en", "/a") == "/login?lang=en&next=%2Fa"
    assert login_location("/login", "//evil.example/x") == "/login"
    assert login_location("/login", "/\\evil.example") == "/login"


async def _load_async(user_id: str) -> User | None:
    return User(user_id, user_id.upper()) if user_id == "bob" else None


def _load_sync(user_id: str) -> User | None:
    return User(user_id, user_id.title())


AsyncUser = Annotated[User | None, Depends(swf.user_loader(_load_async))]
SyncUser = Annotated[User | None, Depends(swf.user_loader(_load_sync))]
PageUser = Annotated[str, Depends(swf.login_redirect("/signin"))]


@pytest.mark.anyio
async def test_fastapi_user_loader_and_login_redirect(clock: ManualClock) -> None:
    api = fastapi_app()

    @api.get("/profile")
    def profile(a: AsyncUser, s: SyncUser) -> dict[str, Any]:
        return {"async": a.name if a else None, "sync": s.name if s else None}

    @api.get("/page")
    def page(user: PageUser) -> dict[str, str]:
        return {"user": user}

    store = InlineAsyncStore(MemoryStore())
    app = SessionWardenMiddleware(
        api, policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)), store=store, clock=clock
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        assert (await c.get("/profile")).json() == {"async": None, "sync": None}
        r = await c.get("/page?x=1")
        assert r.status_code == 303 and r.headers["location"] == "/signin?next=%2Fpage%3Fx%3D1"
        r = await c.get("/page", headers={"accept": "application/json"})
        assert r.status_code == 401 and r.json() == {"detail": "authentication-required"}
        await c.post("/login", headers={"x-csrf-token": await api_token(c)})  # signs in bob
        assert (await c.get("/profile")).json() == {"async": "BOB", "sync": "Bob"}
        assert (await c.get("/page")).json() == {"user": "bob"}
