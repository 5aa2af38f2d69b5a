"""Real Chromium against the DBSC decisions and the middleware, over HTTPS on loopback.

Debian's Chromium has DBSC compiled in but off. It registers and refreshes only when (a) the
features ``DeviceBoundSessions`` and ``EnableBoundSessionCredentialsSoftwareKeysForManualTesting``
are on (the second replaces the TPM with a software key), and (b) the TLS certificate verifies:
``--ignore-certificate-errors`` is not enough, so the test trusts its own certificate through
``--ignore-certificate-errors-spki-list``. Without the features nothing changes for the user.

The server is the pure-decision server of ``tests/dbsc`` behind a small HTTPS listener; the
browser must accept our headers, our JSON and our cookie exactly as Chromium ships them.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sessionwarden import dbsc

from ..dbsc import pure_server
from ..dbsc.client import Response
from ..live_servers import self_signed_certificate
from .conftest import CHROMIUM, CHROMIUM_ARGS, _unavailable

pytestmark = pytest.mark.browser
FEATURES = (
    "--enable-features="
    "DeviceBoundSessions,EnableBoundSessionCredentialsSoftwareKeysForManualTesting"
)




class _Site:
    """The pure-decision server on https://localhost:PORT, with a request log."""

    def __init__(self, cert: Path, key: Path, pin: str) -> None:
        self.pin = pin  # the certificate's SPKI hash, for --ignore-certificate-errors-spki-list
        self.app = pure_server.PureServer()  # origin set below, once the port is known
        self.log: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with site.lock:
                    response = site.handle(self.command, self.path, headers)
                body = response.body
                self.send_response(response.status)
                for name, value in response.headers:
                    self.send_header(name, value)
                if not response.header("content-type"):
                    self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.origin = f"https://localhost:{self.httpd.server_address[1]}"
        self.app.origin = self.origin
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def handle(self, method: str, path: str, headers: dict[str, str]) -> Response:
        self.app.clock.set(time.time())
        if path == "/drop":  # the bound cookie "runs out" now instead of in ten minutes
            response = Response(200, [dbsc.clear_bound_cookie_header(self.app.policy)], b"dropped")
        else:
            response = self.app.send(method, path, headers)
        self.log.append((method, path, response.status))
        return response

    def posts(self) -> list[tuple[str, int]]:
        with self.lock:
            return [(p, s) for m, p, s in self.log if m == "POST"]


@pytest.fixture
def site() -> Iterator[_Site]:
    with tempfile.TemporaryDirectory() as tmp:
        served = _Site(*self_signed_certificate(Path(tmp), "localhost"))
        served.thread.start()
        try:
            yield served
        finally:
            served.httpd.shutdown()
            served.httpd.server_close()


@pytest.fixture
def chromium() -> Iterator[Callable[[list[str]], Any]]:
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is missing: pip install playwright")
        raise
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        contexts: list[Any] = []

        def launch(extra: list[str]) -> Any:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra]
            )
            contexts.append(context)
            return context

        try:
            yield launch
        finally:
            for context in contexts:
                context.close()


