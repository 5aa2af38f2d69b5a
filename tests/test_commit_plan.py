"""The commit's decision, as a pure function of the session, the time and the policy."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sessionwarden.core import CommitPlan, Session, plan_commit
from sessionwarden.policy import Policy
from sessionwarden.records import SessionRecord

from .conftest import SECRET

POLICY = Policy(secret_keys=(SECRET,), rotate_every=900, touch_interval=60)
NOW = 10_000.0


def record(*, last_seen: float = NOW - 1, rotated_at: float = NOW - 1) -> SessionRecord:
    return SessionRecord(
        key="k" * 64,
        created_at=NOW - 100,
        last_seen=last_seen,
        expires_at=NOW + 1000,
        rotated_at=rotated_at,
        csrf_secret="s",
        user_id="alice",
        data={"cart": [1], "n": 1},
    )


def _read_cart(s: Session) -> None:
    s.get("cart")


def _append_cart(s: Session) -> None:
    cart = s.get("cart")
    assert isinstance(cart, list)
    cart.append(2)


CASES: list[tuple[str, Callable[[], Session], Callable[[Session], object], CommitPlan]] = [
    ("anonymous, nothing asked", lambda: Session(None, NOW), lambda s: None, CommitPlan.NOTHING),
    (
        "anonymous writes",
        lambda: Session(None, NOW),
        lambda s: s.update({"a": 1}),
        CommitPlan.CREATE,
    ),
    ("anonymous form token", lambda: Session(None, NOW), Session.csrf_token, CommitPlan.CREATE),
    ("anonymous logs in", lambda: Session(None, NOW), lambda s: s.login("a"), CommitPlan.CREATE),
    ("live, nothing asked", lambda: Session(record(), NOW), lambda s: None, CommitPlan.NOTHING),
    ("live, a list read", lambda: Session(record(), NOW), _read_cart, CommitPlan.NOTHING),
    ("live, a list changed", lambda: Session(record(), NOW), _append_cart, CommitPlan.UPDATE),
    (
        "live, a key set",
        lambda: Session(record(), NOW),
        lambda s: s.update({"n": 2}),
        CommitPlan.UPDATE,
    ),
    (
        "live, a key deleted",
        lambda: Session(record(), NOW),
        lambda s: s.pop("n"),
        CommitPlan.UPDATE,
    ),
    (
        "live, others ended: a new ID too",
        lambda: Session(record(), NOW),
        Session.revoke_other_sessions,
        CommitPlan.ROTATE,
    ),
    (
        "through an alias, others ended: signed out everywhere",
        lambda: Session(record(), NOW, via_alias=True),
        Session.revoke_other_sessions,
        CommitPlan.LOGOUT,
    ),
    (
        "touch due",
        lambda: Session(record(last_seen=NOW - 60), NOW),
        lambda s: None,
        CommitPlan.TOUCH,
    ),
    (
        "rotation due",
        lambda: Session(record(rotated_at=NOW - 900), NOW),
        lambda s: None,
        CommitPlan.ROTATE_PERIODIC,
    ),
    (
        "through an alias: no touch, no rotation",
        lambda: Session(record(last_seen=NOW - 600, rotated_at=NOW - 900), NOW, via_alias=True),
        lambda s: None,
        CommitPlan.NOTHING,
    ),
    ("login", lambda: Session(record(), NOW), lambda s: s.login("alice"), CommitPlan.ROTATE),
    (
        "login of another user: the signed-in one's session ends",
        lambda: Session(record(), NOW),
        lambda s: s.login("bob"),
        CommitPlan.LOGOUT_AND_CREATE,
    ),
    (
        "logout, then a login",
        lambda: Session(record(), NOW),
        lambda s: (s.logout(), s.login("bob")),
        CommitPlan.LOGOUT_AND_CREATE,
    ),
    (
        "a login, then logout",
        lambda: Session(record(), NOW),
        lambda s: (s.login("bob"), s.logout()),
        CommitPlan.LOGOUT,
    ),
    ("explicit rotation", lambda: Session(record(), NOW), Session.rotate, CommitPlan.ROTATE),
    ("step-up", lambda: Session(record(), NOW), Session.reauthenticated, CommitPlan.ROTATE),
    ("logout", lambda: Session(record(), NOW), Session.logout, CommitPlan.LOGOUT),
    ("logout of nothing", lambda: Session(None, NOW), Session.logout, CommitPlan.LOGOUT),
    (
        "logout, then a value",
        lambda: Session(record(), NOW),
        lambda s: (s.logout(), s.__setitem__("flash", "bye")),
        CommitPlan.LOGOUT_AND_CREATE,
    ),
    (
        "a value, then logout",
        lambda: Session(record(), NOW),
        lambda s: (s.__setitem__("flash", "bye"), s.logout()),
        CommitPlan.LOGOUT,
    ),
    (
        "logout wins over a due rotation",
        lambda: Session(record(rotated_at=NOW - 900), NOW),
        Session.logout,
        CommitPlan.LOGOUT,
    ),
]


@pytest.mark.parametrize(("name", "make", "act", "expected"), CASES, ids=[c[0] for c in CASES])
def test_plan(
    name: str,
    make: Callable[[], Session],
    act: Callable[[Session], object],
    expected: CommitPlan,
) -> None:
    session = make()
    act(session)
    assert plan_commit(session, NOW, POLICY) is expected
    assert plan_commit(session, NOW, POLICY) is expected  # pure: asking twice changes nothing


def test_no_periodic_rotation_when_turned_off() -> None:
    policy = Policy(secret_keys=(SECRET,), rotate_every=0, touch_interval=60)
    session = Session(record(rotated_at=0, last_seen=NOW - 1), NOW)
    assert plan_commit(session, NOW, policy) is CommitPlan.NOTHING
