"""Operation-bound step-up (``grant_step_up`` / ``require_step_up``) on both adapters: a highly
sensitive operation runs only with a grant for exactly that operation, given in this session to
this user, used once, within its lifetime; anything else is 403 ``step-up-required``."""

from __future__ import annotations

import pytest

from sessionwarden.core import StepUpRequired
from sessionwarden.core.session import STEP_UP_KEY
from sessionwarden.events import EventKind
from sessionwarden.policy import Policy

from .conftest import SECRET
from .two_adapters import KINDS, Client, client

pytestmark = pytest.mark.anyio
ADAPTERS = pytest.mark.parametrize("kind", KINDS)
OP = "transfer:bob:100.00"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _policy() -> Policy:
    return Policy(secret_keys=(SECRET,), allowed_hosts=("app.test",), rotate_every=0)


async def _post(c: Client, path: str, op: str) -> tuple[int, str]:
    token = await c.token()
    response = await c.request(
        "POST",
        f"{path}?op={op}",
        headers={
            "sec-fetch-site": "same-origin",
            "x-csrf-token": token,
            "accept": "application/json",
        },
    )
    return response.status_code, response.text


@ADAPTERS
async def test_without_a_grant_the_operation_is_refused(kind: str) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        status, body = await _post(c, "/sensitive", OP)
        assert status == 403
        assert '"step-up-required"' in body and '"operation-step-up"' in body
        token = await c.token()
        r = await c.request(
            "POST",
            f"/sensitive?op={OP}",
            headers={"sec-fetch-site": "same-origin", "x-csrf-token": token},
        )
        assert r.status_code == 403
        assert (
            r.text
            == "403 Forbidden\nPlease confirm this operation with your second factor first.\n"
        )


@ADAPTERS
async def test_a_grant_allows_exactly_one_run_of_exactly_that_operation(kind: str) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        assert await _post(c, "/step-up", OP) == (200, "granted")
        assert (await _post(c, "/sensitive", "transfer:bob:1000.00"))[0] == 403  # other amount
        assert (await _post(c, "/sensitive", "transfer:eve:100.00"))[0] == 403  # other payee
        assert await _post(c, "/sensitive", OP) == (200, "done")
        assert (await _post(c, "/sensitive", OP))[0] == 403, "a grant is used once"


@ADAPTERS
async def test_a_grant_is_bound_to_its_session(kind: str) -> None:
    with client(kind, _policy()) as alice:
        await alice.login()
        assert (await _post(alice, "/step-up", OP))[0] == 200
        granted_cookie = alice.cookie
        other = Client(alice.http, alice.recorder, alice.clock)  # same user, another device
        await other.login()
        assert other.cookie != granted_cookie
        assert (await _post(other, "/sensitive", OP))[0] == 403
        assert await _post(alice, "/sensitive", OP) == (200, "done")


@ADAPTERS
async def test_a_grant_rotates_the_id_and_a_copy_from_before_holds_nothing(kind: str) -> None:
    """Proving a further factor is an authentication (ASVS 7.2.4): the grant's response sets
    a new ID, and a cookie copied before it is no session at all (it never holds the grant)."""
    with client(kind, _policy()) as c:
        await c.login()
        before = c.cookie
        assert (await _post(c, "/step-up", OP))[0] == 200
        assert c.cookie and c.cookie != before
        copy = Client(c.http, c.recorder, c.clock, cookie=before)
        assert (await copy.request("GET", "/whoami")).json() == {"user": None}
        assert await _post(c, "/sensitive", OP) == (200, "done")


@ADAPTERS
async def test_a_grant_expires(kind: str) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        assert (await _post(c, "/step-up", OP))[0] == 200
        c.clock.advance(301)
        assert (await _post(c, "/sensitive", OP))[0] == 403


@ADAPTERS
async def test_a_grant_survives_a_new_id_for_the_same_user(kind: str) -> None:
    """Signing in again (a new ID) keeps the session's grant for the same user."""
    with client(kind, _policy()) as c:
        await c.login()
        assert (await _post(c, "/step-up", OP))[0] == 200
        await c.login()  # signs in again (the test app always signs in "alice")
        assert await _post(c, "/sensitive", OP) == (200, "done")


@ADAPTERS
async def test_anonymous_requests_need_to_sign_in(kind: str) -> None:
    with client(kind, _policy()) as c:
        status, body = await _post(c, "/sensitive", OP)
        assert status == 401 and '"not-authenticated"' in body


