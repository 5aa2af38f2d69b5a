"""A CSRF token belongs to one session: a token taken from session A never authorizes a request
of session B (form field or header), and a token of a session that was logged out or rotated by
login is dead."""

from __future__ import annotations

import pytest

from sessionwarden.events import EventKind

from .conftest import RigFactory

pytestmark = pytest.mark.anyio


async def test_token_of_another_session_is_refused(make_rig: RigFactory) -> None:
    rig = make_rig()
    a = rig.browser()
    await a.login("alice")
    b = rig.browser(peer="198.51.100.8")
    await b.login("bob")
    token_a = await a.token()
    r = await b.post("/transfer", data={"to": "x", "amount": "1", "csrf_token": token_a})
    assert r.status_code == 403
    r = await b.post("/client", headers={"x-csrf-token": token_a, "accept": "application/json"})
    assert r.status_code == 403 and r.json() == {"error": "csrf", "reason": "bad-token"}
    assert [e.reason for e in rig.events.of(EventKind.CSRF_REFUSED)] == ["bad-token"] * 2
    # each session's own token works
    r = await b.post("/client", headers={"x-csrf-token": await b.token()})
    assert r.status_code == 200


async def test_anonymous_token_dies_at_login(make_rig: RigFactory) -> None:
    """Login renews the CSRF secret: a token read from the pre-login page is useless after."""
    rig = make_rig()
    b = rig.browser()
    before = await b.token()
    r = await b.post("/login", data={"username": "alice", "csrf_token": before})
    assert r.status_code == 303
    r = await b.post("/transfer", data={"to": "x", "amount": "1", "csrf_token": before})
    assert r.status_code == 403
    r = await b.post("/transfer", data={"to": "x", "amount": "1", "csrf_token": await b.token()})
    assert r.status_code == 200


async def test_tampered_and_malformed_tokens_are_refused(make_rig: RigFactory) -> None:
    rig = make_rig()
    b = rig.browser()
    await b.login()
    good = await b.token()
    flipped = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    cases: list[tuple[str | bytes, str]] = [
        (flipped, "bad-token"),
        ("A" * 86, "bad-token"),
        ("x" * 86, "malformed-token"),  # non-canonical base64 (trailing bits set)
        ("x" * 85, "malformed-token"),
        ("\xe9".encode("latin-1") * 86, "malformed-token"),
        (good + "=", "malformed-token"),
    ]
    for bad, reason in cases:
        r = await b.post("/client", headers={"x-csrf-token": bad, "accept": "application/json"})
        assert r.status_code == 403, bad
        assert r.json()["reason"] == reason, bad
    r = await b.post("/client", headers={"accept": "application/json"})
    assert r.status_code == 403 and r.json()["reason"] == "missing-token"
