"""WSGI specifics the shared behaviour suite cannot express through httpx."""

from __future__ import annotations

import io
import threading
from typing import Any

from sessionwarden import Policy
from sessionwarden.policy import CsrfPolicy
from sessionwarden.wsgi import SessionWardenWSGI

from .conftest import SECRET


class _BlockingInput(io.RawIOBase):
    """A request body that never ends, like a socket whose client keeps the connection open."""

    def __init__(self) -> None:
        self.reads: list[int] = []

    def read(self, size: int = -1) -> bytes:
        self.reads.append(size)
        threading.Event().wait(5)
        return b""


def _call(mw: SessionWardenWSGI, environ: dict[str, Any]) -> tuple[str, bytes]:
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(s)
        return lambda data: None

    body = b"".join(mw(environ, start_response))
    return status[0], body


def _environ(**extra: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "app.test",
        "SERVER_PORT": "443",
        "HTTP_HOST": "app.test",
        "REMOTE_ADDR": "198.51.100.7",
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(b""),
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
    }
    env.update(extra)
    return env


def _ok_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"ran"]


def test_form_post_without_content_length_does_not_block() -> None:
    """Without CONTENT_LENGTH (and no wsgi.input_terminated) the body is empty: reading the raw
    socket to its end would hang the worker until the client hangs up."""
    stream = _BlockingInput()
    mw = SessionWardenWSGI(
        _ok_app, policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)), store="memory://"
    )
    status, _ = _call(mw, _environ(**{"wsgi.input": stream}))
    assert status.startswith("403")  # no token in an empty body
    assert stream.reads == []


def test_non_ascii_path_is_decoded_like_asgi() -> None:
    """PATH_INFO arrives as latin-1 decoded bytes; the policy sees the UTF-8 path, as under ASGI."""
    policy = Policy(
        secret_keys=(SECRET,), allowed_hosts=("*",), csrf=CsrfPolicy(exempt_paths=("/hooks/café",))
    )
    mw = SessionWardenWSGI(_ok_app, policy=policy, store="memory://")
    raw = "/hooks/café".encode().decode("latin-1")
    status, body = _call(mw, _environ(PATH_INFO=raw))
    assert status.startswith("200") and body == b"ran"
