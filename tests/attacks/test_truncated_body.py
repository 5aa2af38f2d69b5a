"""A truncated form body never reaches the application: a client that sends the CSRF token and
then vanishes (ASGI ``http.disconnect``) or sends fewer bytes than its ``Content-Length`` (WSGI)
would otherwise make the app act on a partial form (a transfer of 1000 recorded as 10)."""

from __future__ import annotations

import io
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from sessionwarden.policy import Policy
from sessionwarden.stores import MemoryStore
from sessionwarden.wsgi import SessionWardenWSGI

from ..conftest import SECRET
from .conftest import COOKIE, RigFactory
from .test_slow_request_body import _call, _scope, _signed_in

pytestmark = pytest.mark.anyio


class CutAfter:
    """A ``receive`` that hands out the first part of the body, then reports a disconnect."""

    def __init__(self, first: bytes) -> None:
        self.messages: list[dict[str, Any]] = [
            {"type": "http.request", "body": first, "more_body": True},
            {"type": "http.disconnect"},
        ]

    async def __call__(self) -> dict[str, Any]:
        return self.messages.pop(0) if self.messages else {"type": "http.disconnect"}


async def test_asgi_disconnect_after_the_token_never_runs_the_app(make_rig: RigFactory) -> None:
    rig = make_rig()
    cookie, token = await _signed_in(rig)
    whole = f"csrf_token={token}&to=bob&amount=1000".encode()
    cut = whole[: whole.index(b"amount=10") + len(b"amount=10")]
    status, _ = await _call(rig, _scope(cookie), CutAfter(cut))  # type: ignore[arg-type]
    assert status == 400
    b = rig.browser()
    b.cookie = cookie
    assert (await b.get("/whoami")).json()["transfers"] == []  # not 10, not anything


# -- WSGI --------------------------------------------------------------------------------------


def _transfers_app(recorded: list[bytes]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        ctx = environ["sessionwarden"]
        if environ["REQUEST_METHOD"] == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            recorded.append(environ["wsgi.input"].read(length))
            body = b"done"
        else:
            body = ctx.csrf_token().encode()
        start_response("200 OK", [("content-type", "text/plain")])
        return [body]

    return app


def _environ(method: str, cookie: str | None, body: bytes = b"", length: int | None = None):  # type: ignore[no-untyped-def]
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(
        {
            "REQUEST_METHOD": method,
            "wsgi.url_scheme": "https",
            "HTTP_HOST": "localhost",
            "PATH_INFO": "/transfer",
            "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body) if length is None else length),
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
        }
    )
    if cookie:
        environ["HTTP_COOKIE"] = f"{COOKIE}={cookie}"
    return environ


def test_wsgi_body_shorter_than_content_length_never_runs_the_app() -> None:
    recorded: list[bytes] = []
    mw = SessionWardenWSGI(
        _transfers_app(recorded),
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store=MemoryStore(),
    )
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
        seen.append((status, headers))
        return lambda data: None

    token = b"".join(mw(_environ("GET", None), start_response)).decode()
    cookie = next(v for n, v in seen[-1][1] if n.lower() == "set-cookie")
    cookie = cookie.split(";", 1)[0].split("=", 1)[1]
    whole = f"csrf_token={token}&to=bob&amount=1000".encode()
    cut = whole[: whole.index(b"amount=10") + len(b"amount=10")]
    out = b"".join(mw(_environ("POST", cookie, cut, length=len(whole)), start_response))
    assert seen[-1][0].startswith("400"), (seen[-1][0], out)
    assert recorded == []
    # the whole body passes
    b"".join(mw(_environ("POST", cookie, whole), start_response))
    assert seen[-1][0].startswith("200") and recorded == [whole]


class BrokenStream:
    """A request body stream that hands out ``first`` and then fails, as a server's input does
    on a malformed chunked body or a connection reset (Werkzeug raises ``OSError``)."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    def read(self, size: int = -1) -> bytes:
        if self.first:
            data, self.first = self.first, b""
            return data
        raise OSError("Invalid chunk header")


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_wsgi_body_stream_that_fails_is_a_400_and_never_runs_the_app(declared: bool) -> None:
    recorded: list[bytes] = []
    mw = SessionWardenWSGI(
        _transfers_app(recorded), policy=Policy(secret_keys=(SECRET,)), store=MemoryStore()
    )
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
        seen.append((status, headers))
        return lambda data: None

    token = b"".join(mw(_environ("GET", None), start_response)).decode()
    cookie = next(v for n, v in seen[-1][1] if n.lower() == "set-cookie")
    cookie = cookie.split(";", 1)[0].split("=", 1)[1]
    whole = f"csrf_token={token}&to=bob&amount=1000".encode()
    cut = whole[: whole.index(b"amount=10") + len(b"amount=10")]
    environ = _environ("POST", cookie, length=len(whole))
    environ["wsgi.input"] = BrokenStream(cut)
    if not declared:
        del environ["CONTENT_LENGTH"]
        environ["wsgi.input_terminated"] = True
    b"".join(mw(environ, start_response))
    assert seen[-1][0].startswith("400"), seen[-1][0]
    assert recorded == []
