"""Session fixation: an attacker plants an ID in the victim's browser and waits for the login.

Strict mode never adopts an ID it did not issue, and a login always issues a new one, so neither
a made-up ID nor a real anonymous ID the attacker obtained is ever the authenticated session.
"""

from __future__ import annotations

import pytest

from sessionwarden import tokens
from sessionwarden.events import EventKind
from sessionwarden.records import SessionRecord, Tombstone

from .conftest import COOKIE, RigFactory

pytestmark = pytest.mark.anyio


async def test_planted_unknown_id_is_never_adopted_before_login(make_rig: RigFactory) -> None:
    rig = make_rig()
    victim = rig.browser()
    planted = tokens.new_session_id()
    victim.cookie = planted
    r = await victim.get("/count")  # a write: the session must be created under a NEW id
    assert r.status_code == 200 and r.json() == {"n": 1}
    assert victim.cookie is not None and victim.cookie != planted
    key = rig.app.engine.keyring.hash_id(planted)
    assert await rig.app.store.get(key) is None
    assert rig.events.count(EventKind.UNKNOWN_ID) == 1


async def test_planted_unknown_id_is_never_adopted_by_login(make_rig: RigFactory) -> None:
    rig = make_rig()
    victim = rig.browser()
    planted = tokens.new_session_id()
    victim.cookie = planted
    # the token page already refuses the planted id: the victim gets a fresh anonymous session
    await victim.login()
    assert victim.cookie is not None and victim.cookie != planted
    assert planted not in victim.issued
    assert await victim.user() == "alice"
    # the attacker, still holding the planted id, is nobody
    attacker = rig.browser(peer="203.0.113.66")
    attacker.cookie = planted
    assert await attacker.user() is None
    assert await rig.app.store.get(rig.app.engine.keyring.hash_id(planted)) is None


async def test_real_anonymous_id_obtained_by_attacker_dies_at_login(make_rig: RigFactory) -> None:
    """The attacker gets a genuine anonymous session, plants it, the victim signs in with it."""
    rig = make_rig()
    attacker = rig.browser(peer="203.0.113.66")
    await attacker.token()  # a genuine anonymous session exists now
    fixed = attacker.cookie
    assert fixed is not None
    victim = rig.browser()
    victim.cookie = fixed
    await victim.login()
    assert victim.cookie != fixed, "login must rotate the ID"
    assert await victim.user() == "alice"
    # the attacker's copy of the pre-login ID is a tombstone now, not the victim's session
    old = await rig.app.store.get(rig.app.engine.keyring.hash_id(fixed))
    assert isinstance(old, Tombstone) and old.reason.startswith("rotated")
    assert await attacker.user() is None
    assert rig.events.count(EventKind.REPLAY_ROTATED) >= 1
    live = await rig.app.store.get(rig.app.engine.keyring.hash_id(victim.cookie or ""))
    assert isinstance(live, SessionRecord) and live.user_id == "alice"


async def test_fixation_through_a_subdomain_set_cookie_variant_is_ignored(
    make_rig: RigFactory,
) -> None:
    """A sibling subdomain cannot set ``__Host-id``; it may set ``__host-id`` (another cookie).
    That cookie is never read as the session, before or after the login."""
    rig = make_rig()
    planted = tokens.new_session_id()
    victim = rig.browser()
    r = await victim.get("/whoami", cookie_header=f"__host-id={planted}")
    assert r.json()["user"] is None
    await victim.login()
    r = await victim.get("/whoami", cookie_header=f"__host-id={planted}; {COOKIE}={victim.cookie}")
    assert r.json()["user"] == "alice"
    assert await rig.app.store.get(rig.app.engine.keyring.hash_id(planted)) is None
