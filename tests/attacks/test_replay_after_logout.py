"""Replay after logout: a copy of the cookie taken before the user signed out is worthless, and
presenting it is reported (REPLAY_REVOKED) so the theft becomes visible."""

from __future__ import annotations

import pytest

from sessionwarden.events import EventKind
from sessionwarden.records import Tombstone

from .conftest import RigFactory, set_cookie_value

pytestmark = pytest.mark.anyio


async def test_replay_of_cookie_after_logout_is_refused_and_reported(make_rig: RigFactory) -> None:
    rig = make_rig()
    victim = rig.browser()
    await victim.login()
    stolen = victim.cookie
    assert stolen is not None
    r = await victim.post("/logout", data={"csrf_token": await victim.token()})
    assert r.status_code == 303
    assert victim.cookie is None and "clear-site-data" in r.headers

    thief = rig.browser(peer="203.0.113.66", ua="curl/8.5.0")
    thief.cookie = stolen
    r = await thief.get("/whoami")
    assert r.status_code == 200 and r.json()["user"] is None
    assert set_cookie_value(r) == ""
    replays = rig.events.of(EventKind.REPLAY_REVOKED)
    assert len(replays) == 1 and replays[0].user_id == "alice"
    assert replays[0].reason == "logout" and replays[0].client_ip == "203.0.113.66"
    tomb = await rig.app.store.get(rig.app.engine.keyring.hash_id(stolen))
    assert isinstance(tomb, Tombstone)

    # an unsafe request with the stolen cookie and a token taken before logout does nothing
    thief.cookie = stolen
    r = await thief.post(
        "/transfer", data={"to": "mallory", "amount": "1", "csrf_token": victim.tokens[0]}
    )
    assert r.status_code == 403
    assert rig.events.count(EventKind.REPLAY_REVOKED) == 2
