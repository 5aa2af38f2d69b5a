"""The store contract (``sessionwarden.stores.base``), run against every store.

Every test goes through the public interface only and asserts what a caller can observe, so the
same suite holds the memory store (the reference), SQLite and Redis to identical behaviour.
"""

from __future__ import annotations

import enum
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sessionwarden.records import JSON, Alias, RecordUpdate, SessionRecord, Tombstone
from sessionwarden.stores.base import Ended, SessionStore, StoreStats

from ..conftest import DISTRIBUTED_KINDS, STORE_KINDS, open_test_store


@pytest.fixture(params=STORE_KINDS + DISTRIBUTED_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    """Every store, the Redis Cluster and Sentinel ones included."""
    with open_test_store(request.param, request, tmp_path) as s:
        yield s


T0 = 1_700_000_000.0
HOUR = 3600.0


def rec(
    key: str,
    user: str | None = "alice",
    *,
    created: float = T0,
    expires: float = T0 + HOUR,
    data: dict[str, JSON] | None = None,
    **fields: Any,
) -> SessionRecord:
    return SessionRecord(
        key=key,
        created_at=created,
        last_seen=fields.pop("last_seen", created),
        expires_at=expires,
        rotated_at=fields.pop("rotated_at", created),
        csrf_secret=fields.pop("csrf_secret", f"csrf-{key}"),
        user_id=user,
        data=dict(data or {}),
        **fields,
    )


def put(store: SessionStore, record: SessionRecord, cap: int = 0) -> Ended:
    return store.insert(record, max_per_user=cap, tombstone_until=T0 + 2 * HOUR)


def keys(records: list[SessionRecord]) -> list[str]:
    return [r.key for r in records]


def tomb(key: str, reason: str = "logout", user: str | None = "alice") -> Tombstone:
    return Tombstone(key=key, reason=reason, at=T0 + 10, until=T0 + 2 * HOUR, user_id=user)


def alias(key: str, target: str, user: str | None = "alice") -> Alias:
    return Alias(
        key=key, target=target, at=T0 + 10, grace_until=T0 + 40, until=T0 + HOUR, user_id=user
    )


def rotate(
    store: SessionStore,
    old: str,
    new: str,
    update: RecordUpdate | None = None,
    *,
    becomes: Alias | Tombstone | None = None,
    cap: int = 0,
    activity_max: int = 0,
) -> Ended | None:
    return store.rotate(
        old,
        new,
        update or RecordUpdate(),
        old_becomes=becomes if becomes is not None else alias(old, new),
        max_per_user=cap,
        tombstone_until=T0 + 2 * HOUR,
        activity_max=activity_max,
    )


# -- get ----------------------------------------------------------------------------------------


def test_the_start_up_check_passes_on_a_store_that_answers(store: SessionStore) -> None:
    check = getattr(store, "check", None)
    assert callable(check)
    check()


def test_get_missing_is_none(store: SessionStore) -> None:
    assert store.get("nope") is None


def test_insert_then_get_round_trips_every_field(store: SessionStore) -> None:
    record = SessionRecord(
        key="k1",
        created_at=T0 + 0.1,
        last_seen=T0 + 0.2,
        expires_at=T0 + 1800.3,
        rotated_at=T0 + 0.4,
        csrf_secret="s3cr3t",
        user_id="alice",
        auth_at=T0 + 0.5,
        client_ip="2001:db8::1",
        user_agent="Mozilla/5.0 (X11)",
        fingerprint={"ua": "abc", "ip": [1, 2], "tz": None},
        flags={"mfa": True, "level": 2},
        data={"cart": [1, 2, 3], "theme": "dark"},
    )
    assert put(store, record) == {}
    assert store.get("k1") == record


def test_anonymous_record_with_defaults_round_trips(store: SessionStore) -> None:
    record = rec("anon", None)
    put(store, record)
    got = store.get("anon")
    assert got == record
    assert isinstance(got, SessionRecord)
    assert got.user_id is None and got.auth_at is None and got.fingerprint is None
    assert got.flags == {} and got.data == {}


def test_floats_round_trip_exactly(store: SessionStore) -> None:
    created = 1_700_000_000.123456789
    record = rec(
        "f",
        created=created,
        expires=created + 0.1 + 0.2,
        last_seen=created + 1e-6,
        auth_at=5e-324,
        data={"pi": 3.141592653589793, "tiny": 1e-300, "big": 1.7976931348623157e308},
    )
    put(store, record)
    got = store.get("f")
    assert isinstance(got, SessionRecord)
    assert got.created_at == created
    assert got.expires_at == created + 0.1 + 0.2
    assert got.last_seen == created + 1e-6
    assert got.auth_at == 5e-324
    assert got.data == record.data


def test_json_round_trip_of_unicode_and_nested_data(store: SessionStore) -> None:
    data: dict[str, JSON] = {
        "ünïcødé": "日本語 ☃ \U0001f600 \u202e",
        "quotes": "'\"\\ \n\t\x00",
        "nested": {"a": [1, -2, 2.5, None, True, False, {"b": [], "c": {}}], "d": {"e": {"f": 0}}},
        "": "empty key",
        "big": 2**62,
    }
    put(store, rec("j", "ユーザー", data=data, user_agent="агент ✓"))
    got = store.get("j")
    assert isinstance(got, SessionRecord)
    assert got.data == data
    assert got.user_id == "ユーザー"
    assert got.user_agent == "агент ✓"
    assert keys(store.user_sessions("ユーザー")) == ["j"]


def _odd_values() -> dict[str, Any]:
    """Values the JSON encoder takes but gives back otherwise: a tuple, ``str``/``int``
    subclasses (``Markup``, an enum member), keys that are not strings, nested."""
    from markupsafe import Markup

    return {
        "pair": ("message", Markup("<b>hi</b>")),
        "flashes": [("info", Markup("saved")), ("error", "plain")],
        "level": _Level.HIGH,
        "markup": Markup("<i>x</i>"),
        "keys": {1: "one", None: "none", 2.5: [()]},
    }


class _Level(int, enum.Enum):
    HIGH = 3


def _typed(value: Any) -> Any:
    """``value`` with every type spelled out, so that a tuple or a subclass cannot pass for
    what it looks like (``Markup("a") == "a"``)."""
    if isinstance(value, dict):
        return {(type(k).__name__, k): _typed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_typed(v) for v in value])
    return (type(value).__name__, value)


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def test_every_store_gives_back_what_json_does(store: SessionStore) -> None:
    """The memory store gives back what a JSON round trip does, as every other store does:
    through an insert, an update and a rotation, and on every later read."""
    odd = _odd_values()
    put(store, rec("odd", data=odd))
    for _ in range(2):  # a read cache's copy too
        got = store.get("odd")
        assert isinstance(got, SessionRecord)
        assert _typed(got.data) == _typed(_as_json(odd))
    assert store.update("odd", RecordUpdate(set_data={"later": odd["pair"], "n": _Level.HIGH}))
    rotate(store, "odd", "odd2", RecordUpdate(set_data={"rotated": odd["flashes"]}))
    for _ in range(2):
        got = store.get("odd2")
        assert isinstance(got, SessionRecord)
        assert _typed(got.data) == _typed(
            _as_json({**odd, "later": odd["pair"], "n": 3, "rotated": odd["flashes"]})
        )


