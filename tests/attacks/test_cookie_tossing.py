"""Cookie tossing: a second ``__Host-id`` (planted by a sibling or a ``Path``-scoped shadow) sent
next to the real one, or a case variant of the name.

Two values for the name are refused outright (anonymous, cookie cleared on every domain and path
it could have been planted on, COOKIE_TOSSING event): the server cannot tell which one the
browser's owner meant, so every session presented in that request is ended too. Whatever a
cookie jar keeps afterwards is dead (see ``test_cookie_tossing_jar.py`` for a real jar). A case
variant is another cookie and is never read.
"""

from __future__ import annotations

import pytest

from sessionwarden import tokens
from sessionwarden.events import EventKind

from .conftest import COOKIE, RigFactory, set_cookie_value

pytestmark = pytest.mark.anyio


async def test_two_host_id_values_are_refused(make_rig: RigFactory) -> None:
    rig = make_rig()
    victim = rig.browser()
    await victim.login()
    real = victim.cookie
    attacker_id = tokens.new_session_id()
    for header in (
        f"{COOKIE}={attacker_id}; {COOKIE}={real}",
        f"{COOKIE}={real}; {COOKIE}={attacker_id}",
        f'{COOKIE}={real}; other=1; {COOKIE}="{attacker_id}"',
    ):
        r = await victim.get("/whoami", cookie_header=header)
        assert r.status_code == 200 and r.json()["user"] is None
        assert set_cookie_value(r) == "", "the tossed cookie must be cleared"
    assert rig.events.count(EventKind.COOKIE_TOSSING) == 3
    # the attacker's value is never adopted (nor stored); the real session ended with the
    # first tossing request, so a jar that kept either cookie holds nothing live
    assert await rig.app.store.get(rig.app.engine.keyring.hash_id(attacker_id)) is None
    assert [e.reason for e in rig.events.of(EventKind.REVOKED)] == ["cookie-tossing"]
    victim.cookie = real
    assert await victim.user() is None
    assert rig.events.count(EventKind.REPLAY_REVOKED) == 1


async def test_tossed_attackers_own_live_session_is_not_adopted(make_rig: RigFactory) -> None:
    """The attacker tosses a cookie holding a *valid* session of his own (login as mallory)."""
    rig = make_rig()
    attacker = rig.browser(peer="203.0.113.66")
    await attacker.login("mallory")
    victim = rig.browser()
    await victim.login("alice")
    real = victim.cookie
    r = await victim.get("/whoami", cookie_header=f"{COOKIE}={attacker.cookie}; {COOKIE}={real}")
    assert r.json()["user"] is None
    # neither cookie answers again: not the attacker's (left in a jar, it would be adopted)
    # and not the one that arrived next to it
    for alone in (attacker.cookie, real):
        r = await victim.get("/whoami", cookie_header=f"{COOKIE}={alone}")
        assert r.json()["user"] is None
    revoked = {e.user_id for e in rig.events.of(EventKind.REVOKED)}
    assert revoked == {"alice", "mallory"}


@pytest.mark.parametrize(
    "variant", ["__host-id", "__HOST-ID", "__Host-Id", "__Host-id_", "Host-id"]
)
async def test_case_variant_name_is_a_different_cookie(make_rig: RigFactory, variant: str) -> None:
    rig = make_rig()
    mallory = rig.browser(peer="203.0.113.66")
    await mallory.login("mallory")
    victim = rig.browser()
    await victim.login("alice")
    real = victim.cookie
    # variant alone: never read
    r = await victim.get("/whoami", cookie_header=f"{variant}={mallory.cookie}")
    assert r.json()["user"] is None
    # variant next to the real cookie: the real one wins, no tossing alarm for a different name
    before = rig.events.count(EventKind.COOKIE_TOSSING)
    r = await victim.get("/whoami", cookie_header=f"{variant}={mallory.cookie}; {COOKIE}={real}")
    assert r.json()["user"] == "alice"
    assert rig.events.count(EventKind.COOKIE_TOSSING) == before


async def test_blank_padded_name_is_the_same_cookie_and_counts_as_tossing(
    make_rig: RigFactory,
) -> None:
    """Browsers trim blanks around a cookie name, so `` __Host-id `` IS the session cookie: a
    second value under it next to the real one is tossing, not a harmless other cookie."""
    rig = make_rig()
    mallory = rig.browser(peer="203.0.113.66")
    await mallory.login("mallory")
    victim = rig.browser()
    await victim.login("alice")
    r = await victim.get(
        "/whoami", cookie_header=f"{COOKIE}={victim.cookie};  {COOKIE}\t={mallory.cookie}"
    )
    assert r.json()["user"] is None
    assert rig.events.count(EventKind.COOKIE_TOSSING) == 1


async def test_duplicate_identical_values_are_one_cookie(make_rig: RigFactory) -> None:
    """A browser sending the same value twice (two Cookie headers) is not an attack."""
    rig = make_rig()
    victim = rig.browser()
    await victim.login()
    r = await victim.get(
        "/whoami", cookie_header=f"{COOKIE}={victim.cookie}; {COOKIE}={victim.cookie}"
    )
    assert r.json()["user"] == "alice"
