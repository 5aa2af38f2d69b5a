"""Holes found by attacking the library from outside, each closed and proved here through the core
on every store (memory, SQLite, Redis): an alias cannot rotate, a pre-login ID never deletes the
new cookie, login restarts the absolute deadline, session values have limits, and an idle timeout
longer than the absolute one is simply cut by it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sessionwarden.clock import ManualClock
from sessionwarden.core import AliasActionRefused, Engine, Session, SessionValueError
from sessionwarden.events import EventKind
from sessionwarden.policy import Policy
from sessionwarden.records import JSON, SessionRecord, Tombstone
from sessionwarden.stores.base import SessionStore

from .conftest import SECRET
from .test_engine import Client, Recorder, login


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def engine(policy: Policy, clock: ManualClock, recorder: Recorder) -> Engine:
    return Engine(policy, clock=clock, sink=recorder)


# -- hole 4: a request on an alias (a rotated-out ID in its grace window) cannot rotate -----------


ALIAS_ACTIONS: dict[str, Callable[[Session], None]] = {
    "rotate": lambda s: s.rotate(),
    "login": lambda s: s.login("mallory"),
    "reauthenticated": lambda s: s.reauthenticated(),
    "credentials_changed": lambda s: s.credentials_changed(),
}


@pytest.mark.parametrize("action", sorted(ALIAS_ACTIONS))
def test_request_on_alias_can_read_but_not_rotate(
    store: SessionStore, clock: ManualClock, recorder: Recorder, action: str
) -> None:
    policy = Policy(secret_keys=(SECRET,), rotate_every=60, rotation_grace=10)
    engine = Engine(policy, clock=clock, sink=recorder)
    owner = Client(engine, store)
    login(owner)
    stolen = owner.cookie
    clock.advance(61)
    owner.request()  # periodic rotation: the stolen ID becomes an alias for 10 s
    assert owner.cookie != stolen
    thief = Client(engine, store, cookie=stolen, ip="203.0.113.9")
    session, facts = thief.begin()
    assert session.via_alias and session.user_id == "alice"  # reading works
    with pytest.raises(AliasActionRefused):
        ALIAS_ACTIONS[action](session)
    out = thief.finish(session, facts)
    assert out.set_cookie is None, "the thief must not get a fresh ID"
    assert owner.request().user_id == "alice", "the owner's ID stays valid"
    assert owner.last is not None and owner.last.set_cookie is None
    assert owner.cookie is not None
    assert isinstance(store.get(engine.keyring.hash_id(owner.cookie)), SessionRecord)
    refused = [e for e in recorder.events if e.kind == EventKind.ALIAS_ACTION_REFUSED]
    assert len(refused) == 1 and refused[0].reason == action


# -- hole 6: a response to a request on the pre-login ID never deletes the cookie ----------------


def test_late_request_on_pre_login_id_leaves_the_cookie_alone(
    engine: Engine, store: SessionStore
) -> None:
    browser = Client(engine, store)
    browser.request(lambda s: s.csrf_token())  # the login page: an anonymous session
    pre_login = browser.cookie
    login(browser)
    assert browser.cookie != pre_login
    late = Client(engine, store, cookie=pre_login)  # a request sent before the login answered
    session, facts = late.begin()
    assert late.cookie == pre_login, "clearing here would delete the new session's cookie"
    out = late.finish(session, facts)
    assert session.user_id is None and out.set_cookie is None


def test_in_flight_write_on_pre_login_id_leaves_the_cookie_alone(
    engine: Engine, store: SessionStore
) -> None:
    browser = Client(engine, store)
    browser.request(lambda s: s.csrf_token())
    in_flight = Client(engine, store, cookie=browser.cookie)
    session, facts = in_flight.begin()  # loaded before the login committed
    login(browser)
    session["cart"] = [1]
    out = in_flight.finish(session, facts)
    assert out.set_cookie is None
    assert browser.request().user_id == "alice"


def test_replay_of_a_logged_out_id_still_clears_its_cookie(
    engine: Engine, store: SessionStore
) -> None:
    """Only a replacement at login is spared: a logged-out ID's cookie still goes."""
    browser = Client(engine, store)
    login(browser)
    old = browser.cookie
    browser.request(lambda s: s.logout())
    late = Client(engine, store, cookie=old)
    session, facts = late.begin()
    assert late.cookie is None  # load said: clear it
    out = late.finish(session, facts)
    assert out.set_cookie is None


# -- hole 8: the absolute timeout of a signed-in session counts from its login -------------------