def test_get_returns_expired_records(store: SessionStore) -> None:
    record = rec("old", expires=T0 - 1)
    put(store, record)
    assert store.get("old") == record


def test_the_inserted_object_is_not_kept(store: SessionStore) -> None:
    record = rec("k", data={"a": [1]})
    put(store, record)
    record.data["a"] = [2]  # the caller's object is not the stored one
    record.flags["x"] = 1
    assert store.get("k") == rec("k", data={"a": [1]})
    # (What get returns may be shared between callers; none of them changes it: see
    # SessionStore.get and tests/test_engine.py::test_in_place_changes_stay_in_their_request...)


def test_get_of_alias_and_tombstone(store: SessionStore) -> None:
    put(store, rec("a"))
    put(store, rec("t"))
    assert rotate(store, "a", "a2", becomes=alias("a", "a2")) == {}
    assert store.revoke("t", tomb("t"))
    assert store.get("a") == alias("a", "a2")
    assert store.get("t") == tomb("t")


# -- insert and the per-user cap ----------------------------------------------------------------


def test_insert_cap_evicts_oldest_into_tombstones(store: SessionStore) -> None:
    for i in range(3):
        assert put(store, rec(f"s{i}", created=T0 + i), cap=3) == {}
    newest = rec("s3", created=T0 + 3, last_seen=T0 + 7)
    assert store.insert(newest, max_per_user=3, tombstone_until=T0 + 99) == {"s0": "s0"}
    # A record without a stored lineage (written before lineages): its key stands in.
    assert store.get("s0") == Tombstone("s0", "evicted", T0 + 7, T0 + 99, "alice", "s0")
    assert keys(store.user_sessions("alice")) == ["s1", "s2", "s3"]


def test_insert_cap_evicts_several_oldest_first(store: SessionStore) -> None:
    for i in (4, 2, 0, 3, 1):
        put(store, rec(f"s{i}", created=T0 + i))
    evicted = put(store, rec("new", created=T0 + 10), cap=2)
    assert evicted == {f"s{i}": f"s{i}" for i in range(4)}
    assert list(evicted) == ["s0", "s1", "s2", "s3"]  # oldest first
    assert keys(store.user_sessions("alice")) == ["s4", "new"]
    for k in evicted:
        got = store.get(k)
        assert isinstance(got, Tombstone) and got.reason == "evicted"


def test_insert_never_evicts_the_new_session(store: SessionStore) -> None:
    put(store, rec("a", created=T0 + 5))
    put(store, rec("b", created=T0 + 6))
    # A new session whose created_at is the oldest (clock step) still survives.
    assert put(store, rec("new", created=T0), cap=2) == {"a": "a"}
    assert keys(store.user_sessions("alice")) == ["new", "b"]


@pytest.mark.parametrize("cap", [0, -1])
def test_insert_cap_zero_or_less_is_unlimited(store: SessionStore, cap: int) -> None:
    for i in range(12):
        assert put(store, rec(f"s{i}", created=T0 + i), cap=cap) == {}
    assert len(store.user_sessions("alice")) == 12


