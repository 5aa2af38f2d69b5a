"""The session rules, end to end through the core, against every store (memory, SQLite, Redis).

A tiny client keeps the cookie like a browser; time moves through the manual clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from sessionwarden import tokens
from sessionwarden.clock import ManualClock
from sessionwarden.core import Engine, Outcome, Session, Steps, run_async, run_sync
from sessionwarden.events import EventKind
from sessionwarden.facts import RequestFacts
from sessionwarden.policy import CookiePolicy, Policy
from sessionwarden.records import Alias, SessionRecord, Tombstone
from sessionwarden.stores.base import InlineAsyncStore, SessionLimitReached, SessionStore

from .conftest import SECRET, Recorder


@dataclass
class Client:
    engine: Engine
    store: SessionStore
    cookie: str | None = None
    ua: str = "Mozilla/5.0 Firefox/120.0"
    ip: str = "198.51.100.7"
    extra_cookie: str = ""
    last: Outcome | None = None
    history: list[str] = field(default_factory=list)

    def facts(self) -> RequestFacts:
        name = self.engine.policy.cookie.name
        header = f"{name}={self.cookie}" if self.cookie is not None else ""
        if self.extra_cookie:
            header = f"{header}; {self.extra_cookie}" if header else self.extra_cookie
        return RequestFacts(
            method="GET",
            scheme="https",
            host="app.test",
            path="/",
            client_ip=self.ip,
            cookie_header=header,
            user_agent=self.ua,
        )

    #: Run the core through the asynchronous driver (as the ASGI middleware does) instead of
    #: the synchronous one.
    inline: ClassVar[bool] = False

    def run(self, steps: Steps[Any]) -> Any:
        if not self.inline:
            return run_sync(steps, self.store)
        running = run_async(steps, InlineAsyncStore(self.store))
        try:
            running.send(None)
        except StopIteration as done:
            return done.value
        raise AssertionError("a local store never suspends")

    def begin(self) -> tuple[Session, RequestFacts]:
        facts = self.facts()
        loaded = self.run(self.engine.load(facts))
        if loaded.clear_cookie:
            self.cookie = None
        return loaded.session, facts

    def finish(self, session: Session, facts: RequestFacts) -> Outcome:
        out: Outcome = self.run(self.engine.commit(session, facts))
        self.last = out
        if out.set_cookie is not None:
            value = out.set_cookie.split(";", 1)[0].split("=", 1)[1]
            self.cookie = value or None
            if value:
                self.history.append(value)
        return out

    def request(self, handler: Callable[[Session], Any] | None = None) -> Session:
        session, facts = self.begin()
        if handler is not None:
            handler(session)
        self.finish(session, facts)
        return session


@pytest.fixture(autouse=True, params=["steps", "inline"])
def loading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rule here holds whichever way the session is loaded."""
    monkeypatch.setattr(Client, "inline", request.param == "inline")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def engine(policy: Policy, clock: ManualClock, recorder: Recorder) -> Engine:
    return Engine(policy, clock=clock, sink=recorder)


def login(client: Client, user: str = "alice") -> Session:
    return client.request(lambda s: s.login(user))


# -- IDs and storage at rest ----------------------------------------------------------------------


def test_ids_are_256_bit_urlsafe_and_unique(engine: Engine, store: SessionStore) -> None:
    seen = set()
    for _ in range(200):
        c = Client(engine, store)
        c.request(lambda s: s.__setitem__("x", 1))
        assert c.cookie is not None and tokens.is_well_formed_id(c.cookie)
        assert len(tokens.b64d(c.cookie) or b"") == 32
        seen.add(c.cookie)
    assert len(seen) == 200


def test_store_holds_only_keyed_hash_of_id(engine: Engine, store: SessionStore) -> None:
    c = Client(engine, store)
    login(c)
    assert c.cookie is not None
    assert store.get(c.cookie) is None
    record = store.get(engine.keyring.hash_id(c.cookie))
    assert isinstance(record, SessionRecord) and record.user_id == "alice"


def test_cookie_attributes_default_host_prefix(engine: Engine, store: SessionStore) -> None:
    c = Client(engine, store)
    login(c)
    assert c.last is not None and c.last.set_cookie is not None
    header = c.last.set_cookie
    assert header.startswith("__Host-id=")
    for attr in ("Path=/", "Secure", "HttpOnly", "SameSite=Lax"):
        assert attr in header.split("; ")
    assert "Domain" not in header and "Max-Age" not in header


