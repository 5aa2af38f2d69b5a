"""Live servers for the scenarios other session libraries' users report as broken (lost writes,
flash messages, tabs, uploads, callbacks from identity providers): one process per adapter
(uvicorn for the ASGI middleware, Werkzeug's threaded server for Flask over WSGI), on one
loopback port, over TLS (``Host: app.test``) or plain HTTP (loopback hosts, for a browser).

    python -m tests.peers_live --adapter asgi --store sqlite:///s.db --port 8001 \
        [--cert c.pem --key k.pem] [--events events.jsonl]

Routes, the same in both apps (every ``POST`` needs the CSRF token, as any form does):

* ``GET /token`` (a masked token), ``GET /whoami`` (the user and the session's data);
* ``POST /login?user=`` (default ``alice``), ``POST /logout[?then=][&flash=]`` (``then``:
  a user signed in after signing out, in the same request; a message set after signing out:
  303 to ``/show``), ``POST /rotate``;
* ``POST /set?key=&value=`` (one session key), ``POST /big?size=`` (a value of that many
  characters: 413 with the library's message when the policy refuses it);
* ``POST /flash?msg=`` (sets a flash message, 303 to ``/show``), ``GET /show`` (shows and
  removes it);
* ``POST /slow?gate=&key=`` (loads the session, waits until ``POST /open?gate=`` is called,
  then sets ``key``) and ``GET /entered?gate=`` (waits until that slow request is inside);
* ``POST /upload`` (the body's length);
* ``GET /sso/start`` (a sign-in through an identity provider: a random ``state`` kept in the
  session), ``POST /sso/acs`` (the provider's form post, exempt from the CSRF check: keeps the
  assertion under a one-time key, 303 to ``/sso/finish``), ``GET /sso/finish?k=`` (the
  first-party request, which carries the session cookie: checks the state, signs in),
  ``POST /sso/acs-checked`` (the same callback left under the CSRF check).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .live_https import free_port
from .live_servers import self_signed_certificate, server_env, stop_process, wait_answering

ROOT = Path(__file__).resolve().parents[1]
SECRET = "peers-live-secret-" + "p" * 32
HOST = "app.test"
GATE_TIMEOUT = 20.0
#: The provider's callback: exempt from the CSRF check (the assertion is its own proof).
ACS = "/sso/acs"


def policy(tls: bool) -> Any:
    from sessionwarden.policy import CsrfPolicy, Policy

    return Policy(
        secret_keys=(SECRET.encode(),),
        # Over TLS the tests send Host: app.test; a browser over plain HTTP uses 127.0.0.1
        # (loopback hosts are served when none is named).
        allowed_hosts=(HOST,) if tls else (),
        csrf=CsrfPolicy(exempt_paths=(ACS,)),
        max_value_bytes=8192,
    )


def event_sink(path: str | None) -> Any:
    """The audit events as JSON lines appended to ``path`` (``None``: none kept), for the test
    side to read (:meth:`PeerApp.events`)."""
    if path is None:
        return None
    import json

    from sessionwarden.events import CallbackSink, Event

    lock = threading.Lock()

    def write(event: Event) -> None:
        line = json.dumps(event.to_dict()) + "\n"
        with lock, open(path, "a", encoding="utf-8") as out:
            out.write(line)

    return CallbackSink(write)


def _acs_result(form: dict[str, str], pending: dict[str, dict[str, str]]) -> str:
    key = secrets.token_urlsafe(16)
    pending[key] = {"assertion": form.get("SAMLResponse", ""), "state": form.get("RelayState", "")}
    return f"/sso/finish?k={key}"


def _finish(session: Any, entry: dict[str, str] | None) -> tuple[int, str]:
    """Sign in when the assertion's state is this browser's; (status, text)."""
    expected = session.pop("sso_state", None)
    if entry is None or not expected or not secrets.compare_digest(entry["state"], expected):
        return 400, "state mismatch"
    session.login(entry["assertion"])
    return 200, f"signed in as {entry['assertion']}"


def starlette_app(store: str, tls: bool, events: str | None = None) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Route

    from sessionwarden.asgi import SessionWardenMiddleware, get_session
    from sessionwarden.core.session import SessionValueError

    gates: dict[str, tuple[asyncio.Event, asyncio.Event]] = {}
    pending: dict[str, dict[str, str]] = {}

    def gate(name: str) -> tuple[asyncio.Event, asyncio.Event]:
        return gates.setdefault(name, (asyncio.Event(), asyncio.Event()))

    async def token(request: Request) -> Response:
        return JSONResponse({"csrf_token": request.state.csrf_token()})

    async def whoami(request: Request) -> Response:
        s = get_session(request)
        return JSONResponse({"user": s.user_id, "data": dict(s.items())})

    async def login(request: Request) -> Response:
        get_session(request).login(request.query_params.get("user", "alice"))
        return JSONResponse({"ok": True})

    async def logout(request: Request) -> Response:
        session = get_session(request)
        session.logout()
        if "then" in request.query_params:  # switching users
            session.login(request.query_params["then"])
        if "flash" in request.query_params:
            session["flash"] = request.query_params["flash"]
            return RedirectResponse("/show", status_code=303)
        return JSONResponse({"ok": True})

    async def rotate(request: Request) -> Response:
        get_session(request).rotate()
        return JSONResponse({"ok": True})

    async def set_value(request: Request) -> Response:
        get_session(request)[request.query_params["key"]] = request.query_params["value"]
        return JSONResponse({"ok": True})

    async def big(request: Request) -> Response:
        try:
            get_session(request)["big"] = "x" * int(request.query_params["size"])
        except SessionValueError as exc:
            return JSONResponse({"error": str(exc)}, 413)
        return JSONResponse({"ok": True})

    async def flash(request: Request) -> Response:
        get_session(request)["flash"] = request.query_params["msg"]
        return RedirectResponse("/show", 303)

    async def show(request: Request) -> Response:
        return JSONResponse({"flash": get_session(request).pop("flash", None)})

    async def slow(request: Request) -> Response:
        session = get_session(request)
        seen = dict(session.items())  # the session as this request found it
        entered, opened = gate(request.query_params["gate"])
        entered.set()
        await asyncio.wait_for(opened.wait(), GATE_TIMEOUT)
        session[request.query_params["key"]] = "slow"
        return JSONResponse({"seen": seen})

    async def open_gate(request: Request) -> Response:
        gate(request.query_params["gate"])[1].set()
        return JSONResponse({"ok": True})

    async def entered(request: Request) -> Response:
        await asyncio.wait_for(gate(request.query_params["gate"])[0].wait(), GATE_TIMEOUT)
        return JSONResponse({"ok": True})

    async def upload(request: Request) -> Response:
        return JSONResponse({"bytes": len(await request.body())})

    async def sso_start(request: Request) -> Response:
        state = get_session(request)["sso_state"] = secrets.token_urlsafe(16)
        return PlainTextResponse(state)

    async def sso_acs(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        return RedirectResponse(_acs_result(form, pending), 303)

    async def sso_finish(request: Request) -> Response:
        entry = pending.pop(request.query_params.get("k", ""), None)
        status, text = _finish(get_session(request), entry)
        return PlainTextResponse(text, status)

    routes = [
        Route("/token", token),
        Route("/whoami", whoami),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/rotate", rotate, methods=["POST"]),
        Route("/set", set_value, methods=["POST"]),
        Route("/big", big, methods=["POST"]),
        Route("/flash", flash, methods=["POST"]),
        Route("/show", show),
        Route("/slow", slow, methods=["POST"]),
        Route("/open", open_gate, methods=["POST"]),
        Route("/entered", entered),
        Route("/upload", upload, methods=["POST"]),
        Route("/sso/start", sso_start),
        Route(ACS, sso_acs, methods=["POST"]),
        Route("/sso/acs-checked", sso_acs, methods=["POST"]),
        Route("/sso/finish", sso_finish),
    ]
    return SessionWardenMiddleware(
        Starlette(routes=routes), policy=policy(tls), store=store, sink=event_sink(events)
    )


def flask_app(store: str, tls: bool, events: str | None = None) -> Any:
    from flask import Flask, jsonify, redirect, request

    from sessionwarden.core.session import SessionValueError
    from sessionwarden.integrations.flask import SessionWarden, current_context, current_session

    app = Flask(__name__)
    lock = threading.Lock()
    gates: dict[str, tuple[threading.Event, threading.Event]] = {}
    pending: dict[str, dict[str, str]] = {}

    def gate(name: str) -> tuple[threading.Event, threading.Event]:
        with lock:
            return gates.setdefault(name, (threading.Event(), threading.Event()))

    def token() -> Any:
        return jsonify(csrf_token=current_context().csrf_token())

    def whoami() -> Any:
        s = current_session()
        return jsonify(user=s.user_id, data=dict(s.items()))

    def login() -> Any:
        current_session().login(request.args.get("user", "alice"))
        return jsonify(ok=True)

    def logout() -> Any:
        session = current_session()
        session.logout()
        if "then" in request.args:  # switching users
            session.login(request.args["then"])
        if "flash" in request.args:
            session["flash"] = request.args["flash"]
            return redirect("/show", 303)
        return jsonify(ok=True)

    def rotate() -> Any:
        current_session().rotate()
        return jsonify(ok=True)

    def set_value() -> Any:
        current_session()[request.args["key"]] = request.args["value"]
        return jsonify(ok=True)

    def big() -> Any:
        try:
            current_session()["big"] = "x" * int(request.args["size"])
        except SessionValueError as exc:
            return jsonify(error=str(exc)), 413
        return jsonify(ok=True)

    def flash() -> Any:
        current_session()["flash"] = request.args["msg"]
        return redirect("/show", 303)

    def show() -> Any:
        return jsonify(flash=current_session().pop("flash", None))

    def slow() -> Any:
        session = current_session()
        seen = dict(session.items())
        entered, opened = gate(request.args["gate"])
        entered.set()
        if not opened.wait(GATE_TIMEOUT):
            raise TimeoutError("gate never opened")
        session[request.args["key"]] = "slow"
        return jsonify(seen=seen)

    def open_gate() -> Any:
        gate(request.args["gate"])[1].set()
        return jsonify(ok=True)

    def entered() -> Any:
        if not gate(request.args["gate"])[0].wait(GATE_TIMEOUT):
            raise TimeoutError("nothing entered")
        return jsonify(ok=True)

    def upload() -> Any:
        return jsonify(bytes=len(request.get_data()))

    def sso_start() -> Any:
        state = current_session()["sso_state"] = secrets.token_urlsafe(16)
        return str(state)

    def sso_acs() -> Any:
        return redirect(_acs_result(dict(request.form.items()), pending), 303)

    def sso_finish() -> Any:
        entry = pending.pop(request.args.get("k", ""), None)
        status, text = _finish(current_session(), entry)
        return text, status

    for path, view, methods in (
        ("/token", token, ["GET"]),
        ("/whoami", whoami, ["GET"]),
        ("/login", login, ["POST"]),
        ("/logout", logout, ["POST"]),
        ("/rotate", rotate, ["POST"]),
        ("/set", set_value, ["POST"]),
        ("/big", big, ["POST"]),
        ("/flash", flash, ["POST"]),
        ("/show", show, ["GET"]),
        ("/slow", slow, ["POST"]),
        ("/open", open_gate, ["POST"]),
        ("/entered", entered, ["GET"]),
        ("/upload", upload, ["POST"]),
        ("/sso/start", sso_start, ["GET"]),
        (ACS, sso_acs, ["POST"]),
        ("/sso/acs-checked", sso_acs, ["POST"]),
        ("/sso/finish", sso_finish, ["GET"]),
    ):
        app.add_url_rule(path, path, view, methods=methods)
    SessionWarden(app, policy=policy(tls), store=store, sink=event_sink(events))
    return app


# -- serving (the child process) ------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--adapter", choices=("asgi", "wsgi"), required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--events")
    args = parser.parse_args(argv)
    tls = args.cert is not None
    if args.adapter == "asgi":
        import uvicorn

        extra = {"ssl_keyfile": args.key, "ssl_certfile": args.cert} if tls else {}
        uvicorn.run(
            starlette_app(args.store, tls, args.events),
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            proxy_headers=False,
            lifespan="off",
            **extra,  # type: ignore[arg-type]
        )
        return
    from werkzeug.serving import make_server

    context = (args.cert, args.key) if tls else None
    flask = flask_app(args.store, tls, args.events)
    server = make_server("127.0.0.1", args.port, flask, threaded=True, ssl_context=context)
    server.serve_forever()


# -- the test side -------------------------------------------------------------------------------


@dataclass
class PeerApp:
    """One adapter's process on one port."""

    adapter: str
    base: str
    cert: Path | None
    log: Path
    store: str
    #: The server's audit events, one JSON object a line.
    events_file: Path | None = None

    def events(self, kind: str) -> list[dict[str, Any]]:
        """The events of ``kind`` the server has written so far."""
        import json

        if self.events_file is None or not self.events_file.exists():
            return []
        lines = self.events_file.read_text(encoding="utf-8").splitlines()
        return [e for e in map(json.loads, lines) if e["event"] == kind]

    def tls(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=str(self.cert)) if self.cert else False

    def client(self, **kw: Any) -> httpx.Client:
        """A client with its own cookie jar (``Host: app.test`` over TLS); redirects are not
        followed unless asked."""
        headers = {"host": HOST} if self.cert else {}
        headers.update(kw.pop("headers", {}))
        kw.setdefault("follow_redirects", False)
        return httpx.Client(
            base_url=self.base, headers=headers, verify=self.tls(), timeout=30, **kw
        )


@contextlib.contextmanager
def serve(
    adapter: str, workdir: Path, *, store: str | None = None, tls: bool = True
) -> Iterator[PeerApp]:
    """Start one adapter's process (on ``store``, default a fresh SQLite file), wait until it
    answers, stop it by its PID at the end."""
    port = free_port()
    store = store or f"sqlite:///{workdir / f'{adapter}-{port}.db'}"
    cmd = [sys.executable, "-m", "tests.peers_live", "--adapter", adapter, "--store", store]
    events = workdir / f"{adapter}-{port}.events"
    cmd += ["--port", str(port), "--events", str(events)]
    cert = None
    if tls:
        cert, key, _ = self_signed_certificate(workdir, HOST)
        cmd += ["--cert", str(cert), "--key", str(key)]
    env = server_env()
    log = workdir / f"{adapter}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out)
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    app = PeerApp(adapter, base, cert, log, store, events)
    try:
        wait_answering(proc, [app.base + "/absent"], f"{app.adapter} server", app.log, app.tls())
        yield app
    finally:
        stop_process(proc)


if __name__ == "__main__":
    main()