def test_login_restarts_the_absolute_deadline(
    store: SessionStore, clock: ManualClock, recorder: Recorder
) -> None:
    policy = Policy(secret_keys=(SECRET,), idle_timeout=3600, absolute_timeout=3600)
    engine = Engine(policy, clock=clock, sink=recorder)
    browser = Client(engine, store)
    browser.request(lambda s: s.csrf_token())  # the login page
    clock.advance(3000)
    browser.request(lambda s: s.login("alice"))
    login_at = clock.now()
    assert browser.cookie is not None
    record = store.get(engine.keyring.hash_id(browser.cookie))
    assert isinstance(record, SessionRecord)
    assert record.created_at == login_at and record.expires_at == login_at + 3600
    clock.advance(700)  # past the anonymous session's deadline, well inside the login's
    assert browser.request().user_id == "alice"
    clock.set(login_at + 3600)
    assert browser.request().user_id is None
    assert EventKind.EXPIRED_ABSOLUTE in recorder.kinds()


def test_other_rotations_never_move_the_deadline(store: SessionStore, clock: ManualClock) -> None:
    policy = Policy(secret_keys=(SECRET,), idle_timeout=3600, absolute_timeout=3600)
    engine = Engine(policy, clock=clock)
    browser = Client(engine, store)
    login(browser)
    created = clock.now()
    for act in (Session.rotate, Session.reauthenticated, Session.credentials_changed):
        clock.advance(600)
        browser.request(act)
        assert browser.cookie is not None
        record = store.get(engine.keyring.hash_id(browser.cookie))
        assert isinstance(record, SessionRecord) and record.created_at == created


# -- hole 9: session values have a depth and a size limit ----------------------------------------


def _nested(depth: int) -> JSON:
    value: JSON = 1
    for _ in range(depth):
        value = [value]
    return value


def test_values_too_deep_or_too_large_are_refused_when_set(
    engine: Engine, store: SessionStore
) -> None:
    browser = Client(engine, store)
    session, facts = browser.begin()
    with pytest.raises(SessionValueError, match="deep"):
        session["x"] = _nested(700)
    with pytest.raises(SessionValueError, match="bytes"):
        session["x"] = "a" * (30 * 1024 * 1024)
    session["ok"] = _nested(engine.policy.max_value_depth)
    browser.finish(session, facts)
    assert browser.request().get("ok") == _nested(engine.policy.max_value_depth)


def test_in_place_change_past_the_limit_is_refused_at_commit(
    engine: Engine, store: SessionStore
) -> None:
    browser = Client(engine, store)
    browser.request(lambda s: s.__setitem__("items", []))
    session, facts = browser.begin()
    items = session["items"]
    assert isinstance(items, list)
    items.append(_nested(700))
    with pytest.raises(SessionValueError, match="deep"):
        browser.finish(session, facts)
    assert browser.request()["items"] == [], "the stored record still reads back"


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda items: items.append(_nested(700)), SessionValueError, "deep"),
        (lambda items: items.extend(["x" * 900] * 100), SessionValueError, "bytes"),
        (lambda items: items.append(object()), TypeError, "JSON"),
    ],
    ids=["too-deep", "too-large", "not-json"],
)
def test_a_value_set_then_changed_in_place_is_checked_at_commit(
    engine: Engine, store: SessionStore, change: Any, error: type[Exception], match: str
) -> None:
    """``session.setdefault("cart", []).append(item)`` (Flask's way, and ``flash()``'s): the
    list set in this request and then changed in place is held to the same limits as one read
    from the store and changed, not stored past them."""
    browser = Client(engine, store)
    browser.request(lambda s: s.__setitem__("kept", 1))
    session, facts = browser.begin()
    items = session.setdefault("items", [])
    assert isinstance(items, list)
    change(items)
    with pytest.raises(error, match=match):
        browser.finish(session, facts)
    assert dict(browser.request().items()) == {"kept": 1}, "nothing of it was stored"


def test_a_value_set_then_changed_in_place_within_limits_is_stored(
    engine: Engine, store: SessionStore
) -> None:
    browser = Client(engine, store)
    browser.request(lambda s: s.setdefault("cart", []).append("book"))  # type: ignore[union-attr]
    browser.request(lambda s: s.setdefault("cart", []).append("pen"))  # type: ignore[union-attr]
    assert browser.request()["cart"] == ["book", "pen"]


def test_total_session_size_is_bounded(store: SessionStore, clock: ManualClock) -> None:
    policy = Policy(secret_keys=(SECRET,), max_value_bytes=1000, max_session_bytes=3000)
    engine = Engine(policy, clock=clock)
    browser = Client(engine, store)
    browser.request(lambda s: s.update({"a": "x" * 900, "b": "x" * 900}))
    session, facts = browser.begin()
    session["c"] = "x" * 900
    with pytest.raises(SessionValueError, match="session"):
        session["d"] = "x" * 900
    browser.finish(session, facts)
    assert sorted(browser.request().keys()) == ["a", "b", "c"]