def test_anonymous_request_that_writes_nothing_creates_nothing(
    engine: Engine, store: SessionStore
) -> None:
    c = Client(engine, store)
    c.request(lambda s: s.get("x"))
    assert c.cookie is None and c.last is not None and c.last.set_cookie is None
    assert store.stats(engine.clock.now()).live_sessions == 0


# -- strict mode ---------------------------------------------------------------------------------


def test_planted_id_is_never_adopted(
    engine: Engine, store: SessionStore, recorder: Recorder
) -> None:
    planted = tokens.new_session_id()
    c = Client(engine, store, cookie=planted)
    s = c.request(lambda s: s.__setitem__("cart", [1]))
    assert s.is_new
    assert c.cookie is not None and c.cookie != planted
    assert store.get(engine.keyring.hash_id(planted)) is None
    assert EventKind.UNKNOWN_ID in recorder.kinds()


def test_planted_id_then_login_gets_fresh_id(engine: Engine, store: SessionStore) -> None:
    planted = tokens.new_session_id()
    c = Client(engine, store, cookie=planted)
    login(c)
    assert c.cookie not in (None, planted)


@pytest.mark.parametrize(
    "junk",
    ["", "x", "a" * 42, "a" * 44, "é" * 43, '"' + "a" * 41 + '"', "a" * 42 + "=", "a" * 5000],
)
def test_malformed_cookie_is_anonymous(engine: Engine, store: SessionStore, junk: str) -> None:
    c = Client(engine, store, cookie=junk)
    s = c.request()
    assert s.is_new and not s.is_authenticated


def test_two_session_cookies_are_refused(
    engine: Engine, store: SessionStore, recorder: Recorder
) -> None:
    victim = Client(engine, store)
    login(victim)
    attacker = Client(engine, store)
    login(attacker, "mallory")
    c = Client(engine, store, cookie=victim.cookie, extra_cookie=f"__Host-id={attacker.cookie}")
    s = c.request()
    assert not s.is_authenticated
    assert EventKind.COOKIE_TOSSING in recorder.kinds()


def test_duplicate_identical_cookie_values_are_one(engine: Engine, store: SessionStore) -> None:
    c = Client(engine, store)
    login(c)
    c.extra_cookie = f"__Host-id={c.cookie}"
    assert c.request().user_id == "alice"


def test_case_variant_cookie_name_is_not_the_session(engine: Engine, store: SessionStore) -> None:
    victim = Client(engine, store)
    login(victim)
    c = Client(engine, store, extra_cookie=f"__host-id={victim.cookie}")
    assert not c.request().is_authenticated


# -- timeouts ------------------------------------------------------------------------------------


def test_idle_timeout_boundary(
    engine: Engine, store: SessionStore, clock: ManualClock, recorder: Recorder
) -> None:
    c = Client(engine, store)
    login(c)
    clock.advance(engine.policy.idle_timeout - 0.001)
    assert c.request().user_id == "alice"  # touched: the idle window slides
    clock.advance(engine.policy.idle_timeout)
    s = c.request()
    assert not s.is_authenticated
    assert EventKind.EXPIRED_IDLE in recorder.kinds()


def test_idle_timeout_slides_with_activity(
    engine: Engine, store: SessionStore, clock: ManualClock
) -> None:
    c = Client(engine, store)
    login(c)
    for _ in range(10):
        clock.advance(engine.policy.idle_timeout * 0.6)
        assert c.request().user_id == "alice"


def test_absolute_timeout_is_never_extended(
    store: SessionStore, clock: ManualClock, recorder: Recorder
) -> None:
    policy = Policy(
        secret_keys=(SECRET,), idle_timeout=600, absolute_timeout=3600, rotate_every=900
    )
    engine = Engine(policy, clock=clock, sink=recorder)
    c = Client(engine, store)
    login(c)
    start = clock.now()
    while clock.now() - start < 3600 - 300:
        clock.advance(300)
        assert c.request().user_id == "alice"
    clock.set(start + 3600)
    assert not c.request().is_authenticated
    assert EventKind.EXPIRED_ABSOLUTE in recorder.kinds()
    assert len(set(c.history)) > 3  # it rotated along the way, and that changed nothing


