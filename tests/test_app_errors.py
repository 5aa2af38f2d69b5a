"""An application that raises before it starts its response: the client still gets the security
headers (a 500 without any detail of the error), and the server still gets the exception to log.
Frameworks (Starlette, FastAPI, Flask, Django) answer their own 500s, which pass through the
middleware like any response; this is about bare ASGI apps (bare WSGI apps:
``tests/test_wsgi_app_errors.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionwarden.asgi import SessionWardenMiddleware
from sessionwarden.policy import Policy

from .conftest import SECRET
from .live_servers import Server, servers

SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options")


class Boom(RuntimeError):
    pass


def _policy() -> Policy:
    return Policy(secret_keys=(SECRET,), allowed_hosts=("app.test",))


def _scope(path: str = "/", accept: bytes = b"text/html") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"app.test"), (b"accept", accept)],
        "client": ("203.0.113.9", 5000),
        "server": ("app.test", 443),
    }


async def _run(app: Any, scope: dict[str, Any]) -> tuple[list[dict[str, Any]], BaseException]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with pytest.raises(Exception) as raised:
        await app(scope, receive, send)
    return sent, raised.value


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("accept", [b"text/html", b"application/json"])
async def test_a_bare_asgi_app_that_raises_gets_a_500_with_the_headers(accept: bytes) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["session"]["visited"] = True  # never committed: the request failed
        raise Boom("internal detail: db password rejected")

    mw = SessionWardenMiddleware(app, policy=_policy(), store="memory://")
    sent, exc = await _run(mw, _scope(accept=accept))
    assert isinstance(exc, Boom), "the exception still reaches the server, to be logged"
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1 and starts[0]["status"] == 500
    headers = {name.decode(): value.decode() for name, value in starts[0]["headers"]}
    for name in (*SECURITY_HEADERS, "strict-transport-security"):
        assert name in headers, name
    assert headers["cache-control"] == "no-store"
    assert "set-cookie" not in headers
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"internal detail" not in body and b"Traceback" not in body and b"Boom" not in body
    assert b"internal-error" in body or b"Internal Server Error" in body


@pytest.mark.anyio
async def test_an_app_that_raises_after_starting_gets_no_second_start() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise Boom("late")

    mw = SessionWardenMiddleware(app, policy=_policy(), store="memory://")
    sent, exc = await _run(mw, _scope())
    assert isinstance(exc, Boom)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 200


@pytest.mark.anyio
async def test_a_failing_send_does_not_hide_the_apps_exception() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise Boom("first")

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        raise OSError("client gone")

    mw = SessionWardenMiddleware(app, policy=_policy(), store="memory://")
    with pytest.raises(Boom):
        await mw(_scope(), receive, send)


@pytest.mark.anyio
async def test_a_starlette_500_passes_through_once_with_the_headers() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Route

    async def boom(request: Any) -> Any:
        raise Boom("internal detail")

    app = SessionWardenMiddleware(
        Starlette(routes=[Route("/", boom)]), policy=_policy(), store="memory://"
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://app.test") as c:
        r = await c.get("/")
    assert r.status_code == 500
    for name in SECURITY_HEADERS:
        assert len(r.headers.get_list(name)) == 1, name


# -- a live server: what a client and the server's log see -------------------------------------


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    workdir = tmp_path_factory.mktemp("errors")
    with servers("memory://", 1, workdir, factory="failing") as started:
        yield started[0], workdir / f"live-{started[0].port}.log"


def test_live_server_answers_our_500_and_logs_the_exception(failing: tuple[Server, Path]) -> None:
    server, log = failing
    r = httpx.get(server.http + "/boom", timeout=10)
    assert r.status_code == 500
    for name in SECURITY_HEADERS:
        assert len(r.headers.get_list(name)) == 1, name
    assert "internal detail" not in r.text and "Traceback" not in r.text
    assert "internal detail: db password rejected" in log.read_text(), "the server logged it"


def test_live_server_after_a_started_response_cuts_it(failing: tuple[Server, Path]) -> None:
    server, _ = failing
    with pytest.raises(httpx.HTTPError):  # the server ends the connection mid-body
        httpx.get(server.http + "/late", timeout=10)


# -- WSGI: Flask's own 500 (a bare WSGI app: tests/test_wsgi_app_errors.py) --------------------


def test_a_flask_500_gets_the_headers() -> None:
    """Flask answers its own exceptions (a 500 page through ``start_response``)."""
    from flask import Flask

    from sessionwarden.integrations.flask import SessionWarden

    flask_app = Flask(__name__)

    @flask_app.route("/")
    def boom() -> str:
        raise Boom("internal detail")

    SessionWarden(flask_app, policy=_policy(), store="memory://")
    transport = httpx.WSGITransport(app=flask_app)
    with httpx.Client(transport=transport, base_url="https://app.test") as c:
        r = c.get("/")
    assert r.status_code == 500 and "internal detail" not in r.text
    for name in SECURITY_HEADERS:
        assert len(r.headers.get_list(name)) == 1, name


def _entry_app(**kwargs: Any) -> Any:
    """A Starlette app running the middleware as a middleware entry (inside its own error
    middleware), with a route that raises."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Route

    async def boom(request: Any) -> Any:
        raise Boom("internal detail")

    mw = Middleware(SessionWardenMiddleware, policy=_policy(), store="memory://")
    return Starlette(routes=[Route("/", boom)], middleware=[mw], **kwargs)


async def _get_500(app: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://app.test") as c:
        r = await c.get("/")
    assert r.status_code == 500
    return r


@pytest.mark.anyio
async def test_as_a_middleware_entry_the_500_gets_the_headers() -> None:
    r = await _get_500(_entry_app())
    for name in SECURITY_HEADERS:
        assert len(r.headers.get_list(name)) == 1, name
    assert "internal detail" not in r.text


@pytest.mark.anyio
async def test_as_a_middleware_entry_the_apps_own_error_page_is_kept() -> None:
    from starlette.responses import PlainTextResponse

    async def page(request: Any, exc: Exception) -> Any:
        return PlainTextResponse("our own error page", status_code=500)

    r = await _get_500(_entry_app(exception_handlers={500: page}))
    assert r.text == "our own error page"
    r = await _get_500(_entry_app(debug=True))
    assert "Traceback" in r.text or "Boom" in r.text  # Starlette's debug page