def test_cap_counts_only_that_users_live_records(store: SessionStore) -> None:
    put(store, rec("b1", "bob", created=T0))
    put(store, rec("anon1", None, created=T0))
    put(store, rec("a1", created=T0 + 1))
    put(store, rec("a2", created=T0 + 2))
    store.revoke("a2", tomb("a2"))
    assert put(store, rec("a3", created=T0 + 3), cap=2) == {}
    assert put(store, rec("anon2", None, created=T0 + 4), cap=1) == {}
    assert keys(store.user_sessions("bob")) == ["b1"]
    assert isinstance(store.get("anon1"), SessionRecord)
    assert keys(store.user_sessions("alice")) == ["a1", "a3"]


def test_evicted_session_cannot_be_updated(store: SessionStore) -> None:
    put(store, rec("a", created=T0))
    put(store, rec("b", created=T0 + 1), cap=1)
    assert store.update("a", RecordUpdate(set_data={"x": 1})) is False
    assert isinstance(store.get("a"), Tombstone)


def test_parallel_inserts_never_exceed_cap(store: SessionStore) -> None:
    errors: list[BaseException] = []

    def login(n: int) -> None:
        try:
            for i in range(15):
                put(store, rec(f"t{n}-{i}", created=T0 + i + n / 10), cap=3)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=login, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.user_sessions("alice")) == 3


# -- rotate ---------------------------------------------------------------------------------


def test_rotate_carries_stored_data_plus_update(store: SessionStore) -> None:
    put(store, rec("old", data={"a": 1, "gone": 0}))
    stale = store.get("old")  # what the rotating request read
    assert isinstance(stale, SessionRecord)
    # Another request writes to the old session between that read and the rotation.
    assert store.update("old", RecordUpdate(set_data={"b": 2}))
    update = RecordUpdate(
        meta={"last_seen": T0 + 9, "rotated_at": T0 + 9, "csrf_secret": "fresh"},
        set_data={"c": 3},
        del_data=("gone",),
    )
    assert rotate(store, "old", "new", update) == {}
    new = store.get("new")
    assert isinstance(new, SessionRecord)
    assert new.key == "new"
    assert new.data == {"a": 1, "b": 2, "c": 3}
    assert (new.last_seen, new.rotated_at, new.csrf_secret) == (T0 + 9, T0 + 9, "fresh")
    assert (new.created_at, new.expires_at, new.user_id) == (T0, T0 + HOUR, "alice")
    assert store.get("old") == alias("old", "new")
    assert keys(store.user_sessions("alice")) == ["new"]


def test_rotate_old_can_become_a_tombstone(store: SessionStore) -> None:
    put(store, rec("old"))
    stone = tomb("old", "rotated")
    assert rotate(store, "old", "new", becomes=stone) == {}
    assert store.get("old") == stone
    assert isinstance(store.get("new"), SessionRecord)


@pytest.mark.parametrize("state", ["missing", "tombstone", "alias"])
def test_rotate_of_non_live_key_returns_none_and_writes_nothing(
    store: SessionStore, state: str
) -> None:
    if state != "missing":
        put(store, rec("old", data={"a": 1}))
        if state == "tombstone":
            store.revoke("old", tomb("old"))
        else:
            rotate(store, "old", "elsewhere")
    before = store.get("old")
    result = rotate(
        store,
        "old",
        "new",
        RecordUpdate(set_data={"x": 1}, activity={"ev": "rotate"}),
        becomes=tomb("old", "rotated"),
        cap=1,
        activity_max=5,
    )
    assert result is None
    assert store.get("old") == before
    assert store.get("new") is None
    assert store.activity("new") == []


def test_rotate_moves_user_index_and_handles_login(store: SessionStore) -> None:
    put(store, rec("anon", None))
    login = RecordUpdate(meta={"user_id": "bob", "auth_at": T0 + 5})
    assert rotate(store, "anon", "authed", login, becomes=tomb("anon", "login", None)) == {}
    got = store.get("authed")
    assert isinstance(got, SessionRecord)
    assert (got.user_id, got.auth_at) == ("bob", T0 + 5)
    assert keys(store.user_sessions("bob")) == ["authed"]


def test_rotate_enforces_cap_and_never_evicts_new_key(store: SessionStore) -> None:
    put(store, rec("b1", "bob", created=T0 + 1))
    put(store, rec("b2", "bob", created=T0 + 2))
    put(store, rec("anon", None, created=T0 - 100))  # the oldest of all, once it is bob's
    login = RecordUpdate(meta={"user_id": "bob", "last_seen": T0 + 50})
    evicted = store.rotate(
        "anon",
        "authed",
        login,
        old_becomes=tomb("anon", "login", None),
        max_per_user=2,
        tombstone_until=T0 + 77,
    )
    assert evicted == {"b1": "b1"}
    assert store.get("b1") == Tombstone("b1", "evicted", T0 + 50, T0 + 77, "bob", "b1")
    assert keys(store.user_sessions("bob")) == ["authed", "b2"]