def test_expired_record_is_ended_lazily_and_deleted_by_purge(
    engine: Engine, store: SessionStore, clock: ManualClock
) -> None:
    a, b = Client(engine, store), Client(engine, store)
    login(a)
    login(b, "bob")
    assert a.cookie and b.cookie
    key_a = engine.keyring.hash_id(a.cookie)
    key_b = engine.keyring.hash_id(b.cookie)
    clock.advance(engine.policy.idle_timeout + 1)
    a.request()
    # The request that found the expiry leaves a short-lived tombstone of it (so later requests
    # on the ID learn why), never the record.
    found = store.get(key_a)
    assert isinstance(found, Tombstone) and found.reason == "expired.idle"
    assert run_sync(engine.purge(), store) >= 1
    assert store.get(key_b) is None
    clock.advance(engine.policy.idle_timeout)
    assert run_sync(engine.purge(), store) >= 1
    assert store.get(key_a) is None


# -- touch coalescing ----------------------------------------------------------------------------


class CountingStore:
    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kwargs)

        return wrapped


def test_read_only_request_is_one_read_no_write(
    engine: Engine, store: SessionStore, clock: ManualClock
) -> None:
    c = Client(engine, store)
    login(c)
    counting = CountingStore(store)
    c.store = counting  # type: ignore[assignment]
    clock.advance(1)
    assert c.request(lambda s: s.get("anything")).user_id == "alice"
    assert counting.calls == ["get"]
    assert c.last is not None and c.last.set_cookie is None


def test_touch_written_at_most_once_per_interval(
    engine: Engine, store: SessionStore, clock: ManualClock
) -> None:
    c = Client(engine, store)
    login(c)
    counting = CountingStore(store)
    c.store = counting  # type: ignore[assignment]
    interval = engine.policy.effective_touch_interval
    assert interval == 60
    for _ in range(12):
        clock.advance(interval / 4)
        c.request()
    assert counting.calls.count("update") == 3  # 12 requests over 3 intervals


def test_default_touch_interval_follows_idle_timeout() -> None:
    p = Policy(secret_keys=(SECRET,), idle_timeout=300)
    assert p.effective_touch_interval == 30
    assert Policy(secret_keys=(SECRET,)).effective_touch_interval == 60


# -- rotation, login, logout ---------------------------------------------------------------------


def test_login_rotates_and_carries_data(engine: Engine, store: SessionStore) -> None:
    c = Client(engine, store)
    c.request(lambda s: s.__setitem__("cart", ["book"]))
    before = c.cookie
    s = login(c)
    assert c.cookie != before and s.user_id == "alice"
    assert c.request().get("cart") == ["book"]
    # the pre-login ID is dead, and remembered
    old = Client(engine, store, cookie=before)
    assert not old.request().is_authenticated
    assert isinstance(store.get(engine.keyring.hash_id(before or "")), Tombstone)


def test_login_renews_csrf_secret(engine: Engine, store: SessionStore) -> None:
    c = Client(engine, store)
    c.request(lambda s: s.csrf_token())
    assert c.cookie
    secret_before = store.get(engine.keyring.hash_id(c.cookie))
    assert isinstance(secret_before, SessionRecord)
    login(c)
    assert c.cookie
    after = store.get(engine.keyring.hash_id(c.cookie))
    assert isinstance(after, SessionRecord)
    assert after.csrf_secret != secret_before.csrf_secret


def test_logout_kills_session_and_replay_is_reported(
    engine: Engine, store: SessionStore, recorder: Recorder
) -> None:
    c = Client(engine, store)
    login(c)
    stolen = c.cookie
    c.request(lambda s: s.logout())
    assert c.cookie is None
    assert c.last is not None and c.last.logged_out
    assert c.last.set_cookie is not None and "Max-Age=0" in c.last.set_cookie
    thief = Client(engine, store, cookie=stolen)
    assert not thief.request().is_authenticated
    replay = [e for e in recorder.events if e.kind == EventKind.REPLAY_REVOKED]
    assert replay and replay[-1].reason == "logout" and replay[-1].user_id == "alice"


