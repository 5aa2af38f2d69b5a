"""Replay of a rotated-out ID after its grace window.

A periodically rotated ID still reaches its session for ``rotation_grace`` seconds (requests in
flight). After that, the only one who can still present it is someone holding an old copy: under
the default policy (``monitor.on_high="revoke"``) the session it became is revoked, so a thief who
copied the cookie before a rotation loses it too, and REPLAY_ROTATED is reported.
"""

from __future__ import annotations

import pytest

from sessionwarden.clock import ManualClock
from sessionwarden.events import EventKind
from sessionwarden.policy import Policy
from sessionwarden.records import Tombstone

from ..conftest import SECRET
from .conftest import RigFactory

pytestmark = pytest.mark.anyio


async def test_rotated_id_works_within_grace_then_replay_revokes_successor(
    make_rig: RigFactory,
) -> None:
    clock = ManualClock()
    rig = make_rig(
        policy=Policy(
            secret_keys=(SECRET,), allowed_hosts=("*",), rotate_every=60, rotation_grace=5
        ),
        clock=clock,
    )
    victim = rig.browser()
    await victim.login()
    old = victim.cookie
    clock.advance(61)
    assert await victim.user() == "alice"  # periodic rotation happened on this request
    new = victim.cookie
    assert new is not None and new != old
    assert rig.events.count(EventKind.ROTATED) >= 2  # login + periodic

    # within the grace window the old ID still reaches the session (in-flight requests)
    clock.advance(2)
    late = rig.browser()
    late.cookie = old
    assert await late.user() == "alice"

    # after the grace window: replay -> refused, reported, and the successor is revoked
    clock.advance(10)
    thief = rig.browser(peer="203.0.113.66")
    thief.cookie = old
    assert await thief.user() is None
    replays = rig.events.of(EventKind.REPLAY_ROTATED)
    assert replays and replays[-1].reason == "rotated-out-id-after-grace"
    revoked = rig.events.of(EventKind.REVOKED)
    assert revoked and revoked[-1].reason == "policy:replay-of-rotated-id"
    succ = await rig.app.store.get(rig.app.engine.keyring.hash_id(new))
    assert isinstance(succ, Tombstone)
    victim.cookie = new
    assert await victim.user() is None, "the successor session must be revoked"


async def test_replay_under_log_only_policy_keeps_successor(make_rig: RigFactory) -> None:
    """With ``on_high="log"`` the replay is still refused and reported, the owner keeps going."""
    from sessionwarden.policy import MonitorPolicy

    clock = ManualClock()
    policy = Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("*",),
        rotate_every=60,
        rotation_grace=5,
        monitor=MonitorPolicy(on_high="log"),
    )
    rig = make_rig(policy=policy, clock=clock)
    victim = rig.browser()
    await victim.login()
    old = victim.cookie
    clock.advance(61)
    assert await victim.user() == "alice"
    clock.advance(30)
    thief = rig.browser(peer="203.0.113.66")
    thief.cookie = old
    assert await thief.user() is None
    assert rig.events.count(EventKind.REPLAY_ROTATED) == 1
    assert await victim.user() == "alice"