def _wait(condition: Callable[[], bool], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_chromium_registers_and_refreshes_with_a_software_key(
    site: _Site, chromium: Callable[[list[str]], Any]
) -> None:
    context = chromium([FEATURES, f"--ignore-certificate-errors-spki-list={site.pin}"])
    page = context.new_page()
    page.goto(f"{site.origin}/login")
    register = site.app.policy.register_path
    refresh = site.app.policy.refresh_path
    assert _wait(lambda: (register, 200) in site.posts()), site.log
    assert _wait(lambda: any(c["name"] == "__Host-dbsc" for c in context.cookies()))
    first = {c["name"]: c["value"] for c in context.cookies()}["__Host-dbsc"]
    assert page.evaluate("fetch('/account').then(r => r.text())") == "alice"

    # The bound cookie is gone: Chromium holds the next request back, is challenged (403),
    # signs, receives a new bound cookie, and only then sends the request.
    page.goto(f"{site.origin}/drop")
    assert page.evaluate("fetch('/account').then(r => r.text())") == "alice"
    assert site.posts()[-2:] == [(refresh, 403), (refresh, 200)]
    second = {c["name"]: c["value"] for c in context.cookies()}["__Host-dbsc"]
    assert second != first

    # The challenge pushed with that 200 makes the next refresh a single round trip.
    before = len(site.posts())
    page.goto(f"{site.origin}/drop")
    assert page.evaluate("fetch('/account').then(r => r.text())") == "alice"
    assert site.posts()[before:] == [(refresh, 200)]
    kinds = site.app.kinds()
    assert kinds.count("dbsc.refreshed:") == 2 and kinds[0] == "dbsc.registered:ES256"
    assert not [k for k in kinds if k.startswith("dbsc.proof_failed")]


def test_without_the_features_offering_dbsc_changes_nothing(
    site: _Site, chromium: Callable[[list[str]], Any]
) -> None:
    context = chromium([f"--ignore-certificate-errors-spki-list={site.pin}"])
    page = context.new_page()
    page.goto(f"{site.origin}/login")
    assert page.evaluate("fetch('/account').then(r => r.text())") == "alice"
    page.goto(f"{site.origin}/drop")
    assert page.evaluate("fetch('/account').then(r => r.text())") == "alice"
    assert site.posts() == []  # no registration, no refresh: an ordinary session
    assert sorted(c["name"] for c in context.cookies()) == ["__Host-id"]


# ---------------------------------------------------------------- the real middleware


class _Middleware:
    """The ASGI middleware itself (memory store, system clock) under uvicorn, over HTTPS on
    https://localhost:PORT with the pinned certificate."""

    def __init__(self, cert: Path, key: Path, pin: str) -> None:
        import socket

        import uvicorn
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        from sessionwarden.asgi import SessionWardenMiddleware, get_session
        from sessionwarden.events import CallbackSink, Event
        from sessionwarden.policy import Policy
        from sessionwarden.stores import InlineAsyncStore, MemoryStore

        from ..conftest import SECRET
        from ..dbsc.http_server import _page

        self.pin = pin
        self.policy = Policy(secret_keys=(SECRET,), dbsc=dbsc.DbscPolicy(enabled=True))
        self.events: list[Event] = []
        self.log: list[tuple[str, str]] = []

        async def page(request: Request) -> PlainTextResponse:
            if request.url.path == "/drop":  # the bound cookie "runs out" now
                name, value = dbsc.clear_bound_cookie_header(self.policy.dbsc)
                return PlainTextResponse("dropped", headers={name: value})
            status, text = _page(get_session(request), request.url.path)
            return PlainTextResponse(text, status_code=status)

        paths = ("/login", "/account", "/drop")
        inner = Starlette(routes=[Route(p, page, methods=["GET", "POST"]) for p in paths])
        guarded = SessionWardenMiddleware(
            inner,
            policy=self.policy,
            store=InlineAsyncStore(MemoryStore()),
            sink=CallbackSink(self.events.append),
        )

        async def logged(scope: Any, receive: Any, send: Any) -> None:
            async def status_of(message: Any) -> None:
                if message["type"] == "http.response.start" and scope["type"] == "http":
                    self.log.append((f"{scope['method']} {scope['path']}", message["status"]))
                await send(message)

            await guarded(scope, receive, status_of)

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = uvicorn.Config(
            logged,
            host="127.0.0.1",
            port=port,
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
            log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.origin = f"https://localhost:{port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def posts(self) -> list[tuple[str, int]]:
        return [(line[5:], status) for line, status in list(self.log) if line[:5] == "POST "]

    def kinds(self) -> list[str]:
        events = list(self.events)
        return [f"{e.kind.value}:{e.reason}" for e in events if e.kind.value[:4] == "dbsc"]


@pytest.fixture
def middleware() -> Iterator[_Middleware]:
    with tempfile.TemporaryDirectory() as tmp:
        served = _Middleware(*self_signed_certificate(Path(tmp), "localhost"))
        served.thread.start()
        try:
            assert _wait(lambda: served.server.started), "uvicorn did not start"
            yield served
        finally:
            served.server.should_exit = True
            served.thread.join(10)


def test_chromium_registers_and_refreshes_against_the_middleware(
    middleware: _Middleware, chromium: Callable[[list[str]], Any]
) -> None:
    context = chromium([FEATURES, f"--ignore-certificate-errors-spki-list={middleware.pin}"])
    page = context.new_page()
    page.goto(f"{middleware.origin}/login")
    register = middleware.policy.dbsc.register_path
    refresh = middleware.policy.dbsc.refresh_path
    assert _wait(lambda: (register, 200) in middleware.posts()), middleware.log
    assert _wait(lambda: any(c["name"] == "__Host-dbsc" for c in context.cookies()))
    first = {c["name"]: c["value"] for c in context.cookies()}["__Host-dbsc"]
    assert page.evaluate("fetch('/account').then(r => r.text())") == "alice"

    # Without the bound cookie Chromium holds the request back and refreshes first.
    page.goto(f"{middleware.origin}/drop")
    assert page.evaluate("fetch('/account').then(r => r.text())") == "alice"
    assert middleware.posts()[-2:] == [(refresh, 403), (refresh, 200)]
    second = {c["name"]: c["value"] for c in context.cookies()}["__Host-dbsc"]
    assert second != first

    # The challenge of that 200 makes the next refresh a single round trip.
    before = len(middleware.posts())
    page.goto(f"{middleware.origin}/drop")
    assert page.evaluate("fetch('/account').then(r => r.text())") == "alice"
    assert middleware.posts()[before:] == [(refresh, 200)]
    kinds = middleware.kinds()
    assert kinds[0] == "dbsc.registered:ES256" and kinds.count("dbsc.refreshed:") == 2
    assert not [k for k in kinds if k.startswith(("dbsc.proof_failed", "dbsc.missing"))]


def test_without_the_features_the_middleware_changes_nothing(
    middleware: _Middleware, chromium: Callable[[list[str]], Any]
) -> None:
    context = chromium([f"--ignore-certificate-errors-spki-list={middleware.pin}"])
    page = context.new_page()
    page.goto(f"{middleware.origin}/login")
    assert page.evaluate("fetch('/account').then(r => r.text())") == "alice"
    page.goto(f"{middleware.origin}/drop")
    assert page.evaluate("fetch('/account').then(r => r.text())") == "alice"
    assert middleware.posts() == []  # offered, ignored: an ordinary session
    assert sorted(c["name"] for c in context.cookies()) == ["__Host-id"]