def test_explicit_rotate_has_no_grace(engine: Engine, store: SessionStore) -> None:
    c = Client(engine, store)
    login(c)
    old = c.cookie
    c.request(lambda s: s.rotate())
    assert c.cookie != old
    assert not Client(engine, store, cookie=old).request().is_authenticated


def test_periodic_rotation_with_grace_window(
    engine: Engine, store: SessionStore, clock: ManualClock, recorder: Recorder
) -> None:
    c = Client(engine, store)
    login(c)
    old = c.cookie
    clock.advance(engine.policy.rotate_every)
    c.request()
    assert c.cookie != old
    # an in-flight request still carrying the old cookie, inside the grace window
    clock.advance(engine.policy.rotation_grace / 2)
    in_flight = Client(engine, store, cookie=old)
    s = in_flight.request(lambda s: s.__setitem__("written_in_flight", True))
    assert s.user_id == "alice"
    assert in_flight.last is not None and in_flight.last.set_cookie is None
    assert c.request().get("written_in_flight") is True  # its write reached the new session
    # after the grace window, the old ID is a replay
    clock.advance(engine.policy.rotation_grace)
    assert not Client(engine, store, cookie=old).request().is_authenticated
    assert EventKind.REPLAY_ROTATED in recorder.kinds()


def test_rotation_never_extends_creation_time(
    engine: Engine, store: SessionStore, clock: ManualClock
) -> None:
    c = Client(engine, store)
    login(c)
    assert c.cookie
    created = store.get(engine.keyring.hash_id(c.cookie))
    assert isinstance(created, SessionRecord)
    clock.advance(engine.policy.rotate_every + 1)
    c.request()
    rotated = store.get(engine.keyring.hash_id(c.cookie))
    assert isinstance(rotated, SessionRecord)
    assert rotated.created_at == created.created_at
    assert isinstance(store.get(created.key), Alias)


def test_max_sessions_per_user_evicts_oldest(
    store: SessionStore, clock: ManualClock, recorder: Recorder
) -> None:
    engine = Engine(
        Policy(secret_keys=(SECRET,), max_sessions_per_user=3), clock=clock, sink=recorder
    )
    clients = [Client(engine, store) for _ in range(4)]
    for c in clients:
        clock.advance(1)
        login(c)
    assert not clients[0].request().is_authenticated
    assert all(c.request().user_id == "alice" for c in clients[1:])
    assert EventKind.EVICTED in recorder.kinds()


def test_session_limit_reject_raises_from_the_commit(
    store: SessionStore, clock: ManualClock
) -> None:
    policy = Policy(secret_keys=(SECRET,), max_sessions_per_user=2, on_session_limit="reject")
    engine = Engine(policy, clock=clock)
    a, b, c = (Client(engine, store) for _ in range(3))
    login(a)
    login(b)
    c.request(lambda s: s.__setitem__("next", "/home"))
    anonymous = c.cookie
    session, facts = c.begin()
    session.login("alice")
    with pytest.raises(SessionLimitReached) as refused:
        c.finish(session, facts)
    assert (refused.value.user_id, refused.value.limit) == ("alice", 2)
    assert c.cookie == anonymous
    after = c.request()
    assert after.user_id is None and after.get("next") == "/home"
    assert a.request().user_id == "alice" and b.request().user_id == "alice"


def test_session_limit_reject_never_refuses_a_rotation_other_than_a_sign_in(
    store: SessionStore, clock: ManualClock
) -> None:
    """Sessions beyond the cap (it was lowered) go on: a periodic rotation is no sign-in, and
    under "reject" nothing is evicted."""
    uncapped = Engine(Policy(secret_keys=(SECRET,)), clock=clock)
    clients = [Client(uncapped, store) for _ in range(3)]
    for c in clients:
        login(c)
    capped = Engine(
        Policy(secret_keys=(SECRET,), max_sessions_per_user=2, on_session_limit="reject"),
        clock=clock,
    )
    clock.advance(1000)  # past rotate_every: each next request rotates its ID
    for c in clients:
        c.engine = capped
        before = c.cookie
        assert c.request().user_id == "alice"
        assert c.cookie != before
    assert all(c.request().user_id == "alice" for c in clients)


