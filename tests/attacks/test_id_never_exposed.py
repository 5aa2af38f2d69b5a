"""The session ID never leaves the server except in ``Set-Cookie``: not in a response body (HTML,
JSON, refusal pages), not in a ``Location`` header, not in any other header. A scenario touching
every kind of response is run and every response is searched for every ID ever issued."""

from __future__ import annotations

import pytest

from sessionwarden import tokens
from sessionwarden.clock import ManualClock
from sessionwarden.policy import CsrfPolicy, MonitorPolicy, Policy

from ..conftest import SECRET
from .conftest import COOKIE, Browser, RigFactory

pytestmark = pytest.mark.anyio


async def run_everything(rig_browser: Browser, thief: Browser, clock: ManualClock) -> list[str]:
    """A scenario with every response the guard can produce; returns the IDs the thief guessed."""
    b = rig_browser
    await b.get("/whoami")
    await b.token()
    await b.login()
    await b.get("/account")  # 200
    t = await b.token()
    await b.post("/transfer", data={"to": "bob", "amount": "3", "csrf_token": t})
    await b.post("/transfer", data={"to": "bob", "amount": "3"})  # 403 csrf
    await b.post("/transfer", data={"csrf_token": t}, headers={"sec-fetch-site": "cross-site"})
    await b.post("/transfer", data={"csrf_token": t, "pad": "z" * 5000})  # 413
    await b.post("/client", headers={"x-csrf-token": t, "accept": "application/json"})
    clock.advance(61)
    await b.get("/whoami")  # periodic rotation
    stolen = b.cookie
    clock.advance(61)
    await b.get("/whoami")  # rotation again
    await b.post("/logout", data={"csrf_token": await b.token()})  # 303 Location
    await b.get("/account")  # anonymous -> 303 to /login
    thief.cookie = stolen
    await thief.get("/whoami")  # replay of a rotated id
    guessed = []
    for _ in range(6):  # unknown ids until 429
        thief.cookie = tokens.new_session_id()
        guessed.append(thief.cookie)
        await thief.get("/whoami", headers={"accept": "application/json"})
    await thief.get("/whoami", cookie_header=f"{COOKIE}=a; {COOKIE}={stolen}")  # tossing
    return guessed


async def test_session_id_never_in_body_or_location(make_rig: RigFactory) -> None:
    clock = ManualClock()
    policy = Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("*",),
        rotate_every=60,
        rotation_grace=5,
        csrf=CsrfPolicy(max_body_bytes=4096),
        monitor=MonitorPolicy(unknown_id_limit_per_minute=3),
    )
    rig = make_rig(policy=policy, clock=clock)
    b = rig.browser()
    thief = rig.browser(peer="203.0.113.66")
    plain = rig.browser(base_url="http://app.test")
    await plain.get("/whoami")  # 308 with Location
    await run_everything(b, thief, clock)
    issued = set(b.issued) | set(thief.issued)
    assert len(issued) >= 4
    statuses = set()
    for resp in b.responses + thief.responses + plain.responses:
        statuses.add(resp.status_code)
        body = resp.content.decode("latin-1")
        for name, value in resp.headers.multi_items():
            if name.lower() == "set-cookie":
                continue
            for sid in issued:
                assert sid not in value, f"ID leaked in header {name}"
        for sid in issued:
            assert sid not in body, f"ID leaked in a {resp.status_code} body"
            # nor any recognisable piece of it (e.g. a truncated echo)
            assert sid[:16] not in body
        loc = resp.headers.get("location")
        if loc is not None:
            assert all(sid not in loc for sid in issued)
    assert {200, 303, 308, 403, 413, 429} <= statuses
