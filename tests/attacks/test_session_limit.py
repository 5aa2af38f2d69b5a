"""Concurrent sessions per user (ASVS 5 7.1.2, OWASP "Simultaneous Session Logons",
WSTG-SESS-11): ``Policy.max_sessions_per_user`` with each action of ``on_session_limit``.

Black box: the attacked app behind the real ASGI middleware, on every store opened from its URL,
each "browser" keeping its own cookie. The standard's test: max=2 with evict-oldest, sign in on
A, then B, then C: A is signed out, B and C work. With reject: the third sign-in fails with a
clear error and A and B still work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask, jsonify, redirect

from sessionwarden.clock import ManualClock
from sessionwarden.events import EventKind
from sessionwarden.guard import Refusal, RenderedRefusal, RequestContext
from sessionwarden.integrations.flask import SessionWarden, csrf_token, current_session
from sessionwarden.policy import Policy
from sessionwarden.stores.base import CapAction

from ..conftest import SECRET
from .conftest import (
    BASE,
    COOKIE,
    EVERY_STORE,
    Browser,
    RigFactory,
    set_cookie_value,
    store_url_of,
)


@pytest.fixture(params=EVERY_STORE)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every store, each against its real backend (overrides the attack suite's, which has no
    memory store)."""
    yield from store_url_of(request.param, tmp_path)


def cap_policy(on_limit: CapAction, cap: int = 2) -> Policy:
    return Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("*",),
        max_sessions_per_user=cap,
        on_session_limit=on_limit,
    )


async def refused_login(browser: Browser, user: str = "alice") -> str:
    """Sign in and expect the refusal; returns its page. The browser keeps the cookie it had."""
    token = await browser.token()
    before = browser.cookie
    assert before is not None
    r = await browser.post("/login", data={"username": user, "csrf_token": token})
    assert r.status_code == 409, r.text
    assert "set-cookie" not in r.headers
    assert browser.cookie == before
    return r.text


@pytest.mark.anyio
async def test_evict_oldest_signs_out_the_first_device(make_rig: RigFactory) -> None:
    clock = ManualClock()
    rig = make_rig(policy=cap_policy("evict-oldest"), clock=clock)
    a, b, c = rig.browser(), rig.browser(), rig.browser()
    for browser in (a, b, c):
        await browser.login()
        clock.advance(10)
    assert await a.user() is None
    assert await b.user() == "alice"
    assert await c.user() == "alice"
    assert rig.events.count(EventKind.EVICTED) == 1


@pytest.mark.anyio
async def test_reject_refuses_the_third_device_and_keeps_the_first_two(
    make_rig: RigFactory,
) -> None:
    clock = ManualClock()
    rig = make_rig(policy=cap_policy("reject"), clock=clock)
    a, b, c = rig.browser(), rig.browser(), rig.browser()
    await a.login()
    clock.advance(10)
    await b.login()
    clock.advance(10)
    page = await refused_login(c)
    assert "too many devices" in page
    assert await a.user() == "alice"
    assert await b.user() == "alice"
    assert await c.user() is None
    (refused,) = rig.events.of(EventKind.LOGIN_REFUSED)
    assert (refused.user_id, refused.reason, refused.detail) == (
        "alice",
        "session-limit",
        {"limit": 2},
    )
    assert rig.events.count(EventKind.EVICTED) == 0
    # The refused browser's session is whole: once A signs out, it signs in with the token it
    # was given before the refusal (its CSRF secret unchanged, nothing half-rotated).
    token = c.tokens[-1]
    await a.post("/logout", data={"csrf_token": await a.token()})
    assert await a.user() is None
    r = await c.post("/login", data={"username": "alice", "csrf_token": token})
    assert r.status_code == 303, r.text
    assert await c.user() == "alice"
    assert await b.user() == "alice"


@pytest.mark.anyio
async def test_reject_answers_json_clients_with_the_reason(make_rig: RigFactory) -> None:
    rig = make_rig(policy=cap_policy("reject", cap=1))
    a, b = rig.browser(), rig.browser()
    await a.login()
    token = await b.token()
    r = await b.post(
        "/login",
        data={"username": "alice", "csrf_token": token},
        headers={"accept": "application/json"},
    )
    assert r.status_code == 409
    assert r.json() == {"error": "session-limit", "reason": "max-sessions"}
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.anyio
async def test_reject_lets_a_device_sign_in_again(make_rig: RigFactory) -> None:
    """Signing in again in a browser already signed in moves its session: it never counts."""
    rig = make_rig(policy=cap_policy("reject"))
    a, b = rig.browser(), rig.browser()
    await a.login()
    await b.login()
    first = a.cookie
    await a.login()
    assert a.cookie != first
    assert await a.user() == "alice"
    assert await b.user() == "alice"
    assert rig.events.count(EventKind.LOGIN_REFUSED) == 0