def test_ended_sessions_events_carry_the_session_value_of_their_creation(
    store: SessionStore, clock: ManualClock, recorder: Recorder
) -> None:
    """An eviction (here by a periodic rotation, the cap having been lowered), a bulk
    revocation, and a replay of the ended IDs afterwards: each event names the session it is
    about by the ``session`` value of that session's ``session.created``, as read by the store
    in the write that ended it and kept in its tombstone."""
    policy = Policy(secret_keys=(SECRET,))
    uncapped = Engine(policy, clock=clock, sink=recorder)
    clients = [Client(uncapped, store) for _ in range(4)]
    created: list[str] = []
    for c in clients:
        clock.advance(1)
        login(c)
        created.append(recorder.of(EventKind.CREATED)[-1].session)
    assert len(set(created)) == 4 and "" not in created
    ended_ids = {i: c.cookie for i, c in enumerate(clients)}

    capped = Engine(
        Policy(secret_keys=(SECRET,), max_sessions_per_user=3), clock=clock, sink=recorder
    )
    clock.advance(1000)  # past rotate_every: the next request rotates the ID
    clients[3].engine = capped
    mark = len(recorder.events)
    assert clients[3].request().user_id == "alice"  # a periodic rotation, over the cap
    evicted = [e for e in recorder.events[mark:] if e.kind is EventKind.EVICTED]
    assert [e.session for e in evicted] == [created[0]]

    mark = len(recorder.events)
    assert len(clients[3].run(capped.revoke_user("alice", keep=None))) == 3
    revoked = [e for e in recorder.events[mark:] if e.kind is EventKind.REVOKED]
    assert sorted(e.session for e in revoked) == sorted(created[1:])

    for i in (0, 1):
        mark = len(recorder.events)
        replay = Client(capped, store, cookie=ended_ids[i])
        assert replay.request().user_id is None
        (replayed,) = [e for e in recorder.events[mark:] if e.kind is EventKind.REPLAY_REVOKED]
        assert replayed.session == created[i]
        assert replayed.reason == ("evicted" if i == 0 else "revoked:admin")


# -- concurrency ---------------------------------------------------------------------------------


def test_concurrent_requests_writing_different_keys_both_kept(
    engine: Engine, store: SessionStore
) -> None:
    c = Client(engine, store)
    login(c)
    s1, f1 = c.begin()
    s2, f2 = Client(engine, store, cookie=c.cookie).begin()
    s1["theme"] = "dark"
    s2["lang"] = "fr"
    c.finish(s1, f1)
    c.finish(s2, f2)
    s = c.request()
    assert s.get("theme") == "dark" and s.get("lang") == "fr"


def test_in_place_mutation_of_a_list_is_saved(engine: Engine, store: SessionStore) -> None:
    c = Client(engine, store)
    login(c)
    c.request(lambda s: s.__setitem__("cart", []))
    c.request(lambda s: s["cart"].append("pen"))  # type: ignore[union-attr]
    assert c.request().get("cart") == ["pen"]


def test_in_place_changes_stay_in_their_request_until_committed(
    engine: Engine, store: SessionStore
) -> None:
    """Stores may hand the same record to concurrent requests (read caches): one request's
    in-place change to a list or dict must not show in another, nor survive if never committed."""
    c = Client(engine, store)
    login(c)
    c.request(lambda s: s.update({"cart": ["pen"], "prefs": {"theme": "dark"}}))
    a, fa = c.begin()
    b, fb = Client(engine, store, cookie=c.cookie).begin()
    cart = a["cart"]
    assert isinstance(cart, list)
    cart.append("ink")
    prefs = a["prefs"]
    assert isinstance(prefs, dict)
    prefs["theme"] = "light"
    assert a["cart"] is cart and a.get("cart") == ["pen", "ink"]  # the request's own copy
    assert b["cart"] == ["pen"] and b["prefs"] == {"theme": "dark"}  # untouched elsewhere
    assert a.record is not None and a.record.data["cart"] == ["pen"]  # the record too
    # A request that never commits (the app failed) leaves nothing behind.
    assert c.request().get("cart") == ["pen"]
    # One that commits writes its change, and only then do others see it.
    c.finish(a, fa)
    assert c.request().get("cart") == ["pen", "ink"]
    assert c.request().get("prefs") == {"theme": "light"}
    c.finish(b, fb)  # b read but changed nothing: it does not write its stale copy back
    assert c.request().get("cart") == ["pen", "ink"]