def test_grants_are_kept_server_side_as_digests() -> None:
    from sessionwarden.core import Session
    from sessionwarden.records import SessionRecord

    record = SessionRecord(
        key="k",
        created_at=0,
        last_seen=0,
        expires_at=999,
        rotated_at=0,
        csrf_secret="s",
        user_id="alice",
    )
    session = Session(record, now=10.0)
    for i in range(12):
        session.grant_step_up(f"op-{i}", ttl=100 + i)
    grants = session[STEP_UP_KEY]
    assert isinstance(grants, dict) and len(grants) == 8
    assert not any("op-" in digest for digest in grants)
    session.require_step_up("op-11")  # the newest are kept
    with pytest.raises(StepUpRequired):
        session.require_step_up("op-0")
    # Signing in as someone else drops the grant with the rest of alice's data.
    session.grant_step_up("op")
    session.login("bob")
    assert STEP_UP_KEY not in session
    with pytest.raises(StepUpRequired):
        session.require_step_up("op")
    # A grant names its user: one held for another user (written by a request of alice's
    # that ended after bob's sign-in) is refused too.
    session[STEP_UP_KEY] = {digest: ["alice", 999.0] for digest in grants}
    with pytest.raises(StepUpRequired):
        session.require_step_up("op-11")
    # Each grant, use and refusal is noted for the commit's audit events.
    act = session.pending_actions
    assert act is not None and act.step_ups is not None
    assert [(outcome, user, reason) for outcome, _, user, reason in act.step_ups[-3:]] == [
        ("granted", "alice", ""),
        ("refused", "bob", "no-grant"),
        ("refused", "bob", "other-user"),
    ]


def _step_up_events(c: Client) -> list[tuple[str, str, str | None, str]]:
    """(kind, reason, user, operation digest) of each step-up audit event, in order."""
    kinds = {EventKind.STEP_UP_GRANTED, EventKind.STEP_UP_USED, EventKind.STEP_UP_REFUSED}
    return [
        (e.kind.value, e.reason, e.user_id, str(e.detail.get("operation")))
        for e in c.recorder.events
        if e.kind in kinds
    ]


@ADAPTERS
async def test_grants_uses_and_refusals_are_each_one_audit_event(kind: str) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        ref = c.recorder.of(EventKind.LOGGED_IN)[-1].ref
        assert (await _post(c, "/sensitive", OP))[0] == 403
        assert (await _post(c, "/step-up", OP))[0] == 200
        assert (await _post(c, "/sensitive", OP))[0] == 200
        assert (await _post(c, "/sensitive", OP))[0] == 403  # used up
        events = _step_up_events(c)
        assert [(k, r, u) for k, r, u, _ in events] == [
            ("session.step_up.refused", "no-grant", "alice"),
            ("session.step_up.granted", "", "alice"),
            ("session.step_up.used", "", "alice"),
            ("session.step_up.refused", "no-grant", "alice"),
        ]
        # One operation, named by one digest throughout, never by its text.
        assert len({op for *_, op in events}) == 1
        assert all(OP not in str(e.to_dict()) for e in c.recorder.events)
        stepped = [e for e in c.recorder.events if e.kind.value.startswith("session.step_up.")]
        # The grant rotated the ID: the events name this session by its reference before the
        # grant and after it, the two linked by the rotation's event.
        (rotated,) = [e for e in c.recorder.of(EventKind.ROTATED) if e.reason == "explicit"]
        assert rotated.detail["previous"] == ref
        assert {e.ref for e in stepped} <= {ref, rotated.ref}


@ADAPTERS
async def test_an_expired_grant_is_refused_and_reported(kind: str) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        assert (await _post(c, "/step-up", OP))[0] == 200
        c.clock.advance(301)
        assert (await _post(c, "/sensitive", OP))[0] == 403
        assert [(k, r) for k, r, *_ in _step_up_events(c)] == [
            ("session.step_up.granted", ""),
            ("session.step_up.refused", "no-grant"),
        ]


@ADAPTERS
async def test_anonymous_step_up_attempts_report_no_step_up_event(kind: str) -> None:
    """Not signed in: a 401 asking to sign in, not a step-up decision."""
    with client(kind, _policy()) as c:
        assert (await _post(c, "/sensitive", OP))[0] == 401
        assert _step_up_events(c) == []


def test_a_refusal_is_logged_as_a_warning() -> None:
    import logging

    from sessionwarden.sinks import log_level_for

    assert log_level_for(EventKind.STEP_UP_REFUSED) == logging.WARNING
    assert log_level_for(EventKind.STEP_UP_GRANTED) == logging.INFO
    assert log_level_for(EventKind.STEP_UP_USED) == logging.INFO