def test_rotate_carries_activity_and_appends(store: SessionStore) -> None:
    put(store, rec("old"))
    for i in range(3):
        store.update("old", RecordUpdate(activity={"n": i}), activity_max=3)
    assert rotate(store, "old", "new", RecordUpdate(activity={"n": 3}), activity_max=3) == {}
    assert store.activity("new") == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert store.activity("old") == []
    # Without activity_max the update's entry is not recorded, but the trail still moves.
    assert rotate(store, "new", "newer", RecordUpdate(activity={"n": 4})) == {}
    assert store.activity("newer") == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_rotate_starts_a_trail_when_there_was_none(store: SessionStore) -> None:
    put(store, rec("old"))
    rotate(store, "old", "new", RecordUpdate(activity={"ev": "login"}), activity_max=2)
    assert store.activity("new") == [{"ev": "login"}]


# -- update ---------------------------------------------------------------------------------


def test_update_writes_only_the_named_keys(store: SessionStore) -> None:
    put(store, rec("k", data={"keep": 1, "drop": 2}))
    # Two requests that each read the session and changed different keys: both survive.
    assert store.update("k", RecordUpdate(set_data={"a": "first"}))
    assert store.update("k", RecordUpdate(set_data={"b": "second"}, del_data=("drop", "absent")))
    assert store.update("k", RecordUpdate(meta={"last_seen": T0 + 30, "expires_at": T0 + 999}))
    got = store.get("k")
    assert isinstance(got, SessionRecord)
    assert got.data == {"keep": 1, "a": "first", "b": "second"}
    assert (got.last_seen, got.expires_at) == (T0 + 30, T0 + 999)
    assert (got.created_at, got.csrf_secret, got.user_id) == (T0, "csrf-k", "alice")


def test_update_of_meta_fields(store: SessionStore) -> None:
    put(store, rec("k"))
    meta: dict[str, JSON] = {
        "client_ip": "10.0.0.1",
        "user_agent": "curl/8",
        "fingerprint": {"h": "x"},
        "flags": {"elevated": True},
        "auth_at": T0 + 1,
    }
    assert store.update("k", RecordUpdate(meta=meta))
    got = store.get("k")
    assert isinstance(got, SessionRecord)
    assert got.meta() | meta == got.meta()


def test_empty_update_of_live_record_is_true(store: SessionStore) -> None:
    put(store, rec("k"))
    assert store.update("k", RecordUpdate()) is True
    assert store.update("k", RecordUpdate(activity={"x": 1})) is True  # activity_max 0
    assert store.get("k") == rec("k")
    assert store.activity("k") == []


def test_parallel_updates_of_different_keys_all_survive(store: SessionStore) -> None:
    put(store, rec("k"))
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(20):
                assert store.update("k", RecordUpdate(set_data={f"w{n}-{i}": i}))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = store.get("k")
    assert isinstance(got, SessionRecord)
    assert got.data == {f"w{n}-{i}": i for n in range(4) for i in range(20)}


def test_update_after_revoke_is_false_and_keeps_tombstone(store: SessionStore) -> None:
    put(store, rec("k", data={"a": 1}))
    stone = tomb("k")
    assert store.revoke("k", stone)
    # A request in flight during logout finishes: it must not bring the session back.
    late = RecordUpdate(
        meta={"last_seen": T0 + 60, "expires_at": T0 + 9 * HOUR},
        set_data={"a": 2},
        activity={"ev": "late"},
    )
    assert store.update("k", late, activity_max=5) is False
    assert store.get("k") == stone
    assert store.activity("k") == []
    assert store.user_sessions("alice") == []


def test_update_of_alias_or_missing_is_false(store: SessionStore) -> None:
    put(store, rec("k"))
    rotate(store, "k", "k2")
    assert store.update("k", RecordUpdate(set_data={"a": 1})) is False
    assert store.get("k") == alias("k", "k2")
    assert store.update("missing", RecordUpdate(set_data={"a": 1})) is False
    assert store.update("missing", RecordUpdate()) is False
    assert store.get("missing") is None


def test_user_index_follows_user_id_changes(store: SessionStore) -> None:
    put(store, rec("k", None))
    assert store.update("k", RecordUpdate(meta={"user_id": "alice"}))
    assert keys(store.user_sessions("alice")) == ["k"]
    assert store.update("k", RecordUpdate(meta={"user_id": "bob"}))
    assert store.user_sessions("alice") == []
    assert keys(store.user_sessions("bob")) == ["k"]
    assert store.revoke_user("alice", reason="x", at=T0, until=T0 + 1) == {}
    assert store.update("k", RecordUpdate(meta={"user_id": None}))
    assert store.user_sessions("bob") == []
    assert isinstance(store.get("k"), SessionRecord)


# -- activity -------------------------------------------------------------------------------


def test_activity_is_a_bounded_ring_oldest_first(store: SessionStore) -> None:
    put(store, rec("k"))
    assert store.activity("k") == []
    for i in range(7):
        assert store.update("k", RecordUpdate(activity={"n": i, "ip": "ü"}), activity_max=4)
    assert store.activity("k") == [{"n": i, "ip": "ü"} for i in (3, 4, 5, 6)]
    # A smaller bound keeps the newest entries.
    store.update("k", RecordUpdate(activity={"n": 7}), activity_max=2)
    assert store.activity("k") == [{"n": 6, "ip": "ü"}, {"n": 7}]
    # A larger bound lets it grow again.
    store.update("k", RecordUpdate(activity={"n": 8}), activity_max=10)
    assert store.activity("k") == [{"n": 6, "ip": "ü"}, {"n": 7}, {"n": 8}]


