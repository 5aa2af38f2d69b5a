"""The same small application behind each adapter, served for real on 127.0.0.1 (over TLS with a
certificate the test makes, or over plain HTTP), for clients written from the specifications.

``python -m tests.dbsc.live_apps asgi|flask PORT [CERTFILE KEYFILE]``: the Starlette app under
:class:`~sessionwarden.asgi.SessionWardenMiddleware` on uvicorn, or the Flask app with
:class:`~sessionwarden.integrations.flask.SessionWarden` on Werkzeug's server. DBSC is on. The
events go as JSON lines to the file named by ``SWLIVE_EVENTS``; the store is memory.

Routes (both apps): ``/login?user=`` signs in, ``/whoami`` names the user (or ``anonymous``),
``/page`` is HTML with two scripts carrying the response's CSP nonce, ``/api`` is JSON, ``/go``
redirects (302), ``/boom`` raises (500), ``/logout`` signs out; anything else is a 404.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

from sessionwarden import dbsc
from sessionwarden.events import Event
from sessionwarden.policy import Policy

SECRET = b"live-dbsc-test-secret-" + b"x" * 32
PAGE = (
    "<!doctype html><html><head><title>page</title>"
    '<script nonce="{nonce}">window.a = 1;</script></head>'
    '<body><p>hello {user}</p><script nonce="{nonce}" src="/app.js"></script></body></html>'
)


class FileSink:
    """Each event as one JSON line appended to a file (the test reads it back)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    def emit(self, event: Event) -> None:
        line = json.dumps(event.to_dict()) + "\n"
        with self.lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(line)


def policy() -> Policy:
    return Policy(secret_keys=(SECRET,), dbsc=dbsc.DbscPolicy(enabled=True))


def sink() -> FileSink:
    return FileSink(os.environ["SWLIVE_EVENTS"])


def asgi_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import (
        HTMLResponse,
        JSONResponse,
        PlainTextResponse,
        RedirectResponse,
        Response,
    )
    from starlette.routing import Route

    from sessionwarden.asgi import SessionWardenMiddleware, get_session

    async def login(request: Request) -> Response:
        get_session(request).login(request.query_params["user"])
        return PlainTextResponse("ok")

    async def whoami(request: Request) -> Response:
        return PlainTextResponse(get_session(request).user_id or "anonymous")

    async def page(request: Request) -> Response:
        nonce = request.scope["state"]["csp_nonce"]
        user = get_session(request).user_id or "anonymous"
        return HTMLResponse(PAGE.format(nonce=nonce, user=user))

    async def api(request: Request) -> Response:
        return JSONResponse({"user": get_session(request).user_id})

    async def go(request: Request) -> Response:
        return RedirectResponse("/page", status_code=302)

    async def boom(request: Request) -> Response:
        raise RuntimeError("internal detail")

    async def logout(request: Request) -> Response:
        get_session(request).logout()
        return PlainTextResponse("bye")

    views = {"/login": login, "/whoami": whoami, "/page": page, "/api": api, "/go": go}
    views.update({"/boom": boom, "/logout": logout})
    app = Starlette(routes=[Route(path, view) for path, view in views.items()])
    return SessionWardenMiddleware(app, policy=policy(), store="memory://", sink=sink())


def flask_app() -> Any:
    from flask import Flask, jsonify, redirect, request

    from sessionwarden.integrations.flask import SessionWarden, csp_nonce, current_session

    app = Flask(__name__)

    @app.get("/login")
    def login() -> Any:
        current_session().login(request.args["user"])
        return "ok", 200, {"Content-Type": "text/plain; charset=utf-8"}

    @app.get("/whoami")
    def whoami() -> Any:
        user = current_session().user_id or "anonymous"
        return user, 200, {"Content-Type": "text/plain; charset=utf-8"}

    @app.get("/page")
    def page() -> Any:
        return PAGE.format(nonce=csp_nonce(), user=current_session().user_id or "anonymous")

    @app.get("/api")
    def api() -> Any:
        return jsonify({"user": current_session().user_id})

    @app.get("/go")
    def go() -> Any:
        return redirect("/page", code=302)

    @app.get("/boom")
    def boom() -> Any:
        raise RuntimeError("internal detail")

    @app.get("/logout")
    def logout() -> Any:
        current_session().logout()
        return "bye", 200, {"Content-Type": "text/plain; charset=utf-8"}

    SessionWarden(app, policy=policy(), store="memory://", sink=sink())
    return app


def main(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    cert, key = (argv[2], argv[3]) if len(argv) == 4 else (None, None)
    if kind == "asgi":
        import uvicorn

        uvicorn.run(
            asgi_app(),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            # uvicorn believes X-Forwarded-Proto/-For from 127.0.0.1 by default; off, so that
            # what is tested is the middleware's own trust (no proxy is configured there).
            proxy_headers=False,
            ssl_certfile=cert,
            ssl_keyfile=key,
        )
        return
    from werkzeug.serving import run_simple

    context = (cert, key) if cert and key else None
    run_simple("127.0.0.1", port, flask_app(), threaded=True, ssl_context=context)


if __name__ == "__main__":
    main(sys.argv[1:])
