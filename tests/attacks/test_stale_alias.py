"""A rotated-out ID is remembered for ``tombstone_ttl`` after its rotation, then forgotten.

After a periodic rotation the old ID reaches the session for ``rotation_grace``; from then until
``tombstone_ttl`` after the rotation, presenting it is a replay (reported, and under the default
policy the session it became is revoked); after that it is an unknown ID like any other, on every
store, whether or not the store has purged it yet (Redis keeps a key a while past its deadline,
the other stores until the next purge). The purge then removes it everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionwarden.clock import ManualClock
from sessionwarden.events import EventKind
from sessionwarden.policy import Policy

from ..conftest import SECRET
from .conftest import EVERY_STORE, Browser, Rig, RigFactory, store_url_of

pytestmark = pytest.mark.anyio

ROTATE_EVERY = 60
GRACE = 5
REMEMBERED = 300


@pytest.fixture(params=EVERY_STORE)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every store, each against its real backend (the memory store included)."""
    yield from store_url_of(request.param, tmp_path)


async def _rotated(make_rig: RigFactory) -> tuple[Rig, ManualClock, Browser, str]:
    """A signed-in victim whose ID was just rotated periodically; returns the rotated-out ID."""
    clock = ManualClock()
    policy = Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("*",),
        rotate_every=ROTATE_EVERY,
        rotation_grace=GRACE,
        tombstone_ttl=REMEMBERED,
    )
    rig = make_rig(policy=policy, clock=clock)
    victim = rig.browser()
    await victim.login()
    old = victim.cookie
    assert old is not None
    clock.advance(ROTATE_EVERY + 1)
    assert await victim.user() == "alice"
    assert victim.cookie not in (None, old), "the periodic rotation did not happen"
    return rig, clock, victim, old


async def _present(rig: Rig, cookie: str) -> str | None:
    thief = rig.browser(peer="203.0.113.66")
    thief.cookie = cookie
    return await thief.user()


async def test_just_before_it_is_forgotten_a_rotated_out_id_is_a_replay(
    make_rig: RigFactory,
) -> None:
    rig, clock, victim, old = await _rotated(make_rig)
    clock.advance(REMEMBERED - 1)
    assert await _present(rig, old) is None
    assert rig.events.count(EventKind.REPLAY_ROTATED) == 1
    assert await victim.user() is None, "the session the replayed ID became must be revoked"


async def test_once_forgotten_a_rotated_out_id_is_unknown_on_every_store(
    make_rig: RigFactory,
) -> None:
    rig, clock, victim, old = await _rotated(make_rig)
    clock.advance(REMEMBERED)
    assert await _present(rig, old) is None
    assert rig.events.count(EventKind.REPLAY_ROTATED) == 0
    unknown = rig.events.of(EventKind.UNKNOWN_ID)
    assert unknown and unknown[-1].reason == "unknown-or-expired"
    assert await victim.user() == "alice", "a forgotten ID must not end the session"


async def test_the_purge_removes_a_forgotten_rotated_out_id(make_rig: RigFactory) -> None:
    rig, clock, victim, old = await _rotated(make_rig)
    store = rig.app.store
    assert (await store.stats(clock.now())).aliases == 1
    clock.advance(REMEMBERED - 1)
    await rig.app.purge()
    assert await store.get(rig.app.engine.keyring.hash_id(old)) is not None
    clock.advance(1)
    await rig.app.purge()
    assert await store.get(rig.app.engine.keyring.hash_id(old)) is None
    assert (await store.stats(clock.now())).aliases == 0
    assert await victim.user() == "alice"
