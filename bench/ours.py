"""sessionwarden's own rows: the ASGI middleware under Starlette, the WSGI one under Flask.

Full stack everywhere: session, CSRF (origin check + masked token), security headers with a CSP
nonce, fingerprint check; a signed-in session (``login`` went through the real flow); the GET
reads one session key, the POST presents a valid token in the header and reads one key, the
"write" GET reads one key and sets another (a cart counter), the sign-in POST signs the session
in again (new ID, rotation, per-user index) and answers with the token for the next one.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from .common import (
    HOST,
    REDIS_URL,
    SECRET,
    USER,
    AsgiClient,
    AsyncRow,
    Row,
    WsgiClient,
    drop_postgres_database,
    drop_prefix,
    expect,
    postgres_database,
    unique_prefix,
)

OK = USER.encode()
#: The Redis stores' timeout here (default 1 s): on a shared machine under heavy load a round trip
#: sometimes takes longer, which would end a row with a 503 instead of measuring it.
BENCH_TIMEOUT = 5.0


def policy(*, fingerprint: bool = True, cap: int = 0) -> Any:
    from sessionwarden.policy import MonitorPolicy, Policy

    return Policy(
        secret_keys=(SECRET,),
        allowed_hosts=(HOST, "127.0.0.1", "localhost"),  # in-process, and over loopback HTTP
        monitor=MonitorPolicy(fingerprint=fingerprint),
        max_sessions_per_user=cap,
    )


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    from sessionwarden.asgi import get_session

    async def home(request: Request) -> Response:
        return PlainTextResponse(str(request.session.get("user")))

    async def token(request: Request) -> Response:
        return PlainTextResponse(request.state.csrf_token())

    async def login(request: Request) -> Response:
        s = get_session(request)
        s.login(USER)
        s["user"] = USER
        s["theme"] = "dark"
        s["lang"] = "en"
        s["cart"] = 3
        return PlainTextResponse("ok")

    async def action(request: Request) -> Response:
        return PlainTextResponse(str(request.session.get("user")))

    async def write(request: Request) -> Response:
        s = request.session
        s["cart"] = int(s.get("cart", 0)) + 1
        return PlainTextResponse(str(s.get("user")))

    async def sign_in_again(request: Request) -> Response:
        s = get_session(request)
        s.login(USER)
        s["user"] = USER
        return PlainTextResponse(request.state.csrf_token())

    return Starlette(
        routes=[
            Route("/", home),
            Route("/token", token),
            Route("/login", login, methods=["POST"]),
            Route("/action", action, methods=["POST"]),
            Route("/write", write),
            Route("/signin", sign_in_again, methods=["POST"]),
        ]
    )


def open_async_store(
    kind: str, tmp: str, *, read_cache: bool = True, offload: bool = False
) -> tuple[Any, str]:
    """The store for ``kind``; returns it and the Redis prefix to drop ('' when none).
    ``offload``: SQLite writes as ``sessionwarden.stores.open_async_store`` runs them."""
    from sessionwarden.stores import InlineAsyncStore, MemoryStore

    if kind == "postgres":
        from sessionwarden.stores.postgres import AsyncPostgresStore

        url = postgres_database("ours")
        return AsyncPostgresStore(url), url
    if kind == "memory":
        return InlineAsyncStore(MemoryStore()), ""
    if kind == "sqlite":
        from sessionwarden.stores.sqlite import SQLiteStore

        sqlite = SQLiteStore(os.path.join(tmp, "bench.db"))
        return InlineAsyncStore(sqlite, offload_writes=offload), ""
    from sessionwarden.stores.redis import AsyncRedisStore

    prefix = unique_prefix("ours")
    store = AsyncRedisStore(
        REDIS_URL, prefix=prefix, read_cache_ttl=2.0 if read_cache else 0, timeout=BENCH_TIMEOUT
    )
    if store.read_cache is not None:
        store.read_cache.feed.wait_connected(5.0)
    return store, prefix


async def sign_in(client: AsgiClient) -> str:
    """Anonymous GET for a token, then the login POST; returns a masked token for later POSTs."""
    status, body, _ = await client.request("GET", "/token")
    expect(status, body, 200, None, "token")
    tok = body.decode()
    status, body, _ = await client.request("POST", "/login", [("x-csrf-token", tok)])
    expect(status, body, 200, b"ok", "login")
    status, body, _ = await client.request("GET", "/token")
    expect(status, body, 200, None, "token after login")
    return body.decode()


#: What a row's request does: (label in the row name).
MODES = {
    "get": "GET",
    "post": "POST valid CSRF",
    "write": "write",
    "sign-in": "sign-in",
    "sign-in-capped": "sign-in, max_sessions_per_user=3, a sink wanting every event",
}


class OursAsgi(AsyncRow):
    base = "bare Starlette GET"

    def __init__(
        self,
        store: str,
        *,
        post: bool = False,
        mode: str = "get",
        fingerprint: bool = True,
        read_cache: bool = True,
        offload_writes: bool = False,
    ) -> None:
        self.kind = store
        self.mode = "post" if post else mode
        self.fingerprint = fingerprint
        self.read_cache = read_cache
        self.offload_writes = offload_writes
        self.redis = store == "redis"
        what = MODES[self.mode]
        extra = "" if fingerprint else ", fingerprint off"
        extra += "" if read_cache else ", read cache off"
        extra += ", open_async_store" if offload_writes else ""
        self.name = f"ours ASGI {store} {what}{extra}"
        self._tmp = tempfile.TemporaryDirectory(prefix="swbench-")
        self.prefix = ""

    async def asetup(self) -> None:
        from sessionwarden.asgi import SessionWardenMiddleware
        from sessionwarden.events import CallbackSink

        store, self.prefix = open_async_store(
            self.kind, self._tmp.name, read_cache=self.read_cache, offload=self.offload_writes
        )
        self.store = store
        capped = self.mode == "sign-in-capped"
        self.app = SessionWardenMiddleware(
            starlette_app(),
            policy=policy(fingerprint=self.fingerprint, cap=3 if capped else 0),
            store=store,
            # A sink that takes every event (``session.evicted`` included) and keeps none.
            sink=CallbackSink(lambda event: None) if capped else None,
        )
        self.client = AsgiClient(self.app)
        token = await sign_in(self.client)
        self.headers = [("x-csrf-token", token), ("origin", "https://app.test")]
        await self.one()

    async def one(self) -> None:
        if self.mode in ("sign-in", "sign-in-capped"):
            status, body, _ = await self.client.request("POST", "/signin", self.headers)
            expect(status, body, 200, None, self.name)
            self.headers[0] = ("x-csrf-token", body.decode())  # the new session's token
            return
        if self.mode == "post":
            status, body, _ = await self.client.request("POST", "/action", self.headers)
        else:
            path = "/write" if self.mode == "write" else "/"
            status, body, _ = await self.client.request("GET", path)
        expect(status, body, 200, OK, self.name)

    async def aclose(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            await close()
        if self.prefix.startswith("postgresql://"):
            drop_postgres_database(self.prefix)
        elif self.prefix:
            drop_prefix(self.prefix)
        self._tmp.cleanup()


class OursAsgiLogin(OursAsgi):
    """A new visitor signs in: the GET that creates the session and hands out a CSRF token,
    then the login POST (rotation to a new ID). Two requests per iteration; the figure is per
    iteration. The policy sets no per-user cap, so sessions pile up for the one user."""

    def __init__(self, store: str) -> None:
        super().__init__(store)
        self.name = f"ours ASGI {store} sign-in (GET token + POST login)"

    async def one(self) -> None:
        self.client.jar.clear()  # a new visitor
        await sign_in_only(self.client)


async def sign_in_only(client: AsgiClient) -> None:
    status, body, _ = await client.request("GET", "/token")
    expect(status, body, 200, None, "token")
    status, body, _ = await client.request("POST", "/login", [("x-csrf-token", body.decode())])
    expect(status, body, 200, b"ok", "login")


def flask_app() -> Any:
    from flask import Flask, request

    from sessionwarden.wsgi import get_session

    app = Flask("ours_flask")

    @app.get("/")
    def home() -> str:
        return str(get_session(request.environ).get("user"))

    @app.get("/token")
    def token() -> str:
        return str(request.environ["sessionwarden"].csrf_token())

    @app.post("/login")
    def login() -> str:
        s = get_session(request.environ)
        s.login(USER)
        s["user"] = USER
        s["theme"] = "dark"
        s["lang"] = "en"
        s["cart"] = 3
        return "ok"

    @app.get("/write")
    def write() -> str:
        s = get_session(request.environ)
        s["cart"] = int(s.get("cart", 0)) + 1
        return str(s.get("user"))

    @app.post("/signin")
    def sign_in_again() -> str:
        s = get_session(request.environ)
        s.login(USER)
        s["user"] = USER
        return str(request.environ["sessionwarden"].csrf_token())

    return app


def open_sync_store(kind: str, *, read_cache: bool = True) -> tuple[Any, str]:
    """The synchronous store for ``kind`` (``memory``, ``redis``); returns it and the Redis
    prefix to drop ('' when none)."""
    if kind == "memory":
        from sessionwarden.stores import MemoryStore

        return MemoryStore(), ""
    from sessionwarden.stores.redis import RedisStore

    prefix = unique_prefix("oursflask")
    store = RedisStore(
        REDIS_URL, prefix=prefix, read_cache_ttl=2.0 if read_cache else 0, timeout=BENCH_TIMEOUT
    )
    if store.read_cache is not None:
        store.read_cache.feed.wait_connected(5.0)
    return store, prefix


class OursFlask(Row):
    """Flask behind the WSGI middleware, on a synchronous store (``redis``, or ``memory``: no
    I/O, the adapter's and the core's CPU alone)."""

    base = "bare Flask GET"

    def __init__(self, store: str = "redis", *, read_cache: bool = True, mode: str = "get") -> None:
        self.kind = store
        self.redis = store == "redis"
        self.read_cache = read_cache
        self.mode = mode
        self.name = f"ours WSGI Flask {store} {MODES[mode]}" + (
            "" if read_cache else ", read cache off"
        )
        self.prefix = ""

    def setup(self) -> None:
        try:
            import flask  # noqa: F401
        except ImportError as exc:
            from .common import NotInstalled

            raise NotInstalled(str(exc)) from None
        from sessionwarden.wsgi import SessionWardenWSGI

        self.store, self.prefix = open_sync_store(self.kind, read_cache=self.read_cache)
        app = flask_app()
        app.wsgi_app = SessionWardenWSGI(  # type: ignore[method-assign]
            app.wsgi_app, policy=policy(), store=self.store
        )
        self.client = WsgiClient(app)
        status, body, _ = self.client.request("GET", "/token")
        expect(status, body, 200, None, "token")
        status, body, _ = self.client.request("POST", "/login", [("x-csrf-token", body.decode())])
        expect(status, body, 200, b"ok", "login")
        status, body, _ = self.client.request("GET", "/token")
        expect(status, body, 200, None, "token after login")
        self.headers = [("x-csrf-token", body.decode()), ("origin", "https://app.test")]
        self.run(1)

    def run(self, n: int) -> None:
        request = self.client.request
        if self.mode == "sign-in":
            for _ in range(n):
                status, body, _ = request("POST", "/signin", self.headers)
                expect(status, body, 200, None, self.name)
                self.headers[0] = ("x-csrf-token", body.decode())
            return
        path = "/write" if self.mode == "write" else "/"
        for _ in range(n):
            status, body, _ = request("GET", path)
            expect(status, body, 200, OK, self.name)

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            close()
        if self.prefix:
            drop_prefix(self.prefix)
