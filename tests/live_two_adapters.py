"""The application of ``tests/two_adapters.py`` served for real, in a thread of this process:
Starlette behind the ASGI middleware on uvicorn, or Flask behind the WSGI middleware on
Werkzeug's threaded server, over TLS on a loopback port, with a :class:`ManualClock` the test
moves (timeouts and grace windows are reached without waiting) and a :class:`Recorder` for the
audit events. A test gives the policy, so any configuration can be checked over real sockets;
each client is an ``httpx.Client`` with its own cookie jar.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionwarden.clock import ManualClock
from sessionwarden.policy import Policy

from .conftest import Recorder
from .live_servers import free_port, self_signed_certificate
from .two_adapters import _flask, _starlette

COOKIE = "__Host-id"
START_TIMEOUT = 30.0


@dataclass
class LiveTwo:
    """One adapter serving the two-adapter application."""

    kind: str
    port: int
    clock: ManualClock
    events: Recorder
    tls: ssl.SSLContext
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self, **kw: Any) -> httpx.Client:
        """A browser of its own: a cookie jar, TLS that trusts only the server's certificate,
        redirects not followed."""
        made = httpx.Client(
            base_url=self.base, verify=self.tls, follow_redirects=False, timeout=15, **kw
        )
        self.clients.append(made)
        return made


def _serve_asgi(app: Any, port: int, cert: Path, key: Path) -> Any:
    import uvicorn

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        proxy_headers=False,  # the middleware alone reads X-Forwarded-For, from its proxies
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return stop


def _serve_wsgi(app: Any, port: int, cert: Path, key: Path) -> Any:
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    server = make_server(
        "127.0.0.1",
        port,
        app,
        threaded=True,
        request_handler=Quiet,
        ssl_context=(str(cert), str(key)),
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join(timeout=10)

    return stop


@contextmanager
def live_two(kind: str, policy: Policy, tmp: Path, store: str = "memory://") -> Iterator[LiveTwo]:
    """Serve the application behind the ``kind`` adapter (``"asgi"`` or ``"wsgi"``) with
    ``policy`` and ``store`` until the block ends."""
    from sessionwarden.asgi import SessionWardenMiddleware
    from sessionwarden.integrations.flask import SessionWarden

    clock, events = ManualClock(), Recorder()
    cert, key, _ = self_signed_certificate(tmp)
    port = free_port()
    if kind == "asgi":
        app: Any = SessionWardenMiddleware(
            _starlette(), policy=policy, store=store, clock=clock, sink=events
        )
        stop = _serve_asgi(app, port, cert, key)
    else:
        app = _flask()
        SessionWarden(app, policy=policy, store=store, clock=clock, sink=events)
        stop = _serve_wsgi(app, port, cert, key)
    live = LiveTwo(kind, port, clock, events, ssl.create_default_context(cafile=str(cert)))
    try:
        yield live
    finally:
        for made in live.clients:  # open keep-alive connections would hold the server up
            made.close()
        stop()
