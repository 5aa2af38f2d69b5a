"""Shared pieces of the attack scenarios: a small app behind the REAL ASGI middleware, a
"browser" that keeps the session cookie by hand, and an event recorder.

Every scenario drives the middleware through httpx's ASGITransport at ``https://app.test`` (or a
plain-HTTP base where the scenario is about the scheme); cookies are never kept by httpx itself,
so what each request presents is exactly what the test decides.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from sessionwarden.asgi import SessionWardenMiddleware, get_context, get_session
from sessionwarden.clock import Clock, ManualClock
from sessionwarden.events import EventSink
from sessionwarden.policy import Policy

from ..conftest import SECRET, Recorder, postgres_store_url, redis_or_skip, unique_prefix

BASE = "https://app.test"
COOKIE = "__Host-id"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- the application under attack -------------------------------------------------------------


async def whoami(request: Request) -> Response:
    s = get_session(request)
    return JSONResponse({"user": s.user_id, "transfers": s.get("transfers") or []})


async def token(request: Request) -> Response:
    return JSONResponse({"csrf_token": request.state.csrf_token()})


async def login(request: Request) -> Response:
    form = await request.form()
    s = get_session(request)
    s.login(str(form.get("username") or "alice"))
    return RedirectResponse("/account", status_code=303)


async def api_login(request: Request) -> Response:
    get_session(request).login("alice")
    return JSONResponse({"ok": True})


async def logout(request: Request) -> Response:
    get_session(request).logout()
    return RedirectResponse("/login", status_code=303)


async def account(request: Request) -> Response:
    s = get_session(request)
    if s.user_id is None:
        return RedirectResponse("/login", status_code=303)
    return PlainTextResponse(f"account of {s.user_id}")


async def transfer(request: Request) -> Response:
    form = await request.form()
    s = get_session(request)
    if s.user_id is None:
        return PlainTextResponse("sign in", status_code=401)
    history = list(s.get("transfers") or [])  # type: ignore[arg-type]
    history.append({"to": str(form.get("to")), "amount": str(form.get("amount"))})
    s["transfers"] = history
    return PlainTextResponse("transfer done")


async def client_info(request: Request) -> Response:
    facts = get_context(request).facts
    return JSONResponse({"ip": facts.client_ip, "scheme": facts.scheme})


async def count(request: Request) -> Response:
    s = get_session(request)
    s["n"] = int(s.get("n") or 0) + 1  # type: ignore[arg-type]
    return JSONResponse({"n": s["n"]})


def attacked_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/whoami", whoami),
            Route("/token", token),
            Route("/login", login, methods=["POST"]),
            Route("/api/login", api_login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/account", account),
            Route("/transfer", transfer, methods=["POST"]),
            Route("/client", client_info, methods=["GET", "POST"]),
            Route("/count", count),
        ]
    )


# -- a browser with a hand-kept cookie ----------------------------------------------------------


def set_cookie_value(response: httpx.Response) -> str | None:
    """The session cookie value the response sets (``""`` when it clears it), else ``None``."""
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name == COOKIE:
            return rest.split(";", 1)[0]
    return None


@dataclass
class Browser:
    """One user agent: an httpx client over the middleware plus the cookie it holds."""

    client: httpx.AsyncClient
    cookie: str | None = None
    issued: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    responses: list[httpx.Response] = field(default_factory=list)

    async def request(
        self,
        method: str,
        path: str,
        *,
        cookie_header: str | None = None,
        headers: dict[str, Any] | None = None,
        **kw: Any,
    ) -> httpx.Response:
        hdrs: dict[str, Any] = dict(headers or {})
        if cookie_header is not None:
            hdrs["cookie"] = cookie_header
        elif self.cookie:
            hdrs["cookie"] = f"{COOKIE}={self.cookie}"
        self.client.cookies.clear()
        r = await self.client.request(method, path, headers=hdrs, **kw)
        self.client.cookies.clear()
        self.responses.append(r)
        value = set_cookie_value(r)
        if value is not None:
            self.cookie = value or None
            if value:
                self.issued.append(value)
        return r

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, **kw)

    async def token(self) -> str:
        r = await self.get("/token")
        assert r.status_code == 200, r.text
        t = str(r.json()["csrf_token"])
        self.tokens.append(t)
        return t

    async def login(self, user: str = "alice") -> httpx.Response:
        t = await self.token()
        r = await self.post("/login", data={"username": user, "csrf_token": t})
        assert r.status_code == 303, r.text
        return r

    async def user(self) -> str | None:
        r = await self.get("/whoami")
        assert r.status_code == 200, r.text
        return r.json()["user"]  # type: ignore[no-any-return]


@dataclass
class Rig:
    """The middleware, its events and a factory of browsers."""

    app: SessionWardenMiddleware
    events: Recorder
    clock: ManualClock | None
    made: list[httpx.AsyncClient] = field(default_factory=list)

    def browser(
        self,
        *,
        peer: str = "198.51.100.7",
        base_url: str = BASE,
        ua: str = "Mozilla/5.0 Firefox/128.0",
    ) -> Browser:
        transport = httpx.ASGITransport(app=self.app, client=(peer, 50000))
        client = httpx.AsyncClient(
            transport=transport,
            base_url=base_url,
            headers={"user-agent": ua},
            follow_redirects=False,
        )
        self.made.append(client)
        return Browser(client)


RigFactory = Callable[..., Rig]


#: Every store kind; the attack suite's own ``store_url`` takes the persistent ones.
EVERY_STORE = ("memory", "sqlite", "redis", "postgres")


def store_url_of(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a store of ``kind`` against its real backend, and its keys dropped after."""
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path}/sessions.db"
    elif kind == "postgres":
        yield postgres_store_url()
    else:
        prefix = unique_prefix()
        yield f"{redis_or_skip()}?prefix={prefix}"
        drop_keys(prefix)


@pytest.fixture(params=EVERY_STORE[1:])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The persistent stores, each against its real backend."""
    yield from store_url_of(request.param, tmp_path)


@pytest.fixture
async def make_rig(store_url: str) -> AsyncIterator[RigFactory]:
    """Build the attacked app over the parametrized store; everything is closed afterwards."""
    rigs: list[Rig] = []

    def make(
        *,
        policy: Policy | None = None,
        clock: Clock | None = None,
        sink: EventSink | None = None,
        app: Any = None,
    ) -> Rig:
        recorder = Recorder()
        events: EventSink = recorder
        if sink is not None:
            from sessionwarden.events import FanOut

            events = FanOut(recorder, sink)
        mw = SessionWardenMiddleware(
            app if app is not None else attacked_app(),
            policy=policy or Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
            store=store_url,
            clock=clock,
            sink=events,
        )
        rig = Rig(mw, recorder, clock if isinstance(clock, ManualClock) else None)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        for client in rig.made:
            await client.aclose()
        await rig.app.store.close()


def capture_logger(name: str) -> tuple[logging.Logger, Any]:
    """A private logger whose JSON lines are written to a string buffer."""
    import io

    from sessionwarden.monitor import JsonFormatter

    buf = io.StringIO()
    logger = logging.getLogger(name)
    logger.handlers.clear()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, buf


def drop_keys(prefix: str) -> None:
    """Delete this test's keys: SCAN with a large COUNT, so a busy shared server (other suites'
    benchmarks may hold millions of keys) costs few round trips."""
    import redis

    from ..conftest import REDIS_URL

    client = redis.Redis.from_url(REDIS_URL)
    pattern = prefix.replace("{", "\\{").replace("}", "\\}") + "*"
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=20_000):
        batch.append(key)
        if len(batch) >= 1000:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)
    client.close()
