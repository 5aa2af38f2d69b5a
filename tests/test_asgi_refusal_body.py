"""A refusal reads the rest of the request body first (at most ``csrf.max_body_bytes``).

A request's body may still be arriving when the middleware answers in the application's place
(a cross-site post is refused on its ``Origin`` before its body is read). hypercorn (0.16 to
0.18 at least) then, over HTTP/2, ends the whole connection, every other request on it
included (``KeyError`` in its ``_handle_events``): a browser that posted a form the middleware
refused lost its other requests in flight on that connection; and over HTTP/1.1 with TLS it
closes the connection and logs the body that kept coming as an error of the application
(``tests/test_servers_hypercorn.py`` showed both live). Read to its end first, nothing is left
to arrive.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sessionwarden.asgi import SessionWardenMiddleware
from sessionwarden.policy import Policy
from sessionwarden.stores import InlineAsyncStore, MemoryStore, StoreUnavailable

from .conftest import SECRET

AGENT = b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


async def app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("a refused request reached the app")


class Client:
    """One request's ``receive`` and ``send``: the body in ``parts`` chunks, and what was read
    before the response started."""

    def __init__(self, parts: int) -> None:
        self.messages = [
            {"type": "http.request", "body": b"x=1&" * 8, "more_body": n < parts - 1}
            for n in range(parts)
        ]
        self.read_before_start: int | None = None
        self.read = 0
        self.status = 0

    async def receive(self) -> dict[str, Any]:
        if self.read < len(self.messages):
            self.read += 1
            return self.messages[self.read - 1]
        await asyncio.sleep(3600)  # the client sends nothing more (it waits for the answer)
        raise AssertionError("unreachable")

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.read_before_start = self.read
            self.status = message["status"]


def scope(version: str, origin: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "http_version": version,
        "method": "POST",
        "scheme": "https",
        "path": "/transfer",
        "raw_path": b"/transfer",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"origin", origin),
            (b"user-agent", AGENT),
            (b"content-type", b"application/x-www-form-urlencoded"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 443),
    }


def middleware(store: Any | None = None) -> SessionWardenMiddleware:
    policy = Policy(secret_keys=(SECRET,))
    return SessionWardenMiddleware(app, policy=policy, store=store or "memory://")


async def answer(mw: SessionWardenMiddleware, version: str, origin: bytes) -> Client:
    client = Client(parts=5)
    await asyncio.wait_for(mw(scope(version, origin), client.receive, client.send), 5)
    return client


@pytest.mark.parametrize("version", ["1.1", "2", "3"])
def test_a_cross_site_post_is_refused_after_its_body_was_read(version: str) -> None:
    client = asyncio.run(answer(middleware(), version, b"https://evil.test"))
    assert client.status == 403
    assert client.read_before_start == 5  # the whole body, then the refusal


class DownStore(MemoryStore):
    def get(self, key: str) -> Any:
        raise StoreUnavailable("down")


def test_a_refusal_for_a_store_outage_reads_the_body_first() -> None:
    """The store cannot be read: 503 before the session is known (no cookie here, so a
    cookie that names a session is needed for the store to be asked)."""
    mw = middleware(InlineAsyncStore(DownStore()))
    cookie = (b"cookie", b"__Host-id=" + b"A" * 43)
    client = Client(parts=3)
    request = scope("2", b"https://127.0.0.1")
    request["headers"].append(cookie)
    asyncio.run(asyncio.wait_for(mw(request, client.receive, client.send), 5))
    assert client.status == 503
    assert client.read_before_start == 3


def test_a_refused_body_is_read_no_further_than_the_limit() -> None:
    """A cross-site post of a body past the limit: read up to the limit, then refused."""
    mw = middleware()
    limit = mw.policy.csrf.max_body_bytes
    client = Client(parts=1)
    big = limit // 4 + 1
    client.messages = [
        {"type": "http.request", "body": b"x" * big, "more_body": True} for _ in range(10)
    ]
    asyncio.run(
        asyncio.wait_for(mw(scope("2", b"https://evil.test"), client.receive, client.send), 5)
    )
    assert client.status == 403
    assert client.read_before_start is not None and client.read_before_start <= 5