def test_activity_of_missing_key_is_empty(store: SessionStore) -> None:
    assert store.activity("nope") == []


def test_activity_entries_are_copies(store: SessionStore) -> None:
    put(store, rec("k"))
    entry: dict[str, JSON] = {"n": 1}
    store.update("k", RecordUpdate(activity=entry), activity_max=3)
    entry["n"] = 2
    trail = store.activity("k")
    trail[0]["n"] = 3
    assert store.activity("k") == [{"n": 1}]


def test_activity_goes_with_revoke_and_delete(store: SessionStore) -> None:
    put(store, rec("r"))
    put(store, rec("d"))
    for k in ("r", "d"):
        store.update(k, RecordUpdate(activity={"k": k}), activity_max=3)
    store.revoke("r", tomb("r"))
    store.delete("d")
    assert store.activity("r") == []
    assert store.activity("d") == []


# -- revoke, delete, revoke_user ------------------------------------------------------------


def test_revoke_live_record(store: SessionStore) -> None:
    put(store, rec("k"))
    stone = tomb("k")
    assert store.revoke("k", stone) is True
    assert store.get("k") == stone
    assert store.user_sessions("alice") == []


def test_revoke_alias(store: SessionStore) -> None:
    put(store, rec("k"))
    rotate(store, "k", "k2")
    stone = tomb("k", "replay")
    assert store.revoke("k", stone) is True
    assert store.get("k") == stone
    assert isinstance(store.get("k2"), SessionRecord)  # the alias' target is untouched
    assert keys(store.user_sessions("alice")) == ["k2"]


def test_revoke_tombstone_or_missing_is_false_and_writes_nothing(store: SessionStore) -> None:
    put(store, rec("k"))
    first = tomb("k", "logout")
    store.revoke("k", first)
    assert store.revoke("k", tomb("k", "again")) is False
    assert store.get("k") == first
    assert store.revoke("missing", tomb("missing")) is False
    assert store.get("missing") is None


@pytest.mark.parametrize("state", ["record", "alias", "tombstone", "missing"])
def test_delete_removes_anything(store: SessionStore, state: str) -> None:
    if state != "missing":
        put(store, rec("k"))
    if state == "alias":
        rotate(store, "k", "k2")
    elif state == "tombstone":
        store.revoke("k", tomb("k"))
    store.delete("k")
    assert store.get("k") is None
    assert "k" not in keys(store.user_sessions("alice"))
    assert store.update("k", RecordUpdate(set_data={"a": 1})) is False


def test_revoke_user_with_keep(store: SessionStore) -> None:
    for k, created in (("c", 3.0), ("a", 1.0), ("keep", 2.0), ("b", 0.0)):
        put(store, rec(k, created=T0 + created))
    put(store, rec("bob1", "bob"))
    put(store, rec("old", expires=T0 - 5))  # expired but still indexed: revoked as well
    revoked = store.revoke_user(
        "alice", reason="password-change", at=T0 + 7, until=T0 + 70, keep="keep"
    )
    assert revoked == {k: k for k in ("a", "b", "c", "old")}
    assert list(revoked) == ["a", "b", "c", "old"]  # ordered by key
    for k in revoked:
        assert store.get(k) == Tombstone(k, "password-change", T0 + 7, T0 + 70, "alice", k)
    assert keys(store.user_sessions("alice")) == ["keep"]
    assert keys(store.user_sessions("bob")) == ["bob1"]
    assert store.revoke_user("alice", reason="all", at=T0, until=T0 + 1) == {"keep": "keep"}
    assert store.user_sessions("alice") == []
    assert store.revoke_user("nobody", reason="x", at=T0, until=T0 + 1) == {}


def test_revoke_user_leaves_aliases_alone(store: SessionStore) -> None:
    put(store, rec("k"))
    rotate(store, "k", "k2")
    assert store.revoke_user("alice", reason="logout-all", at=T0, until=T0 + 5) == {"k2": "k2"}
    assert store.get("k") == alias("k", "k2")


# -- the lineage of ended sessions ------------------------------------------------------------
#
# Every write that ends sessions names each one's lineage (the ``lineage`` flag; the key for a
# record written before lineages), and its tombstone keeps it: the core names the session in
# the events of its end and of a later replay of its ID without listing the user's sessions.


def lined(key: str, lineage: str, user: str | None = "alice", **fields: Any) -> SessionRecord:
    """A record with a stored lineage (as the core writes every record)."""
    return rec(key, user, flags={"lineage": lineage, "mfa": True}, **fields)


def test_cap_eviction_by_insert_names_and_keeps_each_lineage(store: SessionStore) -> None:
    put(store, lined("s0", "L-0", created=T0))
    put(store, lined("s1", "12345", created=T0 + 1))  # looks like a number: kept as text
    put(store, rec("s2", created=T0 + 2))  # written before lineages
    put(store, lined("s3", "L-3", created=T0 + 3))
    evicted = put(store, lined("new", "L-new", created=T0 + 4), cap=1)
    assert evicted == {"s0": "L-0", "s1": "12345", "s2": "s2", "s3": "L-3"}
    assert list(evicted) == ["s0", "s1", "s2", "s3"]  # oldest first
    for k, lineage in evicted.items():
        assert store.get(k) == Tombstone(k, "evicted", T0 + 4, T0 + 2 * HOUR, "alice", lineage)


