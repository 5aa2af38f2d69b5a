"""One browser session is one ``session`` value in the logs, whatever its ID does.

``ref`` names the session's current ID (a prefix of its keyed hash) and changes at every
rotation; ``session`` is the keyed hash of the session's lineage and stays the same from the
anonymous session that asked for a login page's CSRF token, through sign-in, periodic rotation,
re-authentication and step-up, to its logout, and differs for another browser. Neither it nor
anything else in the log output (every logger, at DEBUG) is any secret the server handed out, in
any form a log line could carry it: raw, URL-encoded or base64.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionwarden.asgi import get_session
from sessionwarden.clock import ManualClock
from sessionwarden.core import StepUpRequired
from sessionwarden.events import Event, EventKind
from sessionwarden.monitor import JsonLogSink
from sessionwarden.policy import Policy
from sessionwarden.records import RecordUpdate, SessionRecord
from sessionwarden.sinks import EVENT_RECORD_ATTR

from ..conftest import SECRET
from .conftest import (
    EVERY_STORE,
    Browser,
    Rig,
    RigFactory,
    attacked_app,
    store_url_of,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=EVERY_STORE)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every store: the lineage travels in the record each of them keeps."""
    yield from store_url_of(request.param, tmp_path)


async def reauth(request: Request) -> Response:
    get_session(request).reauthenticated()
    return JSONResponse({"ok": True})


async def grant(request: Request) -> Response:
    get_session(request).grant_step_up("wire:bob:100")
    return JSONResponse({"ok": True})


async def wire(request: Request) -> Response:
    try:
        get_session(request).require_step_up("wire:bob:100")
    except StepUpRequired:
        return JSONResponse({"ok": False}, status_code=403)
    return JSONResponse({"ok": True})


def app_with_step_up() -> Starlette:
    app = attacked_app()
    app.router.routes.extend(
        [Route("/reauth", reauth), Route("/grant", grant), Route("/wire", wire)]
    )
    return app


def _rig(make_rig: RigFactory, clock: ManualClock) -> Rig:
    policy = Policy(secret_keys=(SECRET,), allowed_hosts=("*",), rotate_every=60, rotation_grace=5)
    logger = logging.getLogger("sessionwarden.test.correlation")
    logger.propagate = True
    return make_rig(
        policy=policy,
        clock=clock,
        sink=JsonLogSink(logger, level=logging.DEBUG),
        app=app_with_step_up(),
    )


async def _stored(rig: Rig, browser: Browser) -> SessionRecord:
    found = await rig.app.store.get(rig.app.engine.keyring.hash_id(browser.cookie or ""))
    assert isinstance(found, SessionRecord)
    return found


async def _whole_life(rig: Rig, b: Browser, clock: ManualClock) -> list[str]:
    """A session from its login page to its logout; returns every ``ref`` it had."""
    refs: list[str] = []
    await b.token()  # the anonymous session behind the login form
    refs.append((await _stored(rig, b)).key[:16])
    await b.login("alice")
    refs.append((await _stored(rig, b)).key[:16])
    assert await b.user() == "alice"
    clock.advance(61)  # past rotate_every: the next request rotates the ID
    assert (await b.get("/count")).status_code == 200
    refs.append((await _stored(rig, b)).key[:16])
    assert (await b.get("/reauth")).status_code == 200
    assert (await b.get("/grant")).status_code == 200
    assert (await b.get("/wire")).status_code == 200
    assert (await b.get("/wire")).status_code == 403  # the grant was used up
    refs.append((await _stored(rig, b)).key[:16])
    r = await b.post("/logout", data={"csrf_token": await b.token()})
    assert r.status_code == 303
    return refs


async def test_one_session_one_correlation_value_across_rotations(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = ManualClock()
    rig = _rig(make_rig, clock)
    alice, other = rig.browser(), rig.browser(peer="198.51.100.20")
    await other.login("bob")
    records: list[SessionRecord] = [await _stored(rig, other)]

    before = len(rig.events.events)
    refs = await _whole_life(rig, alice, clock)
    mine: list[Event] = rig.events.events[before:]

    kinds = {e.kind for e in mine}
    assert {
        EventKind.CREATED,
        EventKind.LOGGED_IN,
        EventKind.ROTATED,
        EventKind.STEP_UP_GRANTED,
        EventKind.STEP_UP_USED,
        EventKind.STEP_UP_REFUSED,
        EventKind.LOGGED_OUT,
    } <= kinds
    assert len(set(refs)) == len(refs), "the ID (and its ref) changed at every rotation"
    rotations = [e for e in mine if e.kind is EventKind.ROTATED]
    assert {e.reason for e in rotations} >= {"login", "periodic", "explicit"}
    correlation = {e.session for e in mine}
    assert len(correlation) == 1 and "" not in correlation
    other_values = {e.session for e in rig.events.events[:before]}
    assert len(other_values) == 1 and other_values.isdisjoint(correlation)

    # The JSON lines say the same: one value for all of alice's lines.
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name.endswith("test.correlation")
    ]
    alice_lines = [d for d in lines if d["ref"] in refs or d["detail"].get("previous") in refs]
    assert len(alice_lines) >= 8
    assert {d["session"] for d in alice_lines} == correlation

    # Nothing the server handed out appears anywhere in the log output.
    records.append(await _stored(rig, other))
    issued = set(alice.issued) | set(other.issued) | set(alice.tokens) | set(other.tokens)
    issued |= {r.csrf_secret for r in records} | {str(r.flags["lineage"]) for r in records}
    issued |= {r.key for r in records}
    assert len(issued) >= 10
    output = caplog.text + "\n".join(
        json.dumps(getattr(r, EVENT_RECORD_ATTR, None)) + r.getMessage() for r in caplog.records
    )
    for secret in issued:
        for form in (
            secret,
            quote(secret, safe=""),
            base64.b64encode(secret.encode()).decode(),
            base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="),
        ):
            assert form[:20] not in output


