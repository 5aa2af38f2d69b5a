"""A request leaves no cyclic garbage: everything it allocates is freed by reference counting.

Objects caught in a reference cycle (an exception kept with its traceback, a closure holding
its own frame, a generator or future pointing back at the request) live until the cyclic
collector runs, and under load they are what it spends its time on. A signed-in read and a
write through the ASGI middleware are run after a warm-up with the collector off; a collection
afterwards must find nothing unreachable.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import pytest

from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.policy import Policy
from sessionwarden.stores import AsyncSessionStore, InlineAsyncStore, MemoryStore

from .conftest import SECRET, drop_prefix, redis_or_skip, unique_prefix

Message = MutableMapping[str, Any]


async def app(scope: Any, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
    """A plain ASGI app: ``/login`` signs in, ``/write`` changes the session, else a read."""
    session = get_session(scope)
    path = scope["path"]
    if path == "/login":
        session.login("alice")
        session["user"] = "alice"
    elif path == "/write":
        cart = session.get("cart", 0)
        assert isinstance(cart, int)
        session["cart"] = cart + 1
    body = str(session.get("user")).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


class Browser:
    """Calls the middleware directly and keeps the session cookie."""

    def __init__(self, mw: SessionWardenMiddleware) -> None:
        self.mw = mw
        self.cookie = b""

    async def get(self, path: str) -> tuple[int, bytes]:
        headers = [(b"host", b"app.test"), (b"user-agent", b"Mozilla/5.0 test")]
        if self.cookie:
            headers.append((b"cookie", self.cookie))
        scope = {
            "type": "http",
            "method": "GET",
            "scheme": "https",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
            "client": ("203.0.113.7", 50000),
        }
        out: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            out.append(message)

        await self.mw(scope, receive, send)
        for name, value in out[0]["headers"]:
            if name == b"set-cookie" and value.startswith(self.mw.policy.cookie.name.encode()):
                self.cookie = value.split(b";", 1)[0]
        return out[0]["status"], out[1]["body"]


async def _unreachable_after_requests(store: AsyncSessionStore) -> list[str]:
    """The types of the objects a signed-in read and write leave for the cyclic collector."""
    mw = SessionWardenMiddleware(
        app, policy=Policy(secret_keys=(SECRET,), allowed_hosts=("app.test",)), store=store
    )
    browser = Browser(mw)
    assert await browser.get("/login") == (200, b"alice")
    for _ in range(20):  # warm-up: caches, interned names, the store's connection
        assert await browser.get("/") == (200, b"alice")
        assert await browser.get("/write") == (200, b"alice")
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(20):
            assert await browser.get("/") == (200, b"alice")
            assert await browser.get("/write") == (200, b"alice")
        gc.collect()
        return [type(o).__qualname__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    redis_or_skip()
    prefix = unique_prefix()
    yield prefix
    drop_prefix(prefix)


def test_memory_store_requests_leave_no_cyclic_garbage() -> None:
    assert asyncio.run(_unreachable_after_requests(InlineAsyncStore(MemoryStore()))) == []


def test_redis_store_requests_leave_no_cyclic_garbage(redis_prefix: str) -> None:
    from sessionwarden.stores.redis import AsyncRedisStore

    from .conftest import REDIS_URL

    async def run() -> list[str]:
        store = AsyncRedisStore(REDIS_URL, prefix=redis_prefix)
        try:
            return await _unreachable_after_requests(store)
        finally:
            await store.close()

    assert asyncio.run(run()) == []
