"""Login CSRF: an attacker makes the victim's browser sign in to the ATTACKER's account (so the
victim's later actions land in it). POST /login needs the token of the browser's own anonymous
session; without it, or with the attacker's own token, the login is refused with 403."""

from __future__ import annotations

import pytest

from sessionwarden.events import EventKind

from .conftest import RigFactory

pytestmark = pytest.mark.anyio


async def test_login_without_the_anonymous_sessions_token_is_refused(make_rig: RigFactory) -> None:
    rig = make_rig()
    victim = rig.browser()
    await victim.token()  # the login page gave the victim an anonymous session
    r = await victim.post("/login", data={"username": "mallory"})
    assert r.status_code == 403
    assert rig.events.of(EventKind.CSRF_REFUSED)[-1].reason == "missing-token"
    assert await victim.user() is None


async def test_login_with_the_attackers_token_is_refused(make_rig: RigFactory) -> None:
    rig = make_rig()
    attacker = rig.browser(peer="203.0.113.66")
    their_token = await attacker.token()
    victim = rig.browser()
    await victim.token()
    r = await victim.post("/login", data={"username": "mallory", "csrf_token": their_token})
    assert r.status_code == 403
    assert rig.events.of(EventKind.CSRF_REFUSED)[-1].reason == "bad-token"
    assert await victim.user() is None


async def test_login_with_no_session_at_all_is_refused(make_rig: RigFactory) -> None:
    """A browser that never loaded the login page (no cookie) has no token to present."""
    rig = make_rig()
    attacker = rig.browser(peer="203.0.113.66")
    their_token = await attacker.token()
    victim = rig.browser()
    for data in ({"username": "mallory"}, {"username": "mallory", "csrf_token": their_token}):
        r = await victim.post("/login", data=data)
        assert r.status_code == 403
    assert rig.events.of(EventKind.CSRF_REFUSED)[-1].reason == "no-session"
    assert victim.cookie is None
    assert rig.events.count(EventKind.LOGGED_IN) == 0


async def test_login_with_own_token_works(make_rig: RigFactory) -> None:
    rig = make_rig()
    victim = rig.browser()
    await victim.login("alice")
    assert await victim.user() == "alice"
