"""A WSGI application that raises before it starts its response, as on ASGI
(``tests/test_app_errors.py``): the client gets a 500 with the security headers and no detail of
the error, nothing is committed, and the server still gets the exception to log. Neither the
response nor the server's error log ever carries the session's ID or CSRF token.

Driven through real WSGI servers on a loopback socket (the standard library's ``wsgiref`` and
Werkzeug's development server), whose error logs are captured."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest

from sessionwarden.policy import Policy
from sessionwarden.wsgi import SessionWardenWSGI, get_session

from .conftest import SECRET

SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options")
COOKIE = "__Host-id"
DETAIL = "internal detail: db password rejected"
SERVERS = ["wsgiref", "werkzeug"]


class Boom(RuntimeError):
    pass


def _policy() -> Policy:
    return Policy(secret_keys=(SECRET,))


def bare_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """``/login`` signs in, ``/token`` hands out a CSRF token, ``/whoami`` tells the user and
    whether anything was saved; ``/boom`` saves, then raises before starting its response, and
    ``/lazy-boom`` does so at the first iteration (a generator app)."""
    session = get_session(environ)
    path = environ["PATH_INFO"]
    if path == "/boom":
        session["visited"] = True  # never committed: the request failed
        raise Boom(DETAIL)
    if path == "/lazy-boom":
        return _lazy_boom(environ, start_response)
    if path == "/login":
        session.login("alice")
        body = b"signed in"
    elif path == "/token":
        body = environ["sessionwarden"].csrf_token().encode()
    else:
        body = f"{session.user_id} visited={session.get('visited')}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def _lazy_boom(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    get_session(environ)["visited"] = True
    raise Boom(DETAIL)
    yield b"never"  # a generator: start_response would be called at its first iteration


# -- real servers, their error logs captured ---------------------------------------------------


class _Quiet(WSGIRequestHandler):
    errors = io.StringIO()

    def get_stderr(self) -> Any:  # wsgiref writes the app's tracebacks here (wsgi.errors)
        return self.errors

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _wsgiref(app: Any) -> Iterator[tuple[str, Callable[[], str]]]:
    errors = io.StringIO()
    handler = type("Handler", (_Quiet,), {"errors": errors})
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", errors.getvalue
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def _werkzeug(app: Any) -> Iterator[tuple[str, Callable[[], str]]]:
    from werkzeug.serving import make_server as werkzeug_server

    logger = logging.getLogger("werkzeug")
    capture = _Capture()
    logger.addHandler(capture)
    saved = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    server = werkzeug_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", lambda: "\n".join(capture.lines)
    finally:
        server.shutdown()
        thread.join()
        logger.removeHandler(capture)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _logged(log: Callable[[], str], text: str, timeout: float = 10.0) -> str:
    """The server's log once it holds ``text`` (or at ``timeout``): a threaded server logs an
    exception in the request's thread after the answer has gone out."""
    deadline = time.monotonic() + timeout
    while text not in (seen := log()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return seen


@contextmanager
def serving(kind: str, app: Any) -> Iterator[tuple[str, Callable[[], str]]]:
    """The app behind a real server of ``kind``: its base URL and its error log so far."""
    with _wsgiref(app) if kind == "wsgiref" else _werkzeug(app) as running:
        yield running


def _cookie(response: httpx.Response) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name == COOKIE:
            return rest.split(";", 1)[0]
    return None


def _get(base: str, path: str, cookie: str | None = None, **headers: str) -> httpx.Response:
    if cookie is not None:
        headers["cookie"] = f"{COOKIE}={cookie}"
    return httpx.get(base + path, headers=headers, timeout=10)


def _assert_our_500(r: httpx.Response) -> None:
    assert r.status_code == 500
    for name in (*SECURITY_HEADERS, "referrer-policy"):
        assert len(r.headers.get_list(name)) == 1, name
    assert r.headers["cache-control"] == "no-store"
    assert "set-cookie" not in r.headers
    assert "internal detail" not in r.text and "Traceback" not in r.text and "Boom" not in r.text


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("path", ["/boom", "/lazy-boom"])
def test_a_bare_wsgi_app_that_raises_gets_our_500_and_the_server_logs_it(
    server: str, path: str
) -> None:
    mw = SessionWardenWSGI(bare_app, policy=_policy(), store="memory://")
    with serving(server, mw) as (base, log):
        cookie = _cookie(_get(base, "/login"))
        assert cookie
        token = _get(base, "/token", cookie).text
        for accept in ("text/html", "application/json"):
            r = _get(base, path, cookie, accept=accept)
            _assert_our_500(r)
            assert cookie not in r.text and token not in r.text
        assert r.json()["error"] == "internal-error"
        assert _get(base, "/whoami", cookie).text == "alice visited=None", "nothing committed"
        logged = _logged(log, DETAIL)
    assert DETAIL in logged, "the server logged the app's exception"
    assert cookie not in logged and token not in logged


@pytest.mark.parametrize("server", SERVERS)
def test_an_anonymous_request_that_fails_gets_no_session_cookie(server: str) -> None:
    mw = SessionWardenWSGI(bare_app, policy=_policy(), store="memory://")
    with serving(server, mw) as (base, log):
        _assert_our_500(_get(base, "/boom"))
        assert DETAIL in _logged(log, DETAIL)


def _call(app: Any, path: str) -> tuple[list[tuple[str, Any]], list[bytes], BaseException | None]:
    """Run a WSGI app as a server would: its ``start_response`` calls, the body it sent before
    failing, and the exception that reached the server."""
    from wsgiref.util import setup_testing_defaults

    environ: dict[str, Any] = {"PATH_INFO": path, "HTTP_HOST": "127.0.0.1"}
    setup_testing_defaults(environ)
    environ["SERVER_NAME"] = environ["REMOTE_ADDR"] = "127.0.0.1"
    starts: list[tuple[str, Any]] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        starts.append((status, exc_info))
        return lambda data: None

    body: list[bytes] = []
    try:
        for chunk in app(environ, start_response):
            body.append(chunk)
    except Exception as exc:
        return starts, body, exc
    return starts, body, None


def test_an_app_that_raises_after_starting_gets_no_second_start() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"part"
        raise Boom("late")

    mw = SessionWardenWSGI(app, policy=_policy(), store="memory://")
    starts, body, exc = _call(mw, "/")
    assert [status for status, _ in starts] == ["200 OK"]
    assert body == [b"part"] and isinstance(exc, Boom)


def test_our_500_hands_the_exception_to_start_response_then_raises_it() -> None:
    mw = SessionWardenWSGI(bare_app, policy=_policy(), store="memory://")
    starts, body, exc = _call(mw, "/boom")
    assert [status for status, _ in starts] == ["500 Internal Server Error"]
    assert starts[0][1] is not None and isinstance(starts[0][1][1], Boom)
    assert len(body) == 1 and b"Internal Server Error" in body[0] and isinstance(exc, Boom)


def test_a_wsgi_test_client_still_raises_the_apps_exception() -> None:
    """Test clients raise ``exc_info`` at once (httpx, Werkzeug's): tests see the exception."""
    mw = SessionWardenWSGI(bare_app, policy=_policy(), store="memory://")
    transport = httpx.WSGITransport(app=mw)
    with httpx.Client(transport=transport, base_url="http://127.0.0.1") as c, pytest.raises(Boom):
        c.get("/boom")


# -- Flask ----------------------------------------------------------------------------------------


def _flask(**config: Any) -> Any:
    from flask import Flask

    from sessionwarden.integrations.flask import SessionWarden

    flask_app = Flask(__name__)
    flask_app.config.update(config)

    @flask_app.route("/")
    def boom() -> str:
        raise Boom(DETAIL)

    SessionWarden(flask_app, policy=_policy(), store="memory://")
    return flask_app


@pytest.mark.parametrize("server", SERVERS)
def test_a_flask_app_propagating_exceptions_gets_our_500(server: str) -> None:
    """With ``PROPAGATE_EXCEPTIONS`` (for a server's or an error reporter's log) Flask lets the
    exception through instead of answering its own 500."""
    with serving(server, _flask(PROPAGATE_EXCEPTIONS=True)) as (base, log):
        _assert_our_500(_get(base, "/"))
        assert DETAIL in _logged(log, DETAIL)


def test_flask_debug_mode_leaves_the_exception_to_the_debugger() -> None:
    from werkzeug.debug import DebuggedApplication

    app = _flask(DEBUG=True)
    with serving("werkzeug", DebuggedApplication(app, evalex=False)) as (base, _):
        r = _get(base, "/")
    assert r.status_code == 500 and "Traceback" in r.text and "Boom" in r.text


def test_the_flask_test_client_still_raises_the_apps_exception() -> None:
    app = _flask(TESTING=True)
    with pytest.raises(Boom):
        app.test_client().get("/")
