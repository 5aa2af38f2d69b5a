"""The browser client's transport to the real middleware: ASGI (httpx's ASGI transport, no cookie
jar of its own) or WSGI (an environ built per request), over any store, with a manual clock.

The application is deliberately small: ``/login`` signs Alice in, ``/account`` says who the
request is, ``/logout`` ends the session, ``/rotate`` asks for a new ID, ``/login-bob`` signs Bob
in on the browser's session and ``/switch`` signs out and Bob in. Everything DBSC does is the
middleware's.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route

from sessionwarden import dbsc
from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.core import Session
from sessionwarden.events import Event, EventSink, FanOut
from sessionwarden.policy import Policy
from sessionwarden.records import SessionRecord
from sessionwarden.stores import InlineAsyncStore, MemoryStore, SessionStore
from sessionwarden.wsgi import SessionWardenWSGI
from sessionwarden.wsgi import get_session as wsgi_session

from ..conftest import SECRET, drop_prefix, postgres_table, redis_or_skip, unique_prefix
from .client import Response

HOST = "app.test"
ORIGIN = f"https://{HOST}"
T0 = 1_700_000_000.0


def _page(session: Session, path: str) -> tuple[int, str]:
    """The application: the same for both adapters."""
    if path == "/login":
        session.login("alice")
        return 200, "welcome"
    if path == "/logout":
        session.logout()
        return 200, "bye"
    if path == "/login-bob":  # another user on this browser (a shared computer)
        session.login("bob")
        return 200, "welcome bob"
    if path == "/switch":  # switching users in one request
        session.logout()
        session.login("bob")
        return 200, "welcome bob"
    if path == "/rotate":
        session.rotate()
        return 200, "rotated"
    if path == "/count":
        session["n"] = int(session.get("n") or 0) + 1  # type: ignore[arg-type]
        return 200, str(session["n"])
    return 200, session.user_id or "anonymous"


async def _starlette_page(request: Request) -> StarletteResponse:
    status, text = _page(get_session(request), request.url.path)
    return PlainTextResponse(text, status_code=status)


def starlette_app() -> Starlette:
    paths = (
        "/login",
        "/logout",
        "/login-bob",
        "/switch",
        "/rotate",
        "/count",
        "/account",
        "/",
        "/favicon.ico",
    )
    return Starlette(routes=[Route(p, _starlette_page, methods=["GET", "POST"]) for p in paths])


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    status, text = _page(wsgi_session(environ), environ["PATH_INFO"])
    start_response(f"{status} OK", [("Content-Type", "text/plain")])
    return [text.encode()]


@dataclass
class Stores:
    """One backend as the synchronous store (WSGI, and for looking at records) and a maker of
    the asynchronous one (ASGI)."""

    kind: str
    sync: SessionStore
    make_async: Callable[[], Any]
    cleanup: list[Callable[[], None]] = field(default_factory=list)


def open_stores(kind: str, tmp_path: Path) -> Stores:
    if kind == "memory":
        memory = MemoryStore()
        return Stores(kind, memory, lambda: InlineAsyncStore(memory))
    if kind == "sqlite":
        from sessionwarden.stores.sqlite import SQLiteStore

        path = tmp_path / "sessions.db"
        sqlite = SQLiteStore(path)
        return Stores(kind, sqlite, lambda: InlineAsyncStore(SQLiteStore(path)), [sqlite.close])
    if kind == "postgres":
        from sessionwarden.stores.postgres import AsyncPostgresStore, PostgresStore

        url, table = postgres_table()
        pg = PostgresStore(url, table=table)
        return Stores(kind, pg, lambda: AsyncPostgresStore(url, table=table), [pg.close])
    url = redis_or_skip()
    from sessionwarden.stores.redis import AsyncRedisStore, RedisStore

    prefix = unique_prefix()
    redis = RedisStore(url, prefix=prefix)
    return Stores(
        kind,
        redis,
        lambda: AsyncRedisStore(url, prefix=prefix),
        [redis.close, lambda: drop_prefix(prefix)],
    )


def dbsc_policy(**dbsc_options: Any) -> Policy:
    names = ("rotate_every", "idle_timeout")
    policy_options = {k: dbsc_options.pop(k) for k in names if k in dbsc_options}
    return Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("*",),
        dbsc=dbsc.DbscPolicy(enabled=True, **dbsc_options),
        **policy_options,
    )


class Server:
    """The middleware under test, with the transport the browser client calls."""

    def __init__(
        self, adapter: str, stores: Stores, policy: Policy, also: EventSink | None = None
    ) -> None:
        self.adapter = adapter
        self.stores = stores
        self.policy = policy
        self.clock = ManualClock(T0)
        self.events: list[Event] = []
        sink: EventSink = _ListSink(self.events)
        if also is not None:
            sink = FanOut(sink, also)
        self._loop: asyncio.AbstractEventLoop | None = None
        if adapter == "asgi":
            self._loop = asyncio.new_event_loop()
            self.asgi = SessionWardenMiddleware(
                starlette_app(),
                policy=policy,
                store=stores.make_async(),
                clock=self.clock,
                sink=sink,
            )
            self.transport = httpx.ASGITransport(app=self.asgi)
            self.engine = self.asgi.engine
        else:
            self.wsgi = SessionWardenWSGI(
                wsgi_app, policy=policy, store=stores.sync, clock=self.clock, sink=sink
            )
            self.engine = self.wsgi.engine

    def close(self) -> None:
        if self._loop is not None:
            close = getattr(self.asgi.store, "close", None)
            if close is not None and asyncio.iscoroutinefunction(close):
                self._loop.run_until_complete(close())
            self._loop.close()

    # -- the transport -----------------------------------------------------------------------
    def send(self, method: str, path: str, headers: dict[str, str]) -> Response:
        sent = {"host": HOST, **headers}
        if self.adapter == "asgi":
            return self._send_asgi(method, path, sent)
        return self._send_wsgi(method, path, sent)

    def _send_asgi(self, method: str, path: str, headers: dict[str, str]) -> Response:
        assert self._loop is not None

        async def go() -> Response:
            request = httpx.Request(method, ORIGIN + path, headers=headers)
            answer = await self.transport.handle_async_request(request)
            body = await answer.aread()
            pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.headers.raw]
            return Response(answer.status_code, pairs, body)

        return self._loop.run_until_complete(go())

    def _send_wsgi(self, method: str, path: str, headers: dict[str, str]) -> Response:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": HOST,
            "SERVER_PORT": "443",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "https",
            "wsgi.input": io.BytesIO(b""),
            "CONTENT_LENGTH": "0",
        }
        for name, value in headers.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        captured: dict[str, Any] = {}

        def start_response(status: str, hdrs: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, hdrs
            return lambda data: None

        body = b"".join(self.wsgi(environ, start_response))
        return Response(int(captured["status"].split()[0]), list(captured["headers"]), body)

    # -- looking inside ----------------------------------------------------------------------
    def records(self) -> list[SessionRecord]:
        found = self.stores.sync.user_sessions("alice")
        return [r for r in found if isinstance(r, SessionRecord)]

    def kinds(self) -> list[str]:
        return [f"{e.kind.value}:{e.reason}" for e in self.events if e.kind.value[:4] == "dbsc"]

    def run(self, steps: Any) -> Any:
        if self.adapter == "asgi":
            assert self._loop is not None
            return self._loop.run_until_complete(self.asgi.run(steps))
        from sessionwarden.core import run_sync

        return run_sync(steps, self.stores.sync)


@dataclass
class _ListSink:
    events: list[Event]

    def emit(self, event: Event) -> None:
        self.events.append(event)
