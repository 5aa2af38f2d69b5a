"""Starlette peers: the bare app, Starlette's signed-cookie SessionMiddleware, and starsessions on
Redis with starlette-csrf and ``secure`` headers (the usual hand-assembled stack).

Rows: the GET reads one key; "write" is a GET that reads one key and sets another (a cart
counter); "sign-in" signs the session in again (starsessions: a new session ID, as
``regenerate_session_id`` gives, and the user's keys; the cookie session has no ID to renew)."""

from __future__ import annotations

from typing import Any

from ..common import (
    REDIS_URL,
    USER,
    AsgiClient,
    AsyncRow,
    NotInstalled,
    drop_prefix,
    expect,
    unique_prefix,
)

OK = USER.encode()
SECRET_TEXT = "bench-secret-key-0123456789abcdef-0123456789"


def app() -> Any:
    """GET / reads one session key (when there is a session); /login writes it."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def home(request: Request) -> Response:
        session = request.scope.get("session")
        return PlainTextResponse(str(session.get("user")) if session is not None else "-")

    async def login(request: Request) -> Response:
        s = request.session
        s["user"] = USER
        s["theme"] = "dark"
        s["lang"] = "en"
        s["cart"] = 3
        return PlainTextResponse("ok")

    async def write(request: Request) -> Response:
        s = request.session
        s["cart"] = int(s.get("cart", 0)) + 1
        return PlainTextResponse(str(s.get("user")))

    async def sign_in_again(request: Request) -> Response:
        if "session_handler" in request.scope:  # starsessions: a new session ID
            from starsessions import regenerate_session_id

            regenerate_session_id(request)
        s = request.session
        s["user"] = USER
        return PlainTextResponse(str(s.get("user")))

    return Starlette(
        routes=[
            Route("/", home),
            Route("/action", home, methods=["POST"]),
            Route("/login", login, methods=["GET", "POST"]),
            Route("/write", write),
            Route("/signin", sign_in_again, methods=["POST"]),
        ]
    )


#: The request of each row mode: (method, path, label).
MODES = {
    "get": ("GET", "/", "GET"),
    "post": ("POST", "/action", "POST valid CSRF"),
    "write": ("GET", "/write", "write"),
    "sign-in": ("POST", "/signin", "sign-in"),
}


class BareStarlette(AsyncRow):
    name = "bare Starlette GET"
    base = "bare Starlette GET"

    async def asetup(self) -> None:
        self.client = AsgiClient(app())
        await self.one()

    async def one(self) -> None:
        status, body, _ = await self.client.request("GET", "/")
        expect(status, body, 200, b"-", self.name)


class StarletteSigned(AsyncRow):
    base = "bare Starlette GET"

    def __init__(self, *, mode: str = "get") -> None:
        self.method, self.path, label = MODES[mode]
        self.name = f"Starlette SessionMiddleware {label}"

    async def asetup(self) -> None:
        from starlette.middleware.sessions import SessionMiddleware

        self.client = AsgiClient(SessionMiddleware(app(), secret_key=SECRET_TEXT, https_only=True))
        status, body, _ = await self.client.request("GET", "/login")
        expect(status, body, 200, b"ok", "login")
        await self.one()

    async def one(self) -> None:
        status, body, _ = await self.client.request(self.method, self.path)
        expect(status, body, 200, OK, self.name)


def starsessions_stack(connection: Any) -> Any:
    """starsessions (Redis) + autoload + starlette-csrf + secure, outermost first."""
    try:
        from secure import Secure
        from secure.middleware.asgi import SecureASGIMiddleware
        from starlette_csrf import CSRFMiddleware
        from starsessions import SessionAutoloadMiddleware, SessionMiddleware
        from starsessions.stores.redis import RedisStore
    except ImportError as exc:
        raise NotInstalled(str(exc)) from None
    prefix = unique_prefix("starsessions")
    inner: Any = SessionAutoloadMiddleware(app())
    inner = SessionMiddleware(
        inner,
        store=RedisStore(connection=connection, prefix=prefix),
        lifetime=3600,
        rolling=True,
        cookie_https_only=True,
    )
    inner = CSRFMiddleware(inner, secret=SECRET_TEXT, cookie_secure=True)
    return SecureASGIMiddleware(inner, secure=Secure.with_default_headers()), prefix


class StarsessionsStack(AsyncRow):
    base = "bare Starlette GET"
    redis = True

    def __init__(self, *, post: bool = False, mode: str = "get") -> None:
        self.method, self.path, label = MODES["post" if post else mode]
        self.name = f"starsessions+csrf+secure redis {label}"
        self.prefix = ""

    async def asetup(self) -> None:
        import redis.asyncio as aioredis

        self.connection = aioredis.Redis.from_url(REDIS_URL)
        stack, self.prefix = starsessions_stack(self.connection)
        self.client = AsgiClient(stack)
        status, body, _ = await self.client.request("GET", "/")  # csrftoken cookie
        expect(status, body, 200, None, "first GET")
        token = self.client.jar.values["csrftoken"]
        self.headers = [("x-csrftoken", token), ("origin", "https://app.test")]
        status, body, _ = await self.client.request("POST", "/login", self.headers)
        expect(status, body, 200, b"ok", "login")
        await self.one()

    async def one(self) -> None:
        headers = self.headers if self.method == "POST" else ()
        status, body, _ = await self.client.request(self.method, self.path, headers)
        expect(status, body, 200, OK, self.name)

    async def aclose(self) -> None:
        await self.connection.aclose()
        if self.prefix:
            drop_prefix(self.prefix)


class StarletteRedisFloor(AsyncRow):
    """Bare Starlette answering each request after one Redis round trip (``INCR`` of one key),
    sent and read on a plain asyncio stream with the command framed once: no session, no
    cookie, no client library. No stack that stores a session in Redis can answer a request
    that changes it in less than this, so its ratio to a peer's row is the floor of every
    Redis write goal on this machine."""

    name = "floor: bare Starlette + one Redis round trip (raw INCR)"
    base = "bare Starlette GET"
    redis = True

    async def asetup(self) -> None:
        import asyncio
        from urllib.parse import urlsplit

        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse, Response
        from starlette.routing import Route

        url = urlsplit(REDIS_URL)
        self.prefix = unique_prefix("floor")
        key = f"{self.prefix}n".encode()
        command = b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(key), key)
        reader, writer = await asyncio.open_connection(url.hostname, url.port or 6379)
        self.writer = writer

        async def write(request: Request) -> Response:
            writer.write(command)
            reply = await reader.readuntil(b"\r\n")
            return PlainTextResponse(USER if reply.startswith(b":") else "-")

        self.client = AsgiClient(Starlette(routes=[Route("/write", write)]))
        await self.one()

    async def one(self) -> None:
        status, body, _ = await self.client.request("GET", "/write")
        expect(status, body, 200, OK, self.name)

    async def aclose(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()
        drop_prefix(self.prefix)
