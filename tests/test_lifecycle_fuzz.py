"""The session lifecycle fuzzed statefully on every store (see :mod:`tests.lifecycle_machine`).

In every test run: a bounded number of examples per store. The long run (docs/reliability.md)
sets ``SESSIONWARDEN_FUZZ_EXAMPLES`` and ``SESSIONWARDEN_FUZZ_STEPS``; ``fuzz/lifecycle.py``
runs it and prints the totals.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from .conftest import drop_prefix, postgres_store_url, redis_or_skip, unique_prefix
from .lifecycle_machine import (
    ROTATE,
    TOTALS,
    LifecycleMachine,
    fuzz_setting,
    memory_store,
    sqlite_store,
)

ROTATE_DUE = ROTATE + 1
EXAMPLES = fuzz_setting("SESSIONWARDEN_FUZZ_EXAMPLES", 25)
STEPS = fuzz_setting("SESSIONWARDEN_FUZZ_STEPS", 30)


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=STEPS,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def _redis_store() -> tuple[str, Callable[[], None]]:
    prefix = unique_prefix()
    return f"{redis_or_skip()}?prefix={prefix}", lambda: drop_prefix(prefix)


def _postgres_store() -> tuple[str, Callable[[], None]]:
    return postgres_store_url(), lambda: None


OPENERS: dict[str, Callable[[], tuple[str, Callable[[], None]]]] = {
    "memory": memory_store,
    "sqlite": sqlite_store,
    "redis": _redis_store,
    "postgres": _postgres_store,
}


@pytest.mark.parametrize("kind", list(OPENERS))
def test_session_lifecycle_invariants_hold(kind: str) -> None:
    opener = OPENERS[kind]
    opener()[1]()  # skips (or fails under CI) here when the backend is absent
    networked = kind in ("redis", "postgres")
    machine = type(
        f"Lifecycle_{kind}",
        (LifecycleMachine,),
        {"open_store": staticmethod(opener), "cheap": networked},
    )
    examples = EXAMPLES if not networked else max(1, EXAMPLES * 2 // 5)
    before = dict(TOTALS)
    run_state_machine_as_test(machine, settings=_settings(examples))
    ran = {k: TOTALS[k] - before[k] for k in TOTALS}
    print(f"\nlifecycle fuzz [{kind}]: {ran}")
    assert ran["examples"] >= 1 and ran["steps"] >= 1
    assert ran["violations"] == 0


class _MemoryLifecycle(LifecycleMachine):
    open_store = staticmethod(memory_store)


def _replay(steps: Callable[[_MemoryLifecycle], None]) -> None:
    state = _MemoryLifecycle()
    try:
        steps(state)
    finally:
        state.teardown()


def test_logout_racing_an_explicit_rotation_ends_the_successor() -> None:
    """Found by the machine: a rotation and a logout begun on one ID, the rotation committed
    first, left the rotated session signed in (the logout found only the tombstone)."""

    def steps(state: _MemoryLifecycle) -> None:
        state.login(client=3, user="alice")
        state.concurrent(
            client=3, first="rotate", second="logout", step=0.0, between="nothing", swap=False
        )
        state.stored_state()
        state.replay_all()

    _replay(steps)


def test_logout_racing_a_periodic_rotation_ends_the_successor() -> None:
    def steps(state: _MemoryLifecycle) -> None:
        state.login(client=0, user="alice")
        state.concurrent(
            client=0, first="read", second="logout", step=31.0, between="nothing", swap=False
        )
        state.stored_state()
        state.replay_all()

    _replay(steps)


def test_a_request_in_flight_across_the_idle_deadline_does_not_revive_its_session() -> None:
    """Found by the machine: two reads begun before the idle deadline and committed after it
    rotated the expired session, and the new ID answered as signed in."""

    def steps(state: _MemoryLifecycle) -> None:
        state.login(client=0, user="alice")
        state.concurrent(
            client=0, first="read", second="read", step=101.0, between="nothing", swap=False
        )
        state.stored_state()
        state.replay_all()

    _replay(steps)


def test_log_out_other_devices_racing_a_periodic_rotation_still_ends_them() -> None:
    """Found by the machine: "log out other devices" on a request whose periodic rotation lost
    the race to a concurrent request's was dropped, leaving the other devices signed in."""

    def steps(state: _MemoryLifecycle) -> None:
        state.login(client=0, user="bob")
        state.login(client=2, user="bob")
        state.advance(ROTATE_DUE)
        state.concurrent(
            client=0, first="revoke_others", second="read", step=0.0, between="nothing", swap=True
        )
        state.stored_state()
        state.replay_all()

    _replay(steps)


def test_log_out_other_devices_losing_to_an_explicit_rotation_leaves_no_copy_alive() -> None:
    """ "Log out other devices" rotates the ID; a concurrent request on the same ID (a stolen
    copy of the cookie) that rotated it first must not keep its new ID, and the other devices
    are still signed out."""

    def steps(state: _MemoryLifecycle) -> None:
        state.login(client=0, user="alice")
        state.login(client=1, user="alice")
        state.concurrent(
            client=0,
            first="rotate",
            second="revoke_others",
            step=0.0,
            between="nothing",
            swap=False,
        )
        state.stored_state()
        state.replay_all()

    _replay(steps)


def test_log_out_other_devices_losing_to_a_login_leaves_no_copy_alive() -> None:
    def steps(state: _MemoryLifecycle) -> None:
        state.login(client=0, user="alice")
        state.login(client=1, user="alice")
        state.concurrent(
            client=0, first="login", second="revoke_others", step=0.0, between="nothing", swap=False
        )
        state.stored_state()
        state.replay_all()

    _replay(steps)


def test_a_login_losing_to_log_out_other_devices_does_not_keep_the_old_id() -> None:
    def steps(state: _MemoryLifecycle) -> None:
        state.login(client=0, user="alice")
        state.login(client=1, user="bob")
        state.concurrent(
            client=0, first="login", second="revoke_others", step=0.0, between="nothing", swap=True
        )
        state.stored_state()
        state.replay_all()

    _replay(steps)