def test_request_in_flight_during_logout_cannot_revive(
    engine: Engine, store: SessionStore, recorder: Recorder
) -> None:
    c = Client(engine, store)
    login(c)
    cookie = c.cookie
    slow, slow_facts = Client(engine, store, cookie=cookie).begin()
    assert slow.record is not None
    c.request(lambda s: s.logout())
    slow["late"] = "write"
    Client(engine, store).finish(slow, slow_facts)
    assert not Client(engine, store, cookie=cookie).request().is_authenticated
    assert isinstance(store.get(slow.record.key), Tombstone)
    assert EventKind.WRITE_AFTER_REVOKE in recorder.kinds()


def test_request_in_flight_during_revocation_cannot_rotate_it_back(
    engine: Engine, store: SessionStore, clock: ManualClock
) -> None:
    c = Client(engine, store)
    login(c)
    clock.advance(engine.policy.rotate_every)
    slow, slow_facts = c.begin()  # due for periodic rotation
    run_sync(engine.revoke_user("alice"), store)
    out = c.finish(slow, slow_facts)
    assert out.set_cookie is not None and "Max-Age=0" in out.set_cookie
    assert store.user_sessions("alice") == []


# -- per-user index ------------------------------------------------------------------------------


def test_list_and_revoke_user_sessions(
    engine: Engine, store: SessionStore, clock: ManualClock
) -> None:
    phone, laptop, tablet = (Client(engine, store, ua=ua) for ua in ("phone", "laptop", "tablet"))
    for c in (phone, laptop, tablet):
        clock.advance(1)
        login(c)
    current = laptop.request()
    rows = run_sync(engine.list_sessions("alice", current), store)
    assert [r.user_agent for r in rows] == ["phone", "laptop", "tablet"]
    assert [r.current for r in rows] == [False, True, False]
    assert run_sync(engine.revoke_session("alice", rows[0].ref), store)
    assert not phone.request().is_authenticated
    laptop.request(lambda s: s.revoke_other_sessions())
    assert not tablet.request().is_authenticated
    assert laptop.request().user_id == "alice"
    assert len(run_sync(engine.list_sessions("alice"), store)) == 1
    assert run_sync(engine.revoke_user("alice"), store)
    assert not laptop.request().is_authenticated


def test_revoke_session_needs_matching_user(engine: Engine, store: SessionStore) -> None:
    c = Client(engine, store)
    login(c)
    ref = c.request().ref
    assert not run_sync(engine.revoke_session("bob", ref), store)
    assert c.request().user_id == "alice"


# -- key rotation ----------------------------------------------------------------------------------


def test_secret_key_rotation_keeps_sessions(store: SessionStore, clock: ManualClock) -> None:
    old_key, new_key = b"o" * 32, b"n" * 32
    c = Client(Engine(Policy(secret_keys=(old_key,)), clock=clock), store)
    login(c)
    c.engine = Engine(Policy(secret_keys=(new_key, old_key)), clock=clock)
    assert c.request().user_id == "alice"
    c.request(lambda s: s.rotate())
    c.engine = Engine(Policy(secret_keys=(new_key,)), clock=clock)
    assert c.request().user_id == "alice"


# -- policy validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field_name"),
    [
        ({"cookie": {"path": "/app"}}, "cookie.path"),
        ({"cookie": {"name": "sid", "same_site": "None", "secure": False}}, "cookie.same_site"),
        ({"cookie": {"secure": False}}, "cookie.secure"),
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"rotation_grace": 1000, "rotate_every": 900}, "rotation_grace"),
        ({"max_sessions_per_user": -1}, "max_sessions_per_user"),
        ({"on_session_limit": "evict-newest"}, "on_session_limit"),
        ({"secret_keys": (b"short",)}, "secret_keys"),
        ({"secret_keys": ()}, "secret_keys"),
        ({"secret_keys": b"x" * 32}, "secret_keys"),
    ],
)
def test_policy_refuses_contradictions(kwargs: dict[str, Any], field_name: str) -> None:
    args: dict[str, Any] = {"secret_keys": (SECRET,)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=field_name.replace(".", r"\.")):
        if "cookie" in args:
            args["cookie"] = CookiePolicy(**args["cookie"])
        Policy(**args)
