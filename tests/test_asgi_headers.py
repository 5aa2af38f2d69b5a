"""Response headers through the ASGI middleware: ours are added once, the app's own win."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sessionwarden.asgi import SessionWardenMiddleware
from sessionwarden.policy import Policy

from .conftest import SECRET

Headers = list[tuple[bytes, bytes]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def app_with(headers: Headers) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"ok"})

    return SessionWardenMiddleware(
        app, policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)), store="memory://"
    )


async def get(headers: Headers) -> httpx.Response:
    transport = httpx.ASGITransport(app=app_with(headers))
    async with httpx.AsyncClient(transport=transport, base_url="https://app.test") as c:
        return await c.get("/")


@pytest.mark.anyio
async def test_unrelated_app_headers_get_the_full_set() -> None:
    r = await get([(b"content-type", b"text/plain"), (b"x-app", b"1")])
    assert r.headers["x-app"] == "1"
    assert r.headers["x-frame-options"] == "DENY"
    assert "'nonce-" in r.headers["content-security-policy"]
    assert "strict-transport-security" in r.headers


@pytest.mark.anyio
@pytest.mark.parametrize("name", [b"x-frame-options", b"X-Frame-Options"])
async def test_an_app_header_of_ours_wins_whatever_its_case(name: bytes) -> None:
    r = await get([(name, b"SAMEORIGIN"), (b"Content-Security-Policy", b"default-src 'none'")])
    assert r.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert r.headers.get_list("content-security-policy") == ["default-src 'none'"]
    assert r.headers["x-content-type-options"] == "nosniff"  # the others are still added
