"""The ``render_refusal`` hook: the guard's refusal pages rendered by the application, on both
adapters, with the default unchanged and a failing hook never turning a refusal into a 500."""

from __future__ import annotations

import html
from typing import Any

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sessionwarden import tokens
from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.guard import Refusal, RefusalRenderer, RenderedRefusal, RequestContext
from sessionwarden.integrations.flask import SessionWarden, current_session
from sessionwarden.policy import CsrfPolicy, Policy
from sessionwarden.stores import InlineAsyncStore, MemoryStore, StoreUnavailable

from .conftest import SECRET

BASE = "https://app.test"
POLICY = Policy(
    secret_keys=(SECRET,), csrf=CsrfPolicy(max_body_bytes=64), allowed_hosts=("app.test",)
)
CROSS_SITE = {"sec-fetch-site": "cross-site", "content-type": "text/plain", "accept": "text/html"}

seen: list[tuple[int, str, str]] = []


def styled(refusal: Refusal, ctx: RequestContext) -> RenderedRefusal | None:
    """HTML for people, JSON left to the default."""
    seen.append((refusal.status, refusal.error, ctx.nonce))
    if ctx.facts.wants_json:
        return None
    title = html.escape(f"{refusal.status} {refusal.title}")
    return RenderedRefusal(f"<!doctype html><h1>{title}</h1><p>{html.escape(refusal.message)}")


def broken(refusal: Refusal, ctx: RequestContext) -> RenderedRefusal | None:
    raise RuntimeError("template missing")


def wrong_type(refusal: Refusal, ctx: RequestContext) -> Any:
    return "<h1>not a RenderedRefusal</h1>"


def header_split(refusal: Refusal, ctx: RequestContext) -> RenderedRefusal:
    return RenderedRefusal("x", content_type="text/html\r\nset-cookie: a=b")


class DownStore(MemoryStore):
    def get(self, key: str) -> Any:
        raise StoreUnavailable("store down")


def asgi(hook: RefusalRenderer | None, store: MemoryStore) -> Any:
    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/", ok, methods=["GET", "POST"])])
    return SessionWardenMiddleware(
        inner,
        policy=POLICY,
        store=InlineAsyncStore(store),
        clock=ManualClock(),
        render_refusal=hook,
    )


def wsgi(hook: RefusalRenderer | None, store: MemoryStore) -> Any:
    app = Flask(__name__)
    app.add_url_rule("/", "ok", lambda: "ok", methods=["GET", "POST"])
    SessionWarden(app, policy=POLICY, store=store, clock=ManualClock(), render_refusal=hook)
    return app


async def call(
    kind: str,
    hook: RefusalRenderer | None,
    method: str,
    headers: dict[str, str],
    *,
    store: MemoryStore | None = None,
    content: bytes = b"{}",
    base: str = BASE,
) -> httpx.Response:
    the_store = store if store is not None else MemoryStore()
    if kind == "asgi":
        transport: Any = httpx.ASGITransport(app=asgi(hook, the_store))
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            return await client.request(method, "/", headers=headers, content=content)
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi(hook, the_store)), base_url=base) as c:
        return c.request(method, "/", headers=headers, content=content)


pytestmark = pytest.mark.anyio
ADAPTERS = pytest.mark.parametrize("kind", ["asgi", "wsgi"])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@ADAPTERS
async def test_default_is_unchanged_without_a_hook(kind: str) -> None:
    r = await call(kind, None, "POST", CROSS_SITE)
    assert r.status_code == 403
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.text == "403 Forbidden\nCross-site request refused.\n"


@ADAPTERS
async def test_the_hook_renders_403_and_keeps_the_guards_headers(kind: str) -> None:
    seen.clear()
    r = await call(kind, styled, "POST", CROSS_SITE)
    assert r.status_code == 403
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.text == "<!doctype html><h1>403 Forbidden</h1><p>Cross-site request refused."
    assert r.headers["cache-control"] == "no-store"
    assert "content-security-policy" in r.headers
    assert int(r.headers["content-length"]) == len(r.content)
    # The machine detail ("cross-site-fetch") is not in the page.
    assert "cross-site-fetch" not in r.text
    assert seen and seen[-1][:2] == (403, "cross-origin")


@ADAPTERS
async def test_json_clients_keep_the_default_when_the_hook_declines(kind: str) -> None:
    r = await call(kind, styled, "POST", {**CROSS_SITE, "accept": "application/json"})
    assert r.status_code == 403
    assert r.json() == {"error": "cross-origin", "reason": "cross-site-fetch"}


@ADAPTERS
async def test_413_and_503_are_rendered(kind: str) -> None:
    form = {"sec-fetch-site": "same-origin", "content-type": "application/x-www-form-urlencoded"}
    r = await call(kind, styled, "POST", form, content=b"a=" + b"x" * 100)
    assert r.status_code == 413
    assert "<h1>413 Payload Too Large</h1>" in r.text
    cookie = {"cookie": f"__Host-id={tokens.new_session_id()}"}  # the load reads the store
    r = await call(kind, styled, "GET", cookie, store=DownStore())
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert "<h1>503 Service Unavailable</h1>" in r.text


@ADAPTERS
@pytest.mark.parametrize("hook", [broken, wrong_type, header_split])
async def test_a_failing_hook_falls_back_to_the_default(
    kind: str, hook: RefusalRenderer, caplog: pytest.LogCaptureFixture
) -> None:
    r = await call(kind, hook, "POST", CROSS_SITE)
    assert r.status_code == 403
    assert r.text == "403 Forbidden\nCross-site request refused.\n"
    assert "set-cookie: a=b" not in str(r.headers).lower()
    assert any("render_refusal failed" in rec.getMessage() for rec in caplog.records)


@ADAPTERS
async def test_redirects_are_never_handed_to_the_hook(kind: str) -> None:
    seen.clear()
    r = await call(kind, styled, "GET", {"host": "app.test"}, base="http://app.test")
    assert r.status_code == 308
    assert r.headers["location"] == "https://app.test/"
    assert seen == []


@ADAPTERS
async def test_the_reauthentication_401_goes_through_the_hook(kind: str) -> None:
    """A view that needs a recent sign-in: the 401 is the hook's page on both adapters."""
    seen.clear()
    store = MemoryStore()
    if kind == "asgi":

        async def sensitive(request: Request) -> PlainTextResponse:
            get_session(request).require_recent_auth(60)
            return PlainTextResponse("secret")

        inner = Starlette(routes=[Route("/", sensitive)])
        app: Any = SessionWardenMiddleware(
            inner,
            policy=POLICY,
            store=InlineAsyncStore(store),
            clock=ManualClock(),
            render_refusal=styled,
        )
        transport: Any = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            r = await client.get("/")
    else:
        flask_app = Flask(__name__)

        @flask_app.get("/")
        def sensitive_view() -> str:
            current_session().require_recent_auth(60)
            return "secret"

        SessionWarden(
            flask_app, policy=POLICY, store=store, clock=ManualClock(), render_refusal=styled
        )
        with httpx.Client(transport=httpx.WSGITransport(app=flask_app), base_url=BASE) as c:
            r = c.get("/")
    assert r.status_code == 401
    assert "<h1>401 Unauthorized</h1>" in r.text
    assert "Please sign in again to continue." in r.text
    assert seen[-1][:2] == (401, "reauthentication-required")
