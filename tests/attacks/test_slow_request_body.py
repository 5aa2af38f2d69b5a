"""Slow request bodies: a client trickling the form body chunk by chunk (slowloris on the body),
or vanishing in the middle of it.

The guard buffers at most ``max_body_bytes`` and then refuses; a trickled body that fits is
reassembled and its token found; a disconnect in the middle ends in a refusal, not a 500, and the
application never runs on half a body.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from sessionwarden.policy import CsrfPolicy, Policy

from ..conftest import SECRET
from .conftest import COOKIE, Rig, RigFactory

pytestmark = pytest.mark.anyio

LIMIT = 4096


def _scope(
    cookie: str, *, content_type: str = "application/x-www-form-urlencoded"
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/transfer",
        "raw_path": b"/transfer",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"app.test"),
            (b"cookie", f"{COOKIE}={cookie}".encode()),
            (b"content-type", content_type.encode()),
            (b"user-agent", b"Mozilla/5.0 Firefox/128.0"),
        ],
        "client": ("198.51.100.7", 50000),
        "server": ("app.test", 443),
    }


class Trickle:
    """A ``receive`` that hands out the body in small chunks with a pause between them."""

    def __init__(
        self, body: bytes, chunk: int, delay: float, *, disconnect_after: int | None = None
    ):
        self.pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
        self.delay = delay
        self.disconnect_after = disconnect_after
        self.handed = 0
        self.bytes_handed = 0

    async def __call__(self) -> dict[str, Any]:
        await asyncio.sleep(self.delay)
        if self.disconnect_after is not None and self.handed >= self.disconnect_after:
            return {"type": "http.disconnect"}
        if self.handed >= len(self.pieces):
            # the app asking again after the body: block like a real server until disconnect
            await asyncio.sleep(0.05)
            return {"type": "http.disconnect"}
        piece = self.pieces[self.handed]
        self.handed += 1
        self.bytes_handed += len(piece)
        return {"type": "http.request", "body": piece, "more_body": self.handed < len(self.pieces)}


async def _call(rig: Rig, scope: dict[str, Any], receive: Trickle) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(rig.app(scope, receive, send), timeout=20)
    start = [m for m in sent if m["type"] == "http.response.start"]
    assert len(start) == 1
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(start[0]["status"]), body


async def _signed_in(rig: Rig) -> tuple[str, str]:
    b = rig.browser()
    await b.login()
    return b.cookie or "", await b.token()


async def test_trickled_body_is_reassembled_and_token_found(make_rig: RigFactory) -> None:
    rig = make_rig(
        policy=Policy(
            secret_keys=(SECRET,), allowed_hosts=("*",), csrf=CsrfPolicy(max_body_bytes=LIMIT)
        )
    )
    cookie, token = await _signed_in(rig)
    body = f"to=bob&amount=5&csrf_token={token}".encode()
    receive = Trickle(body, chunk=3, delay=0.002)  # the token is split across many chunks
    status, out = await _call(rig, _scope(cookie), receive)
    assert status == 200 and out == b"transfer done"
    assert receive.handed == len(receive.pieces)


async def test_trickled_body_past_the_limit_stops_reading(make_rig: RigFactory) -> None:
    rig = make_rig(
        policy=Policy(
            secret_keys=(SECRET,), allowed_hosts=("*",), csrf=CsrfPolicy(max_body_bytes=LIMIT)
        )
    )
    cookie, token = await _signed_in(rig)
    body = f"csrf_token={token}&pad=".encode() + b"z" * (LIMIT * 50)
    receive = Trickle(body, chunk=512, delay=0)
    status, _ = await _call(rig, _scope(cookie), receive)
    assert status == 413
    # bounded buffering: reading stopped at the first chunk past the limit
    assert receive.bytes_handed <= LIMIT + 512
    assert receive.handed < len(receive.pieces)


@pytest.mark.parametrize("after", [0, 1, 5])
async def test_disconnect_mid_body_is_not_a_500(make_rig: RigFactory, after: int) -> None:
    rig = make_rig(
        policy=Policy(
            secret_keys=(SECRET,), allowed_hosts=("*",), csrf=CsrfPolicy(max_body_bytes=LIMIT)
        )
    )
    cookie, token = await _signed_in(rig)
    body = f"to=bob&amount=5&pad={'z' * 200}&csrf_token={token}".encode()
    receive = Trickle(body, chunk=16, delay=0.001, disconnect_after=after)
    status, out = await _call(rig, _scope(cookie), receive)
    assert status == 403 and b"Traceback" not in out  # token never arrived: refused cleanly
    # the app did not run on half a body: no transfer was recorded
    b = rig.browser()
    b.cookie = cookie
    r = await b.get("/whoami")
    assert r.json()["transfers"] == []


async def test_many_slow_bodies_do_not_block_other_requests(make_rig: RigFactory) -> None:
    """While 20 clients trickle their bodies, a normal request is served promptly."""
    rig = make_rig(
        policy=Policy(
            secret_keys=(SECRET,), allowed_hosts=("*",), csrf=CsrfPolicy(max_body_bytes=LIMIT)
        )
    )
    cookie, token = await _signed_in(rig)
    body = f"to=bob&amount=1&csrf_token={token}".encode()
    slow = [
        asyncio.create_task(_call(rig, _scope(cookie), Trickle(body, chunk=4, delay=0.02)))
        for _ in range(20)
    ]
    await asyncio.sleep(0.05)
    b = rig.browser()
    b.cookie = cookie
    started = time.monotonic()
    r = await b.get("/whoami")
    assert r.status_code == 200 and time.monotonic() - started < 1.0
    results = await asyncio.gather(*slow)
    assert all(status == 200 for status, _ in results)
