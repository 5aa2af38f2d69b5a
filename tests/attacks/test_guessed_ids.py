"""Guessing session IDs in bulk: one client presenting many unknown (well-formed) IDs.

Past ``monitor.unknown_id_limit_per_minute`` the client gets 429 with ``Retry-After`` and a
THROTTLED event; other clients, and the guesser's neighbours with real sessions, are unaffected.
"""

from __future__ import annotations

import pytest

from sessionwarden import tokens
from sessionwarden.clock import ManualClock
from sessionwarden.events import EventKind
from sessionwarden.policy import MonitorPolicy, Policy

from ..conftest import SECRET
from .conftest import RigFactory

pytestmark = pytest.mark.anyio

LIMIT = 10


def _policy() -> Policy:
    return Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("*",),
        monitor=MonitorPolicy(unknown_id_limit_per_minute=LIMIT),
    )


async def test_bulk_guessing_is_throttled_and_others_unaffected(make_rig: RigFactory) -> None:
    clock = ManualClock()
    rig = make_rig(policy=_policy(), clock=clock)
    honest = rig.browser(peer="198.51.100.20")
    await honest.login()
    guesser = rig.browser(peer="203.0.113.66")
    statuses = []
    for _ in range(LIMIT + 5):
        guesser.cookie = tokens.new_session_id()
        r = await guesser.get("/whoami", headers={"accept": "application/json"})
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert r.headers["retry-after"] == "60"
            assert r.json() == {"error": "throttled", "reason": "unknown-session-ids"}
            assert "x-frame-options" in r.headers  # security headers on refusals too
        else:
            assert r.status_code == 200 and r.json()["user"] is None
    assert statuses[:LIMIT] == [200] * LIMIT
    assert statuses[LIMIT:] == [429] * 5
    throttled = rig.events.of(EventKind.THROTTLED)
    assert len(throttled) == 5 and all(e.client_ip == "203.0.113.66" for e in throttled)

    # the honest client, and a fresh one from another address, are not affected
    assert await honest.user() == "alice"
    other = rig.browser(peer="198.51.100.21")
    other.cookie = tokens.new_session_id()
    r = await other.get("/whoami")
    assert r.status_code == 200
    # the guesser, without a cookie, can still browse anonymously
    guesser.cookie = None
    assert (await guesser.get("/whoami")).status_code == 200

    # the window ends
    clock.advance(61)
    guesser.cookie = tokens.new_session_id()
    assert (await guesser.get("/whoami")).status_code == 200


async def test_spoofed_forwarded_for_does_not_dodge_the_throttle(make_rig: RigFactory) -> None:
    """A guesser rotating X-Forwarded-For on every request is still one (untrusted) peer."""
    rig = make_rig(policy=_policy(), clock=ManualClock())
    guesser = rig.browser(peer="203.0.113.66")
    codes = []
    for i in range(LIMIT + 3):
        guesser.cookie = tokens.new_session_id()
        r = await guesser.get("/whoami", headers={"x-forwarded-for": f"192.0.2.{i}"})
        codes.append(r.status_code)
    assert codes.count(429) == 3


async def test_malformed_ids_cost_no_lookup_and_no_throttle(make_rig: RigFactory) -> None:
    """Junk that cannot be an ID is refused before the store; it is not counted as guessing."""
    rig = make_rig(policy=_policy(), clock=ManualClock())
    junk = rig.browser(peer="203.0.113.67")
    for i in range(LIMIT + 5):
        r = await junk.get("/whoami", cookie_header=f"__Host-id=not-an-id-{i}")
        assert r.status_code == 200
    assert rig.events.count(EventKind.MALFORMED_COOKIE) == LIMIT + 5
    assert rig.events.count(EventKind.UNKNOWN_ID) == 0
