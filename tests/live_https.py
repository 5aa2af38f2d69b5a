"""Live servers for the HTTPS, proxy, host and caching requirements: one process per adapter
(uvicorn for the ASGI middleware, Werkzeug's server for Flask over WSGI) listening on several
loopback ports at once, plain HTTP and TLS, each port with its own policy ("variant") and all on
one SQLite store, so a session made over HTTPS can be presented over plain HTTP, and a test can
count the sessions stored.

    python -m tests.live_https --adapter asgi --store sqlite:///s.db --cert c.pem --key k.pem \
        default:http:8001 default:https:8002 no-redirect:http:8003 ...

Variants (every one answers to ``app.test`` only, in production mode unless it turns the
redirect off):

* ``default``: the defaults, with ``/api`` refused over plain HTTP (``https.refuse_paths``);
* ``no-redirect``: the same with ``https.redirect`` off;
* ``no-redirect-tokenless``: ``https.redirect`` off and no CSRF token required (so that a
  sign-in over plain HTTP reaches the application);
* ``proxy``: ``127.0.0.1`` is a trusted proxy (``X-Forwarded-For``/``-Proto``/``-Host``); a test
  connecting from ``127.0.0.2`` is an untrusted peer;
* ``forwarded``: the same with RFC 7239 ``Forwarded``;
* ``logout-cache``: ``Clear-Site-Data`` with ``"cache"`` too.

Routes, the same in both apps: ``GET /token`` (a masked CSRF token), ``POST /login`` (signs in
``alice``), ``POST /logout``, ``GET /whoami``, ``GET /account`` (the signed-in page: HTML with
the user's name, else 303 to ``/signin``), ``GET /api/x`` and ``POST /api/x``, ``POST
/transfer`` (so ``GET`` is the framework's 405), ``GET /boom`` (raises), ``GET /go`` (302 to
``/account``), ``GET /stream`` (a streamed body), ``GET /static/app.css`` (the framework's static
files), ``GET /cached`` (the app asks shared caches and CDNs to keep it: :data:`CACHEABLE`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .live_servers import self_signed_certificate, server_env, stop_process, wait_answering

ROOT = Path(__file__).resolve().parents[1]
SECRET = "live-https-secret-" + "s" * 32
HOST = "app.test"
STATIC_CSS = b"body { color: #222 }\n"
ACCOUNT_MARK = "Account of"
#: What ``GET /cached`` asks caches for: shared ones included, and CDNs through their own fields.
CACHEABLE = {
    "cache-control": "public, max-age=3600, s-maxage=600",
    "cdn-cache-control": "public, max-age=600",
    "surrogate-control": "max-age=600",
}


# -- the policies -------------------------------------------------------------------------------


def policy_of(variant: str) -> Any:
    from sessionwarden.policy import CsrfPolicy, HeadersPolicy, HttpsPolicy, Policy

    https = HttpsPolicy(refuse_paths=("/api",))
    headers = HeadersPolicy()
    csrf = CsrfPolicy()
    if variant == "no-redirect":
        https = HttpsPolicy(redirect=False, refuse_paths=("/api",))
    elif variant == "proxy":
        https = HttpsPolicy(
            trusted_proxies=("127.0.0.1",), forwarded_host=True, refuse_paths=("/api",)
        )
    elif variant == "forwarded":
        https = HttpsPolicy(
            trusted_proxies=("127.0.0.1",),
            forwarded_header="forwarded",
            forwarded_host=True,
            refuse_paths=("/api",),
        )
    elif variant == "no-redirect-tokenless":
        https = HttpsPolicy(redirect=False)
        csrf = CsrfPolicy(require_token=False)
    elif variant == "logout-cache":
        headers = HeadersPolicy(clear_site_data_cache=True)
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r}")
    return Policy(
        secret_keys=(SECRET.encode(),),
        allowed_hosts=(HOST,),
        https=https,
        headers=headers,
        csrf=csrf,
        # What production refuses (plain HTTP served, see INSECURE_SETTINGS) is not here.
        production=https.redirect,
    )


def insecure_policy() -> Any:
    """Production mode with settings it refuses: the cookie travels over plain HTTP and is
    readable by scripts, no CSRF check, any Host."""
    from sessionwarden.policy import CookiePolicy, CsrfPolicy, Policy

    return Policy(
        secret_keys=(SECRET.encode(),),
        production=True,
        cookie=CookiePolicy(name="sid", secure=False, http_only=False),
        csrf=CsrfPolicy(enabled=False),
        allowed_hosts=("*",),
    )


def insecure_asgi() -> Any:
    """``uvicorn --factory tests.live_https:insecure_asgi``: must not start."""
    from starlette.applications import Starlette

    from sessionwarden.asgi import SessionWardenMiddleware

    return SessionWardenMiddleware(Starlette(), policy=insecure_policy(), store="memory://")


def insecure_flask() -> Any:
    """``flask --app tests.live_https:insecure_flask run``: must not start."""
    from flask import Flask

    from sessionwarden.integrations.flask import SessionWarden

    app = Flask(__name__)
    SessionWarden(app, policy=insecure_policy(), store="memory://")
    return app


# -- the apps ---------------------------------------------------------------------------------


def _account_html(user: str) -> str:
    return f"<!doctype html><title>account</title><h1>{ACCOUNT_MARK} {user}</h1>"


def starlette_app(variant: str, store: str, static_dir: str) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import (
        HTMLResponse,
        JSONResponse,
        PlainTextResponse,
        RedirectResponse,
        Response,
        StreamingResponse,
    )
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from sessionwarden.asgi import SessionWardenMiddleware, get_session

    async def token(request: Request) -> Response:
        return JSONResponse({"csrf_token": request.state.csrf_token()})

    async def login(request: Request) -> Response:
        get_session(request).login("alice")
        return JSONResponse({"ok": True})

    async def logout(request: Request) -> Response:
        get_session(request).logout()
        return JSONResponse({"ok": True})

    async def whoami(request: Request) -> Response:
        return JSONResponse({"user": get_session(request).user_id})

    async def account(request: Request) -> Response:
        user = get_session(request).user_id
        if user is None:
            return RedirectResponse("/signin", status_code=303)
        return HTMLResponse(_account_html(user))

    async def api(request: Request) -> Response:
        await request.body()
        return JSONResponse({"user": get_session(request).user_id})

    async def transfer(request: Request) -> Response:
        return PlainTextResponse("done")

    async def boom(request: Request) -> Response:
        raise RuntimeError("internal detail: ledger connection refused")

    async def go(request: Request) -> Response:
        return RedirectResponse("/account", status_code=302)

    async def stream(request: Request) -> Response:
        async def parts() -> Any:
            for n in range(3):
                yield f"part {n}\n".encode()

        return StreamingResponse(parts(), media_type="text/plain")

    async def cached(request: Request) -> Response:
        response = PlainTextResponse("cacheable")
        response.headers.update(CACHEABLE)
        return response

    routes = [
        Route("/token", token),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/whoami", whoami),
        Route("/account", account),
        Route("/api/x", api, methods=["GET", "POST"]),
        Route("/transfer", transfer, methods=["POST"]),
        Route("/boom", boom),
        Route("/go", go),
        Route("/stream", stream),
        Route("/cached", cached),
        Mount("/static", StaticFiles(directory=static_dir)),
    ]
    return SessionWardenMiddleware(Starlette(routes=routes), policy=policy_of(variant), store=store)


def flask_app(variant: str, store: str, static_dir: str) -> Any:
    from flask import Flask, Response, jsonify, redirect

    from sessionwarden.integrations.flask import SessionWarden, current_context, current_session

    app = Flask(__name__, static_folder=static_dir, static_url_path="/static")

    def token() -> Any:
        return jsonify(csrf_token=current_context().csrf_token())

    def login() -> Any:
        current_session().login("alice")
        return jsonify(ok=True)

    def logout() -> Any:
        current_session().logout()
        return jsonify(ok=True)

    def whoami() -> Any:
        return jsonify(user=current_session().user_id)

    def account() -> Any:
        user = current_session().user_id
        if user is None:
            return redirect("/signin", code=303)
        return _account_html(user)

    def api() -> Any:
        return jsonify(user=current_session().user_id)

    def transfer() -> Any:
        return "done"

    def boom() -> Any:
        raise RuntimeError("internal detail: ledger connection refused")

    def go() -> Any:
        return redirect("/account", code=302)

    def stream() -> Any:
        def parts() -> Iterator[bytes]:
            for n in range(3):
                yield f"part {n}\n".encode()

        return Response(parts(), mimetype="text/plain")

    def cached() -> Any:
        response = Response("cacheable", mimetype="text/plain")
        response.headers.update(CACHEABLE)
        return response

    app.add_url_rule("/token", "token", token)
    app.add_url_rule("/login", "login", login, methods=["POST"])
    app.add_url_rule("/logout", "logout", logout, methods=["POST"])
    app.add_url_rule("/whoami", "whoami", whoami)
    app.add_url_rule("/account", "account", account)
    app.add_url_rule("/api/x", "api", api, methods=["GET", "POST"])
    app.add_url_rule("/transfer", "transfer", transfer, methods=["POST"])
    app.add_url_rule("/boom", "boom", boom)
    app.add_url_rule("/go", "go", go)
    app.add_url_rule("/stream", "stream", stream)
    app.add_url_rule("/cached", "cached", cached)
    SessionWarden(app, policy=policy_of(variant), store=store)
    return app


# -- serving (the child process) ------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    variant: str
    scheme: str  # "http" or "https"
    port: int

    @classmethod
    def parse(cls, text: str) -> Listener:
        variant, scheme, port = text.split(":")
        return cls(variant, scheme, int(port))


def _serve_asgi(args: argparse.Namespace, listeners: list[Listener]) -> None:
    import uvicorn

    class Quiet(uvicorn.Server):
        # Several servers share the process: the process, not each server, handles signals.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    apps = {v: starlette_app(v, args.store, args.static) for v in {x.variant for x in listeners}}
    servers = []
    for x in listeners:
        tls = {"ssl_keyfile": args.key, "ssl_certfile": args.cert} if x.scheme == "https" else {}
        config = uvicorn.Config(
            apps[x.variant],
            host="127.0.0.1",
            port=x.port,
            log_level="warning",
            proxy_headers=False,  # the middleware alone decides what a proxy header means
            lifespan="off",
            **tls,  # type: ignore[arg-type]
        )
        servers.append(Quiet(config))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: [setattr(s, "should_exit", True) for s in servers])
        await asyncio.gather(*(s.serve() for s in servers))

    asyncio.run(main())


def _serve_wsgi(args: argparse.Namespace, listeners: list[Listener]) -> None:
    from werkzeug.serving import make_server

    apps = {v: flask_app(v, args.store, args.static) for v in {x.variant for x in listeners}}
    servers = []
    for x in listeners:
        tls = (args.cert, args.key) if x.scheme == "https" else None
        servers.append(
            make_server("127.0.0.1", x.port, apps[x.variant], threaded=True, ssl_context=tls)
        )
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    for s in servers:
        s.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--adapter", choices=("asgi", "wsgi"), required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--static", required=True)
    parser.add_argument("listeners", nargs="+")
    args = parser.parse_args(argv)
    listeners = [Listener.parse(x) for x in args.listeners]
    (_serve_asgi if args.adapter == "asgi" else _serve_wsgi)(args, listeners)


# -- the test side -------------------------------------------------------------------------------




def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveApp:
    """One adapter's process: its listeners' base URLs by ``(variant, scheme)``."""

    adapter: str
    urls: dict[tuple[str, str], str]
    cert: Path
    store_path: Path
    log: Path

    def url(self, variant: str, scheme: str) -> str:
        return self.urls[(variant, scheme)]

    def client(self, variant: str = "default", scheme: str = "https", **kw: Any) -> httpx.Client:
        """A client with its own cookie jar that sends ``Host: app.test`` to one listener
        (over TLS it checks the listener's certificate). Redirects are not followed."""
        headers = {"host": HOST, **kw.pop("headers", {})}
        return httpx.Client(
            base_url=self.url(variant, scheme),
            headers=headers,
            verify=self.tls(),
            follow_redirects=False,
            timeout=10,
            **kw,
        )

    def tls(self) -> ssl.SSLContext:
        """A TLS context that trusts the listeners' certificate."""
        return ssl.create_default_context(cafile=str(self.cert))

    def live_sessions(self) -> int:
        """How many live sessions the store holds (read from the store file itself)."""
        from sessionwarden.stores.sqlite import SQLiteStore

        store = SQLiteStore(str(self.store_path))
        try:
            return store.stats(time.time()).live_sessions
        finally:
            store.close()


@contextlib.contextmanager
def live_app(adapter: str, workdir: Path, listeners: list[tuple[str, str]]) -> Iterator[LiveApp]:
    """Start one adapter's process with ``listeners`` (``(variant, scheme)``), wait until every
    listener answers, stop it (by its PID) at the end."""
    cert, key, _ = self_signed_certificate(workdir, HOST)
    static = workdir / "static"
    static.mkdir(exist_ok=True)
    (static / "app.css").write_bytes(STATIC_CSS)
    store_path = workdir / f"{adapter}.db"
    ports = {x: free_port() for x in listeners}
    env = server_env()
    cmd = [
        sys.executable,
        "-m",
        "tests.live_https",
        "--adapter",
        adapter,
        "--store",
        f"sqlite:///{store_path}",
        "--cert",
        str(cert),
        "--key",
        str(key),
        "--static",
        str(static),
        *(f"{v}:{s}:{p}" for (v, s), p in ports.items()),
    ]
    log = workdir / f"{adapter}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out)
    urls = {x: f"{x[1]}://127.0.0.1:{p}" for x, p in ports.items()}
    app = LiveApp(adapter, urls, cert, store_path, log)
    try:
        probes = [url + "/static/app.css" for url in app.urls.values()]
        wait_answering(proc, probes, f"{app.adapter} server", app.log, app.tls())
        yield app
    finally:
        stop_process(proc)


if __name__ == "__main__":
    main()
