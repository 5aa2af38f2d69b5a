"""The per-user cap's three actions (``on_limit``), run against every store.

``evict-oldest`` (the default) is covered by the store contract; here: ``evict-lru`` evicts by
last recorded activity, ``reject`` refuses without writing anything (the session a sign-in
rotates from stays as it was), expired sessions and the session being rotated never count, and
parallel sign-ins at the cap never pass it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionwarden.records import RecordUpdate, SessionRecord, Tombstone
from sessionwarden.stores.base import CapAction, SessionLimitReached, SessionStore

from ..conftest import DISTRIBUTED_KINDS, STORE_KINDS, open_test_store
from .test_contract import HOUR, T0, keys, rec, tomb


@pytest.fixture(params=STORE_KINDS + DISTRIBUTED_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    with open_test_store(request.param, request, tmp_path) as s:
        yield s


def add(store: SessionStore, record: SessionRecord, cap: int, on_limit: CapAction) -> list[str]:
    """The keys evicted (their lineages: ``tests/stores/test_contract.py``)."""
    ended = store.insert(record, max_per_user=cap, tombstone_until=T0 + 2 * HOUR, on_limit=on_limit)
    return list(ended)


def sign_in(
    store: SessionStore, old: str, new: str, user: str, at: float, cap: int, on_limit: CapAction
) -> list[str] | None:
    """A sign-in as the core does it: the session at ``old`` moves to ``new`` as ``user``; the
    keys evicted."""
    ended = store.rotate(
        old,
        new,
        RecordUpdate(meta={"user_id": user, "last_seen": at, "created_at": at}),
        old_becomes=Tombstone(old, "rotated:login", at, T0 + 2 * HOUR, None),
        max_per_user=cap,
        tombstone_until=T0 + 2 * HOUR,
        on_limit=on_limit,
    )
    return None if ended is None else list(ended)


# -- evict-lru ------------------------------------------------------------------------------


def test_lru_evicts_the_least_recently_seen_not_the_oldest(store: SessionStore) -> None:
    add(store, rec("s0", created=T0, last_seen=T0 + 50), 0, "evict-lru")  # oldest, active
    add(store, rec("s1", created=T0 + 1, last_seen=T0 + 5), 0, "evict-lru")  # idle longest
    add(store, rec("s2", created=T0 + 2, last_seen=T0 + 30), 0, "evict-lru")
    evicted = add(store, rec("s3", created=T0 + 60, last_seen=T0 + 60), 3, "evict-lru")
    assert evicted == ["s1"]
    got = store.get("s1")
    assert isinstance(got, Tombstone) and got.reason == "evicted"
    assert keys(store.user_sessions("alice")) == ["s0", "s2", "s3"]


def test_lru_follows_touches(store: SessionStore) -> None:
    add(store, rec("a", created=T0), 0, "evict-lru")
    add(store, rec("b", created=T0 + 1), 0, "evict-lru")
    # A touch of the older session makes the other the least recently used.
    assert store.update("a", RecordUpdate(meta={"last_seen": T0 + 40}))
    assert add(store, rec("c", created=T0 + 50, last_seen=T0 + 50), 2, "evict-lru") == ["b"]
    assert keys(store.user_sessions("alice")) == ["a", "c"]


def test_lru_at_sign_in_by_rotation(store: SessionStore) -> None:
    add(store, rec("b1", "bob", created=T0, last_seen=T0 + 40), 0, "evict-lru")
    add(store, rec("b2", "bob", created=T0 + 1, last_seen=T0 + 2), 0, "evict-lru")
    add(store, rec("anon", None, created=T0 + 3), 0, "evict-lru")
    assert sign_in(store, "anon", "new", "bob", T0 + 60, 2, "evict-lru") == ["b2"]
    assert keys(store.user_sessions("bob")) == ["b1", "new"]


# -- reject ---------------------------------------------------------------------------------


def test_reject_refuses_an_insert_at_the_cap_and_writes_nothing(store: SessionStore) -> None:
    assert add(store, rec("a", created=T0), 2, "reject") == []
    assert add(store, rec("b", created=T0 + 1), 2, "reject") == []
    with pytest.raises(SessionLimitReached) as refused:
        add(store, rec("c", created=T0 + 2, last_seen=T0 + 2), 2, "reject")
    assert (refused.value.user_id, refused.value.limit) == ("alice", 2)
    assert store.get("c") is None
    assert keys(store.user_sessions("alice")) == ["a", "b"]
    assert store.update("a", RecordUpdate(set_data={"x": 1}))
    assert store.update("b", RecordUpdate(set_data={"x": 1}))


def test_reject_refuses_a_sign_in_and_leaves_the_session_it_came_from(
    store: SessionStore,
) -> None:
    add(store, rec("b1", "bob", created=T0), 0, "reject")
    add(store, rec("b2", "bob", created=T0 + 1), 0, "reject")
    add(store, rec("anon", None, created=T0 + 2, data={"next": "/home"}), 0, "reject")
    before = store.get("anon")
    with pytest.raises(SessionLimitReached):
        sign_in(store, "anon", "new", "bob", T0 + 10, 2, "reject")
    assert store.get("anon") == before  # not rotated, not a tombstone: still usable
    assert store.get("new") is None
    assert keys(store.user_sessions("bob")) == ["b1", "b2"]
    # Once one of bob's sessions ends, the same browser signs in.
    assert store.revoke("b1", tomb("b1", user="bob"))
    assert sign_in(store, "anon", "new", "bob", T0 + 20, 2, "reject") == []
    assert keys(store.user_sessions("bob")) == ["b2", "new"]


def test_reject_never_counts_the_session_being_rotated(store: SessionStore) -> None:
    add(store, rec("a", created=T0), 0, "reject")
    add(store, rec("b", created=T0 + 1), 0, "reject")
    # Signing in again in the browser of "b" (already alice's) moves it: still two sessions.
    assert sign_in(store, "b", "b2", "alice", T0 + 10, 2, "reject") == []
    assert keys(store.user_sessions("alice")) == ["a", "b2"]


def test_reject_never_counts_expired_sessions(store: SessionStore) -> None:
    add(store, rec("a", created=T0, expires=T0 + 100), 0, "reject")
    add(store, rec("b", created=T0 + 1, expires=T0 + 5), 0, "reject")  # idle past its deadline
    assert add(store, rec("c", created=T0 + 10, last_seen=T0 + 10), 2, "reject") == []
    with pytest.raises(SessionLimitReached):
        add(store, rec("d", created=T0 + 11, last_seen=T0 + 11), 2, "reject")


@pytest.mark.parametrize("on_limit", ["evict-oldest", "evict-lru"])
def test_evictions_never_count_expired_sessions(store: SessionStore, on_limit: CapAction) -> None:
    add(store, rec("a", created=T0, expires=T0 + 100), 0, on_limit)
    add(store, rec("b", created=T0 + 1, expires=T0 + 5), 0, on_limit)  # expired, not purged
    assert add(store, rec("c", created=T0 + 10, last_seen=T0 + 10), 2, on_limit) == []
    got = store.get("a")
    assert isinstance(got, SessionRecord)


def test_parallel_sign_ins_with_reject_never_pass_the_cap(store: SessionStore) -> None:
    """Eight browsers sign the same user in at once, twice each: exactly ``cap`` succeed."""
    cap = 3
    for n in range(16):
        add(store, rec(f"anon{n}", None, created=T0), 0, "reject")
    barrier = threading.Barrier(8)
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def browser(n: int) -> None:
        try:
            barrier.wait()
            for i in (n, n + 8):
                try:
                    sign_in(store, f"anon{i}", f"s{i}", "carol", T0 + 10, cap, "reject")
                    results[i] = "in"
                except SessionLimitReached:
                    results[i] = "refused"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=browser, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    signed_in = sorted(i for i, r in results.items() if r == "in")
    assert len(signed_in) == cap
    assert sorted(keys(store.user_sessions("carol"))) == sorted(f"s{i}" for i in signed_in)
    for i, outcome in results.items():
        anon = store.get(f"anon{i}")
        if outcome == "refused":
            assert isinstance(anon, SessionRecord) and anon.user_id is None
            assert store.get(f"s{i}") is None
        else:
            assert isinstance(anon, Tombstone)