def test_cap_eviction_least_recently_seen_names_its_lineage(store: SessionStore) -> None:
    put(store, lined("idle", "L-idle", created=T0 + 1, last_seen=T0 + 1))
    put(store, lined("busy", "L-busy", created=T0, last_seen=T0 + 30))
    newest = lined("new", "L-new", created=T0 + 40, last_seen=T0 + 40)
    evicted = store.insert(newest, max_per_user=2, tombstone_until=T0 + 99, on_limit="evict-lru")
    assert evicted == {"idle": "L-idle"}
    got = store.get("idle")
    assert isinstance(got, Tombstone) and got.lineage == "L-idle"


def test_cap_eviction_by_rotate_names_and_keeps_the_lineage(store: SessionStore) -> None:
    put(store, lined("b1", "L-b1", "bob", created=T0 + 1))
    put(store, lined("b2", "L-b2", "bob", created=T0 + 2))
    put(store, lined("anon", "L-anon", None, created=T0 - 100))
    login = RecordUpdate(meta={"user_id": "bob", "last_seen": T0 + 50})
    stone = Tombstone("anon", "rotated:login", T0 + 50, T0 + 77, None, "L-anon")
    evicted = store.rotate(
        "anon", "authed", login, old_becomes=stone, max_per_user=2, tombstone_until=T0 + 77
    )
    assert evicted == {"b1": "L-b1"}
    assert store.get("b1") == Tombstone("b1", "evicted", T0 + 50, T0 + 77, "bob", "L-b1")
    assert store.get("anon") == stone  # the rotated-out ID's tombstone keeps it too
    moved = store.get("authed")
    assert isinstance(moved, SessionRecord) and moved.lineage == "L-anon"


def test_revoke_user_names_and_keeps_each_lineage(store: SessionStore) -> None:
    put(store, lined("b", "L-b", created=T0))
    put(store, lined("a", '{"not": "json"}', created=T0 + 1))
    put(store, rec("c", created=T0 + 2))  # written before lineages
    put(store, lined("keep", "L-keep", created=T0 + 3))
    revoked = store.revoke_user(
        "alice", reason="revoked:admin", at=T0 + 7, until=T0 + 70, keep="keep"
    )
    assert revoked == {"a": '{"not": "json"}', "b": "L-b", "c": "c"}
    assert list(revoked) == ["a", "b", "c"]  # ordered by key
    for k, lineage in revoked.items():
        assert store.get(k) == Tombstone(k, "revoked:admin", T0 + 7, T0 + 70, "alice", lineage)
    assert isinstance(store.get("keep"), SessionRecord)


def test_revoke_keeps_the_tombstones_lineage(store: SessionStore) -> None:
    put(store, lined("k", "L-k"))
    stone = Tombstone("k", "logout", T0 + 10, T0 + 2 * HOUR, "alice", "L-k")
    assert store.revoke("k", stone) is True
    assert store.get("k") == stone


def test_a_tombstone_without_lineage_reads_back_without_one(store: SessionStore) -> None:
    """What an earlier version wrote (no lineage field at all) still reads, as ``""``."""
    put(store, rec("k"))
    assert store.revoke("k", tomb("k")) is True
    got = store.get("k")
    assert isinstance(got, Tombstone) and got.lineage == "" and got.reason == "logout"


# -- user_sessions --------------------------------------------------------------------------


def test_user_sessions_oldest_first_including_expired(store: SessionStore) -> None:
    put(store, rec("z", created=T0 + 2))
    put(store, rec("y", created=T0 + 1, expires=T0 - 1))
    put(store, rec("b", created=T0 + 3))
    put(store, rec("a", created=T0 + 3))  # a tie on created_at is broken by key
    put(store, rec("x", created=T0))
    put(store, rec("other", "bob"))
    got = store.user_sessions("alice")
    assert keys(got) == ["x", "y", "z", "a", "b"]
    assert got[0] == rec("x", created=T0)
    assert store.user_sessions("nobody") == []


# -- purge ----------------------------------------------------------------------------------


def _purge_fixture(store: SessionStore, now: float) -> tuple[set[str], set[str]]:
    """Items on both sides of ``now``; returns (keys that must go, keys that must stay)."""
    gone: set[str] = set()
    kept: set[str] = set()
    put(store, rec("live", expires=now + 1))
    kept.add("live")
    put(store, rec("dead", expires=now - 1))
    gone.add("dead")
    put(store, rec("at-now", expires=now))  # its lifetime ends at now: it goes
    gone.add("at-now")
    # Alias within its lifetime though its grace is over; and one whose lifetime is over.
    for k, until in (("al-live", now + 5), ("al-dead", now - 5)):
        put(store, rec(k, expires=now + 100))
        store.rotate(
            k,
            f"{k}-target",
            RecordUpdate(),
            old_becomes=Alias(k, f"{k}-target", now - 60, now - 30, until, "alice"),
            max_per_user=0,
            tombstone_until=now + 10,
        )
        kept.add(f"{k}-target")
    kept.add("al-live")
    gone.add("al-dead")
    for k, until in (("tb-live", now + 5), ("tb-dead", now - 5)):
        put(store, rec(k, expires=now + 100))
        store.revoke(k, Tombstone(k, "logout", now - 60, until, "alice"))
    kept.add("tb-live")
    gone.add("tb-dead")
    return gone, kept