async def test_a_session_stored_without_lineage_keeps_one_value_from_then_on(
    make_rig: RigFactory,
) -> None:
    """A record written before lineages existed: its current key stands in, and the next
    write stores that, so the value survives its next rotations."""
    clock = ManualClock()
    rig = _rig(make_rig, clock)
    b = rig.browser()
    await b.login("alice")
    record = await _stored(rig, b)
    flags = {k: v for k, v in record.flags.items() if k != "lineage"}
    assert await rig.app.store.update(record.key, RecordUpdate(meta={"flags": flags}))
    assert "lineage" not in (await _stored(rig, b)).flags

    before = len(rig.events.events)
    clock.advance(61)
    assert (await b.get("/count")).status_code == 200  # a periodic rotation
    assert (await b.get("/grant")).status_code == 200  # an explicit one
    clock.advance(61)
    assert (await b.get("/count")).status_code == 200
    r = await b.post("/logout", data={"csrf_token": await b.token()})
    assert r.status_code == 303
    mine = rig.events.events[before:]
    assert sum(e.kind is EventKind.ROTATED for e in mine) == 3
    assert len({e.session for e in mine}) == 1 and mine[0].session


async def others(request: Request) -> Response:
    get_session(request).revoke_other_sessions()
    return JSONResponse({"ok": True})


async def password(request: Request) -> Response:
    get_session(request).credentials_changed()
    return JSONResponse({"ok": True})


async def test_sessions_ended_in_bulk_carry_their_own_correlation_values(
    make_rig: RigFactory,
) -> None:
    """Evicted beyond the cap, ended by "log out other devices", a credential change or an
    operator: the store ends them by the user's index, and each one's event still carries the
    value of the session it ended (the same as its sign-in's), never ``""``, never another's;
    so does the replay of an ended ID later (its tombstone keeps the session's lineage)."""
    app = attacked_app()
    app.router.routes.extend([Route("/others", others), Route("/password", password)])
    policy = Policy(secret_keys=(SECRET,), allowed_hosts=("*",), max_sessions_per_user=2)
    clock = ManualClock()
    rig = make_rig(policy=policy, clock=clock, app=app)

    value: dict[str, str] = {}  # the correlation value of each browser's session

    async def signed_in(name: str, user: str = "alice") -> Browser:
        clock.advance(1)  # "the oldest" is one
        b = rig.browser(peer=f"198.51.100.{len(value) + 1}")
        await b.login(user)
        value[name] = rig.events.of(EventKind.LOGGED_IN)[-1].session
        return b

    def ended(kind: EventKind, since: int) -> dict[str, str]:
        """Which browsers' sessions the events of ``kind`` since ``since`` ended (by value)."""
        found = [e for e in rig.events.events[since:] if e.kind is kind]
        by_value = {v: n for n, v in value.items()}
        assert all(e.session in by_value for e in found), [e.to_dict() for e in found]
        return {by_value[e.session]: e.reason for e in found}

    await signed_in("bob", "bob")
    a1, a2 = await signed_in("a1"), await signed_in("a2")
    assert len(set(value.values())) == 3 and "" not in value.values()

    mark = len(rig.events.events)
    a3 = await signed_in("a3")  # the cap: a1, the oldest, is evicted
    assert ended(EventKind.EVICTED, mark) == {"a1": "session-cap"}
    assert await a1.user() is None and await a3.user() == "alice"
    # a1's ID presented again: its tombstone names the session it was.
    assert ended(EventKind.REPLAY_REVOKED, mark) == {"a1": "evicted"}

    mark = len(rig.events.events)
    assert (await a2.get("/others")).status_code == 200
    assert ended(EventKind.REVOKED, mark) == {"a3": "user:revoke-others"}
    assert await a3.user() is None and await a2.user() == "alice"

    a4 = await signed_in("a4")
    mark = len(rig.events.events)
    assert (await a4.get("/password")).status_code == 200
    assert ended(EventKind.REVOKED, mark) == {"a2": "policy:credential-change"}
    (changed,) = [e for e in rig.events.events[mark:] if e.kind is EventKind.CREDENTIALS_CHANGED]
    assert changed.session == value["a4"]

    await signed_in("a5")
    mark = len(rig.events.events)
    assert len(await rig.app.revoke_user("alice")) == 2
    assert ended(EventKind.REVOKED, mark) == {"a4": "revoked:admin", "a5": "revoked:admin"}
    assert await a4.user() is None
    assert ended(EventKind.REPLAY_REVOKED, mark) == {"a4": "revoked:admin"}