@pytest.mark.anyio
async def test_reject_never_counts_an_expired_session(make_rig: RigFactory) -> None:
    clock = ManualClock()
    rig = make_rig(policy=cap_policy("reject"), clock=clock)
    a, b, c = rig.browser(), rig.browser(), rig.browser()
    await a.login()
    await b.login()
    clock.advance(20 * 60)
    assert await b.user() == "alice"  # B stays active; A idles past the 30 minutes
    clock.advance(15 * 60)
    await c.login()
    assert await c.user() == "alice"
    assert await b.user() == "alice"
    assert await a.user() is None


@pytest.mark.anyio
async def test_evict_lru_signs_out_the_least_recently_used_device(make_rig: RigFactory) -> None:
    clock = ManualClock()
    rig = make_rig(policy=cap_policy("evict-lru"), clock=clock)
    a, b, c = rig.browser(), rig.browser(), rig.browser()
    await a.login()
    clock.advance(10)
    await b.login()
    clock.advance(120)  # past the touch interval: A's next request records its activity
    assert await a.user() == "alice"
    clock.advance(10)
    await c.login()
    assert await b.user() is None
    assert await a.user() == "alice"
    assert await c.user() == "alice"


@pytest.mark.anyio
async def test_parallel_sign_ins_at_the_cap_never_both_succeed(make_rig: RigFactory) -> None:
    rig = make_rig(policy=cap_policy("reject", cap=3))
    first = rig.browser()
    await first.login()
    racers = [rig.browser() for _ in range(6)]
    tokens = [await r.token() for r in racers]
    answers = await asyncio.gather(
        *(
            r.post("/login", data={"username": "alice", "csrf_token": t})
            for r, t in zip(racers, tokens, strict=True)
        )
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [303, 303, 409, 409, 409, 409]
    signed_in = [r for r in racers if await r.user() == "alice"]
    assert len(signed_in) == 2
    assert await first.user() == "alice"
    assert rig.events.count(EventKind.LOGIN_REFUSED) == 4


# -- the same on WSGI (Flask), with the application's own page for the refusal -----------------


def render_refusal(refusal: Refusal, ctx: RequestContext) -> RenderedRefusal | None:
    """The application's page for a refused sign-in (any other refusal: the default page)."""
    if refusal.error != "session-limit":
        return None
    return RenderedRefusal("<h1>Signed in on too many devices</h1><a href=/devices>Manage</a>")


def flask_app(url: str) -> Flask:
    app = Flask(__name__)

    @app.get("/token")
    def token() -> Any:
        return jsonify({"csrf_token": csrf_token()})

    @app.post("/login")
    def login() -> Any:
        current_session().login("alice")
        return redirect("/", 303)

    @app.get("/")
    def whoami() -> Any:
        return jsonify({"user": current_session().user_id})

    SessionWarden(app, policy=cap_policy("reject"), store=url, render_refusal=render_refusal)
    return app


def test_reject_on_wsgi_with_the_apps_page(store_url: str) -> None:
    app = flask_app(store_url)
    jars: list[str | None] = [None, None, None]

    def send(n: int, method: str, path: str, **kw: Any) -> httpx.Response:
        transport = httpx.WSGITransport(app=app, remote_addr="198.51.100.7")
        headers = {"origin": BASE} if method == "POST" else {}
        if jars[n] is not None:
            headers["cookie"] = f"{COOKIE}={jars[n]}"
        with httpx.Client(transport=transport, base_url=BASE) as client:
            r = client.request(method, path, headers=headers, **kw)
        value = set_cookie_value(r)
        if value is not None:
            jars[n] = value or None
        return r

    def sign_in(n: int) -> httpx.Response:
        token = send(n, "GET", "/token").json()["csrf_token"]
        return send(n, "POST", "/login", data={"csrf_token": token})

    assert sign_in(0).status_code == 303
    assert sign_in(1).status_code == 303
    token = send(2, "GET", "/token").json()["csrf_token"]
    before = jars[2]
    refused = send(2, "POST", "/login", data={"csrf_token": token})
    assert refused.status_code == 409
    assert "too many devices" in refused.text
    assert refused.headers["content-type"].startswith("text/html")
    assert jars[2] == before is not None
    assert [send(n, "GET", "/").json()["user"] for n in range(3)] == ["alice", "alice", None]