def test_purge_removes_exactly_what_expired(store: SessionStore) -> None:
    now = T0 + 10 * HOUR
    gone, kept = _purge_fixture(store, now)
    store.update("dead", RecordUpdate(activity={"x": 1}), activity_max=5)
    assert store.purge(now) == len(gone)
    for k in gone:
        assert store.get(k) is None, k
    for k in kept:
        assert store.get(k) is not None, k
    assert store.activity("dead") == []
    assert "dead" not in keys(store.user_sessions("alice"))
    assert store.purge(now) == 0


def test_purge_in_batches_smaller_than_the_total(store: SessionStore) -> None:
    now = T0 + 10 * HOUR
    for i in range(23):
        put(store, rec(f"old{i}", expires=now - i - 1))
    for i in range(5):
        put(store, rec(f"new{i}", expires=now + i + 1))
    assert store.purge(now, batch=4) == 23
    assert keys(store.user_sessions("alice")) == [f"new{i}" for i in range(5)]
    assert store.purge(now, batch=4) == 0
    assert store.purge(now + 3.5, batch=1) == 3
    assert store.stats(now + 3.5) == StoreStats(live_sessions=2, users=1, tombstones=0, aliases=0)


def test_purge_of_batch_multiple_returns_the_total(store: SessionStore) -> None:
    for i in range(8):
        put(store, rec(f"k{i}", expires=T0))
    assert store.purge(T0 + 1, batch=4) == 8
    assert store.purge(T0 + 1, batch=4) == 0


def test_reinsert_after_purge_starts_clean(store: SessionStore) -> None:
    put(store, rec("k", expires=T0))
    store.update("k", RecordUpdate(activity={"n": 1}), activity_max=3)
    store.purge(T0 + 1)
    put(store, rec("k", expires=T0 + HOUR))
    assert store.activity("k") == []
    assert keys(store.user_sessions("alice")) == ["k"]


# -- stats ----------------------------------------------------------------------------------


def test_stats(store: SessionStore) -> None:
    now = T0 + 10 * HOUR
    assert store.stats(now) == StoreStats(live_sessions=0, users=0, tombstones=0, aliases=0)
    _purge_fixture(store, now)
    put(store, rec("bob1", "bob", expires=now + 10))
    put(store, rec("bob2", "bob", expires=now + 10))
    put(store, rec("anon", None, expires=now + 10))
    put(store, rec("carol-dead", "carol", expires=now - 10))
    # Live: live, al-live-target, al-dead-target, bob1, bob2, anon (alice and bob).
    assert store.stats(now) == StoreStats(live_sessions=6, users=2, tombstones=1, aliases=1)
    later = now + 6
    assert store.stats(later) == StoreStats(live_sessions=5, users=2, tombstones=0, aliases=0)


# -- all_sessions (the operator's view) -----------------------------------------------------

#: Stores that page with Redis SCAN: every record at least once, pages of varying size.
SCANNING = {"redis", "redis-cluster", "redis-sentinel"}


def _kind(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["store"])


def _walk(store: SessionStore, limit: int) -> list[list[SessionRecord]]:
    pages: list[list[SessionRecord]] = []
    after: str | None = None
    for _ in range(1000):
        page, after = store.all_sessions(after, limit)
        pages.append(page)
        if after is None:
            return pages
    raise AssertionError("the cursor never came back as None")


def _all_sessions_world(store: SessionStore) -> set[str]:
    """Signed-in records of three users among what must not be listed; returns what must."""
    listed: set[str] = set()
    for i in range(17):
        user = ("alice", "bob", "carol")[i % 3]
        put(store, rec(f"k{i:02d}", user, created=T0 + i))
        listed.add(f"k{i:02d}")
    put(store, rec("k99-expired", "bob", expires=T0 - 1))  # listed: the core filters it
    listed.add("k99-expired")
    for i in range(6):
        put(store, rec(f"anon{i}", None))
    for old in ("r1", "r2"):  # each becomes an alias of its successor, which is listed
        put(store, rec(old, "dave"))
        rotate(store, old, f"{old}-new", becomes=alias(old, f"{old}-new", "dave"))
        listed.add(f"{old}-new")
    for gone in ("t1", "t2"):
        put(store, rec(gone, "erin"))
        store.revoke(gone, tomb(gone, user="erin"))
    return listed