def test_a_value_too_large_is_named_even_when_the_session_is_too_large_with_it(
    store: SessionStore, clock: ManualClock
) -> None:
    policy = Policy(secret_keys=(SECRET,), max_value_bytes=1000, max_session_bytes=3000)
    browser = Client(Engine(policy, clock=clock), store)
    browser.request(lambda s: s.update({"a": "x" * 900, "b": "x" * 900}))
    session, facts = browser.begin()
    with pytest.raises(SessionValueError, match="session value 'big' is 2002 bytes"):
        session["big"] = "x" * 2000
    with pytest.raises(SessionValueError, match="session value 'list' is"):
        session["list"] = ["é" * 600]  # 1,200 bytes of UTF-8
    session["fits"] = "x" * 998  # a value exactly at the limit (1,000 bytes with its quotes)
    browser.finish(session, facts)
    assert browser.request().get("fits") == "x" * 998


@pytest.mark.parametrize("value", [object(), {1j: 1}, float("nan"), [float("inf")], {"s": {1, 2}}])
def test_a_value_that_is_not_json_is_refused_when_set(
    engine: Engine, store: SessionStore, value: object
) -> None:
    browser = Client(engine, store)
    browser.request(lambda s: s.__setitem__("a", 1))
    session, facts = browser.begin()
    with pytest.raises(TypeError, match="JSON"):
        session["x"] = value  # type: ignore[assignment]
    session["b"] = 2
    browser.finish(session, facts)
    assert dict(browser.request().items()) == {"a": 1, "b": 2}


def test_in_place_growth_past_the_session_limit_is_refused_at_commit(
    store: SessionStore, clock: ManualClock
) -> None:
    policy = Policy(secret_keys=(SECRET,), max_value_bytes=1000, max_session_bytes=3000)
    browser = Client(Engine(policy, clock=clock), store)
    browser.request(lambda s: s.update({"a": "x" * 900, "b": "x" * 900, "d": "x" * 900}))
    browser.request(lambda s: s.__setitem__("items", []))
    session, facts = browser.begin()
    items = session["items"]
    assert isinstance(items, list)
    session["c"] = "x" * 10  # within the limits (≈ 2,770 bytes in all)
    items.append("x" * 300)  # the value stays under 1,000 bytes, the session goes past 3,000
    with pytest.raises(SessionValueError, match="session data would be"):
        browser.finish(session, facts)
    assert browser.request()["items"] == [], "the stored record still reads back"


@pytest.mark.parametrize(
    ("kwargs", "field_name"),
    [
        ({"max_value_depth": 0}, "max_value_depth"),
        ({"max_value_depth": 1000}, "max_value_depth"),
        ({"max_value_bytes": 0}, "max_value_bytes"),
        ({"max_session_bytes": 10, "max_value_bytes": 100}, "max_session_bytes"),
    ],
)
def test_value_limits_are_validated(kwargs: dict[str, int], field_name: str) -> None:
    with pytest.raises(ValueError, match=field_name):
        Policy(secret_keys=(SECRET,), **kwargs)  # type: ignore[arg-type]


# -- timeouts: an idle timeout longer than the absolute one is cut by it -------------------------


def test_idle_timeout_longer_than_absolute_is_accepted_and_cut(
    store: SessionStore, clock: ManualClock, recorder: Recorder
) -> None:
    policy = Policy(secret_keys=(SECRET,), absolute_timeout=5)  # idle stays 1800
    engine = Engine(policy, clock=clock, sink=recorder)
    browser = Client(engine, store)
    login(browser)
    clock.advance(4)
    assert browser.request().user_id == "alice"
    clock.advance(1)
    assert browser.request().user_id is None
    assert EventKind.EXPIRED_ABSOLUTE in recorder.kinds()


def test_tombstone_reason_of_login_rotation(engine: Engine, store: SessionStore) -> None:
    """The marker the load reads to spare the cookie: the pre-login ID is a login rotation."""
    browser = Client(engine, store)
    browser.request(lambda s: s.csrf_token())
    assert browser.cookie is not None
    key = engine.keyring.hash_id(browser.cookie)
    login(browser)
    found = store.get(key)
    assert isinstance(found, Tombstone) and found.reason == "rotated:login"


def test_demo_starts_with_only_an_absolute_timeout() -> None:
    """``sessionwarden demo --absolute-timeout 5`` builds its policy from these arguments."""
    from sessionwarden.demo.shared import demo_policy

    policy = demo_policy(SECRET, absolute_timeout=5)
    assert policy.absolute_timeout == 5 and policy.idle_timeout > 5


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", ("localhost", "127.0.0.1", "[::1]", "127.0.0.1")),
        ("192.0.2.10", ("localhost", "127.0.0.1", "[::1]", "192.0.2.10")),
        ("0.0.0.0", ()),
    ],
)
def test_demo_allows_the_host_it_was_started_on(host: str, allowed: tuple[str, ...]) -> None:
    """``sessionwarden demo --host H`` answers to H (and this machine's loopback names)."""
    from sessionwarden.demo.cli import _allowed_hosts

    assert _allowed_hosts(host) == allowed