def test_all_sessions_pages_visit_every_signed_in_record(
    store: SessionStore, request: pytest.FixtureRequest
) -> None:
    listed = _all_sessions_world(store)
    for limit in (1, 4, 50):
        pages = _walk(store, limit)
        seen = [r.key for page in pages for r in page]
        assert set(seen) == listed, limit
        assert all(r.user_id is not None for page in pages for r in page)
        assert all(page for page in pages[:-1]), "only the last page may be empty"
        if _kind(request) not in SCANNING:
            assert seen == sorted(listed), limit  # by key, each exactly once
            assert all(len(page) <= limit for page in pages)
            assert len(pages) == -(-len(listed) // limit), limit  # no empty last page
    got = {r.key: r for page in _walk(store, 50) for r in page}
    assert got["k03"] == rec("k03", "alice", created=T0 + 3)


def test_all_sessions_of_a_store_without_signed_in_records(store: SessionStore) -> None:
    assert store.all_sessions(None, 10) == ([], None)
    put(store, rec("anon", None))
    put(store, rec("t", "alice"))
    store.revoke("t", tomb("t"))
    assert _walk(store, 10) == [[]]


def test_all_sessions_sees_a_record_added_behind_the_cursor_only_once(
    store: SessionStore, request: pytest.FixtureRequest
) -> None:
    for i in range(6):
        put(store, rec(f"m{i}", "alice"))
    first, after = store.all_sessions(None, 3)
    assert after is not None and first
    put(store, rec("a-early", "bob"))  # sorts before every key listed so far
    put(store, rec("z-late", "bob"))  # sorts after
    rest = [r.key for page in _walk_from(store, after, 3) for r in page]
    if _kind(request) not in SCANNING:
        assert rest == [f"m{i}" for i in range(3, 6)] + ["z-late"]
    assert {r.key for r in first} | set(rest) >= {f"m{i}" for i in range(6)}


def _walk_from(store: SessionStore, after: str | None, limit: int) -> list[list[SessionRecord]]:
    pages: list[list[SessionRecord]] = []
    while after is not None and len(pages) < 1000:
        page, after = store.all_sessions(after, limit)
        pages.append(page)
    return pages


def test_all_sessions_refuses_a_limit_below_one(store: SessionStore) -> None:
    with pytest.raises(ValueError):
        store.all_sessions(None, 0)


def test_engine_lists_every_live_signed_in_session_once_by_reference(
    store: SessionStore, request: pytest.FixtureRequest
) -> None:
    from sessionwarden.clock import ManualClock
    from sessionwarden.core import Engine, run_sync
    from sessionwarden.policy import Policy

    now = T0 + 60
    engine = Engine(Policy(secret_keys=(b"k" * 32,), idle_timeout=1800.0), clock=ManualClock(now))
    live = {f"{i:02x}" * 32 for i in range(11)}
    for i, key in enumerate(sorted(live)):
        put(store, rec(key, f"user{i % 4}", user_agent="curl/8", client_ip="192.0.2.1"))
    put(store, rec("ee" * 32, "user1", expires=now - 1))  # expired: never listed
    put(store, rec("ef" * 32, "user1", last_seen=now - 1801))  # idle: never listed
    put(store, rec("f0" * 32, None))  # anonymous
    put(store, rec("f1" * 32, "user2"))
    store.revoke("f1" * 32, tomb("f1" * 32, user="user2"))
    listed: list[str] = []
    after: str | None = None
    for _ in range(100):
        rows, after = run_sync(engine.list_all_sessions(after, 3), store)
        # On Redis a SCAN step may return more keys than asked for (documented in docs/cli.md)
        assert len(rows) <= 3 or _kind(request) in SCANNING
        listed += [row.ref for row in rows]
        assert after is None or not any(key in after for key in live)  # never a store key
        if after is None:
            break
    assert sorted(listed) == sorted(key[:16] for key in live)
    if _kind(request) not in SCANNING:  # SCAN may repeat a key if the keyspace is resized
        assert len(listed) == len(live)  # each once, across pages
    rows, after = run_sync(engine.list_all_sessions(None, 50), store)
    while after is not None:  # one page on an ordered store; Redis pages vary in size
        more, after = run_sync(engine.list_all_sessions(after, 50), store)
        rows += more
    assert {row.user_id for row in rows} == {"user0", "user1", "user2", "user3"}
    assert all(row.client_ip == "192.0.2.1" and row.user_agent == "curl/8" for row in rows)
    assert not any(row.current or row.device_bound for row in rows)
    for bad in ("", "x:1", "k:", "nonsense"):
        with pytest.raises(ValueError):
            run_sync(engine.list_all_sessions(bad, 3), store)


def test_engine_pages_are_full_even_where_expired_sessions_come_first(
    store: SessionStore, request: pytest.FixtureRequest
) -> None:
    """Expired sessions are left out, and the engine reads on: a page is never empty (nor, on a
    key-ordered store, short) while more live sessions follow."""
    from sessionwarden.clock import ManualClock
    from sessionwarden.core import Engine, run_sync
    from sessionwarden.policy import Policy

    now = T0 + 60
    engine = Engine(Policy(secret_keys=(b"k" * 32,), idle_timeout=1800.0), clock=ManualClock(now))
    for i in range(5):  # these sort first on a key-ordered store
        put(store, rec(f"0{i}" * 32, "carol", expires=now - 1))
    live = {f"a{i}" * 32 for i in range(4)}
    for key in sorted(live):
        put(store, rec(key, "alice"))
    rows, after = run_sync(engine.list_all_sessions(None, 2), store)
    assert rows, "a page of expired sessions only was shown as an empty page"
    listed = [row.ref for row in rows]
    if _kind(request) not in SCANNING:
        assert len(rows) == 2 and after is not None
    while after is not None:
        more, after = run_sync(engine.list_all_sessions(after, 2), store)
        assert more or after is None
        listed += [row.ref for row in more]
    assert sorted(set(listed)) == sorted(key[:16] for key in live)
