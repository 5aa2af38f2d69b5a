"""``logout()`` and then a value ("You have been signed out" for the next page), in-process
with a manual clock, on every store: the ended session ends exactly as a plain logout ends it,
and the values set after ``logout()`` start a new anonymous session made as any other."""

from __future__ import annotations

from typing import Any

import pytest

from sessionwarden import tokens
from sessionwarden.clock import ManualClock
from sessionwarden.core import Engine, Outcome, Session
from sessionwarden.core.base import SiteData, site_data_to_clear
from sessionwarden.core.commit import CommitPlan, plan_commit
from sessionwarden.core.ended import IDLE, REPLACED, SIGNED_OUT
from sessionwarden.core.session import STEP_UP_KEY, ReauthenticationRequired
from sessionwarden.events import EventKind
from sessionwarden.policy import Policy
from sessionwarden.records import SessionRecord, Tombstone
from sessionwarden.stores.base import SessionStore

from .conftest import Recorder
from .test_engine import Client, CountingStore

FLASH = "You have been signed out"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def engine(policy: Policy, clock: ManualClock, recorder: Recorder) -> Engine:
    return Engine(policy, clock=clock, sink=recorder)


def signed_in(engine: Engine, store: SessionStore) -> tuple[Client, SessionRecord]:
    """alice, signed in with a card number, a step-up grant and a CSRF secret."""
    c = Client(engine, store)
    c.request(lambda s: s.login("alice"))
    c.request(lambda s: s.update({"card": "4242", "cart": ["book"]}))
    c.request(lambda s: s.grant_step_up("transfer:bob:10"))
    record = c.request(lambda s: s.csrf_secret()).record
    assert record is not None and record.user_id == "alice" and STEP_UP_KEY in record.data
    return c, record


def sign_out_with(*values: tuple[str, Any]) -> Any:
    def handler(s: Session) -> None:
        s.logout()
        for key, value in values:
            s[key] = value

    return handler


def test_the_value_set_after_logout_starts_a_new_anonymous_session(
    engine: Engine, store: SessionStore, recorder: Recorder
) -> None:
    c, old = signed_in(engine, store)
    old_cookie = c.cookie
    old_token = tokens.mask_token(old.csrf_secret)
    recorder.events.clear()
    c.request(sign_out_with(("flash", FLASH)))
    out = c.last
    assert out is not None and out.logged_out and out.issued and not out.authenticated
    assert out.set_cookie is not None and "Max-Age=0" not in out.set_cookie
    assert c.cookie is not None and c.cookie != old_cookie
    # The next page: the message alone, no user, nothing of alice's session.
    page = c.request()
    record = page.record
    assert record is not None and record.user_id is None and record.auth_at is None
    assert dict(page.items()) == {"flash": FLASH}
    assert record.key != old.key and record.lineage != old.lineage
    assert record.fingerprint is None and record.dbsc is None
    assert record.csrf_secret and record.csrf_secret != old.csrf_secret
    assert not tokens.verify_masked_token(old_token, record.csrf_secret)
    assert tokens.verify_masked_token(tokens.mask_token(record.csrf_secret), record.csrf_secret)
    with pytest.raises(ReauthenticationRequired):
        page.require_step_up("transfer:bob:10")
    # The old session ended as a plain logout ends it, and then the new one was made.
    kinds = [e.kind for e in recorder.events[:2]]
    assert kinds == [EventKind.LOGGED_OUT, EventKind.CREATED]
    logged_out, created = recorder.events[:2]
    assert logged_out.ref == tokens.ref_of(old.key) and logged_out.user_id == "alice"
    assert created.ref == tokens.ref_of(record.key) and created.user_id is None
    assert created.session != logged_out.session
    found = store.get(old.key)
    assert isinstance(found, Tombstone) and found.reason == "logout"
    # The old cookie: refused, reported as a replay, told why it ended.
    thief = Client(engine, store, cookie=old_cookie)
    loaded = thief.run(engine.load(thief.facts()))
    assert loaded.clear_cookie and loaded.ended == SIGNED_OUT
    assert loaded.session.record is None
    replay = recorder.events[-1]
    assert replay.kind == EventKind.REPLAY_REVOKED and replay.reason == "logout"
    assert replay.user_id == "alice"


def test_after_logout_the_session_reads_as_empty(engine: Engine, store: SessionStore) -> None:
    """The ended session's values are not read again in the request that signs out: a message
    queue read and appended to after ``logout()`` (as Flask's ``flash()`` does) starts the new
    session with the new message alone, not the signed-out user's unread ones."""
    c, _ = signed_in(engine, store)
    c.request(lambda s: s.update({"_flashes": [["info", "a transfer to bob is waiting"]]}))
    seen: dict[str, Any] = {}

    def handler(s: Session) -> None:
        s.logout()
        seen.update(card=s.get("card"), keys=list(s.keys()), has="cart" in s, n=len(list(s)))
        flashes = s.get("_flashes", [])
        assert isinstance(flashes, list)
        flashes.append(["info", FLASH])
        s["_flashes"] = flashes

    c.request(handler)
    assert seen == {"card": None, "keys": [], "has": False, "n": 0}
    page = c.request()
    assert dict(page.items()) == {"_flashes": [["info", FLASH]]}


def test_only_the_values_set_after_logout_come_along(
    engine: Engine, store: SessionStore
) -> None:
    """Set before ``logout()``, set after and removed again, a step-up grant written by hand:
    none of them; a list set after and then changed in place: as changed."""
    c, _ = signed_in(engine, store)

    def handler(s: Session) -> None:
        s["before"] = 1
        s.logout()
        s["gone"] = 2
        del s["gone"]
        s[STEP_UP_KEY] = {"x": ["alice", 9e9]}
        messages: list[Any] = []
        s["messages"] = messages
        messages.append(FLASH)

    c.request(handler)
    assert dict(c.request().items()) == {"messages": [FLASH]}


@pytest.mark.parametrize(
    "handler",
    [
        lambda s: s.logout(),
        lambda s: (s.logout(), s.pop("card")),
        lambda s: (s.logout(), s.clear()),
        lambda s: (s.logout(), s.__setitem__("flash", FLASH), s.pop("flash")),
        lambda s: (s.logout(), s.__setitem__("flash", FLASH), s.logout()),
        lambda s: (s.logout(), s.login("bob"), s.__setitem__("flash", FLASH), s.logout()),
    ],
    ids=["nothing", "a-deletion", "clear", "set-then-removed", "logout-again", "login-logout"],
)
def test_a_logout_without_values_after_it_starts_nothing(
    engine: Engine, store: SessionStore, recorder: Recorder, handler: Any
) -> None:
    c, old = signed_in(engine, store)
    recorder.events.clear()
    c.request(handler)
    out = c.last
    assert out is not None and out.logged_out and not out.issued
    assert out.set_cookie is not None and "Max-Age=0" in out.set_cookie
    assert c.cookie is None
    assert [e.kind for e in recorder.events] == [EventKind.LOGGED_OUT]
    assert site_data_to_clear(out, False, None) is SiteData.CLEAR
    assert isinstance(store.get(old.key), Tombstone)


def test_a_sign_in_after_logout_in_the_same_request_is_a_new_session(
    engine: Engine, store: SessionStore, recorder: Recorder
) -> None:
    """``logout(); x = ...; login("bob")`` (switching users): alice's session ends as a logout
    ends it (reported with her lineage, tombstoned, its replay reported), and bob signs in to a
    new session holding the values set since the logout alone: a new ID and lineage, no device
    binding, step-up grant or data of alice's, and the site's storage cleared beside the new
    cookie. It was a sign-in rotation of alice's session: no logout reported, and her lineage
    and device binding went over to bob's session."""
    c, old = signed_in(engine, store)
    c.request(lambda s: s.bind_device({"key": "alice-device"}))
    old = c.request().record or old
    assert old.dbsc == {"key": "alice-device"}
    old_cookie = c.cookie
    old_token = tokens.mask_token(old.csrf_secret)
    recorder.events.clear()

    def handler(s: Session) -> None:
        s.logout()
        s["flash"] = FLASH
        s.login("bob")
        s["theme"] = "dark"
        assert s.user_id == "bob" and "card" not in s

    c.request(handler)
    out = c.last
    assert out is not None and out.authenticated and out.logged_out and out.issued
    assert site_data_to_clear(out, False, None) is SiteData.CLEAR_ALL_BUT_COOKIES
    assert c.cookie not in (None, old_cookie)
    kinds = [e.kind for e in recorder.events]
    assert kinds == [EventKind.LOGGED_OUT, EventKind.CREATED, EventKind.LOGGED_IN]
    logged_out, created, logged_in = recorder.events
    assert logged_out.user_id == "alice" and logged_out.ref == tokens.ref_of(old.key)
    assert created.user_id == "bob" and logged_in.user_id == "bob"
    assert created.session == logged_in.session != logged_out.session
    page = c.request()
    record = page.record
    assert record is not None and record.user_id == "bob" and record.auth_at is not None
    assert dict(page.items()) == {"flash": FLASH, "theme": "dark"}
    assert record.key != old.key and record.lineage != old.lineage
    assert record.dbsc is None
    assert not tokens.verify_masked_token(old_token, record.csrf_secret)
    with pytest.raises(ReauthenticationRequired):
        page.require_step_up("transfer:bob:10")
    found = store.get(old.key)
    assert isinstance(found, Tombstone) and found.reason == "logout"
    assert found.lineage in ("", old.lineage)
    thief = Client(engine, store, cookie=old_cookie)
    loaded = thief.run(engine.load(thief.facts()))
    assert loaded.clear_cookie and loaded.ended == SIGNED_OUT and loaded.session.record is None
    replay = recorder.events[-1]
    assert replay.kind == EventKind.REPLAY_REVOKED and replay.user_id == "alice"
    assert replay.session == logged_out.session


def test_another_user_signing_in_ends_the_first_users_session(
    engine: Engine, store: SessionStore, recorder: Recorder
) -> None:
    """A shared computer: bob signs in on alice's session (no ``logout()``). Her session ends
    as a logout ends it, and bob's is a new one: none of her data, grants, lineage or device
    binding; storage cleared beside the new cookie. Signing in again as alice, and an
    anonymous visitor signing in, still keep the data (a rotation)."""
    c, old = signed_in(engine, store)
    c.request(lambda s: s.bind_device({"key": "alice-device"}))
    old = c.request().record or old
    old_cookie = c.cookie
    c.request(lambda s: s.login("alice"))  # the same user again: a rotation, data kept
    same = c.request().record
    assert same is not None and same.lineage == old.lineage and same.data["card"] == "4242"
    assert same.dbsc == {"key": "alice-device"}
    recorder.events.clear()
    c.request(lambda s: (s.login("bob"), s.__setitem__("theme", "dark")))
    out = c.last
    assert out is not None and out.authenticated and out.logged_out and out.issued
    assert site_data_to_clear(out, False, None) is SiteData.CLEAR_ALL_BUT_COOKIES
    kinds = [e.kind for e in recorder.events]
    assert kinds == [EventKind.LOGGED_OUT, EventKind.CREATED, EventKind.LOGGED_IN]
    assert recorder.events[0].user_id == "alice"
    page = c.request()
    record = page.record
    assert record is not None and record.user_id == "bob"
    assert dict(page.items()) == {"theme": "dark"}
    assert record.lineage != old.lineage and record.dbsc is None
    found = store.get(same.key)
    assert isinstance(found, Tombstone) and found.reason == "logout"
    assert Client(engine, store, cookie=old_cookie).request().record is None


@pytest.mark.parametrize("then_login", [False, True], ids=["message", "switch-user"])
def test_the_new_session_never_takes_an_id_the_browser_chose(
    engine: Engine, store: SessionStore, recorder: Recorder, then_login: bool
) -> None:
    """Fixation through the new session: a browser presenting an ID nobody issued (planted by
    an attacker who keeps a copy), whose page signs out and leaves a message (or signs in
    another user), gets a new ID made by the server; the planted one still reaches nothing."""
    planted = tokens.new_session_id()
    c = Client(engine, store, cookie=planted)

    def handler(s: Session) -> None:
        s.logout()
        s["flash"] = FLASH
        if then_login:
            s.login("bob")

    c.request(handler)
    assert c.cookie is not None and c.cookie != planted
    assert store.get(engine.keyring.hash_id(planted)) is None
    attacker = Client(engine, store, cookie=planted)
    assert attacker.request().record is None
    assert attacker.cookie is None or attacker.cookie != c.cookie
    page = c.request()
    assert page["flash"] == FLASH and page.user_id == ("bob" if then_login else None)


def test_a_sign_in_with_nothing_set_after_logout_is_a_new_session_too(
    engine: Engine, store: SessionStore, recorder: Recorder
) -> None:
    c, old = signed_in(engine, store)
    recorder.events.clear()
    c.request(lambda s: (s.logout(), s.login("bob")))
    assert c.last is not None and c.last.authenticated and c.last.logged_out
    record = c.request().record
    assert record is not None and record.user_id == "bob" and dict(record.data) == {}
    assert record.lineage != old.lineage
    assert [e.kind for e in recorder.events][:1] == [EventKind.LOGGED_OUT]


def test_the_new_session_lives_by_its_own_clock(
    engine: Engine, store: SessionStore, clock: ManualClock, policy: Policy
) -> None:
    """Created at the logout, idle from then on; the old one's deadlines are not its own."""
    c, _ = signed_in(engine, store)
    clock.advance(policy.idle_timeout - 5)
    c.request(sign_out_with(("flash", FLASH)))
    clock.advance(policy.idle_timeout - 5)
    page = c.request()
    assert page.record is not None and page["flash"] == FLASH
    clock.advance(policy.idle_timeout + 1)
    loaded = c.run(engine.load(c.facts()))
    assert loaded.ended == IDLE and loaded.session.record is None


def test_the_plan_of_a_logout_depends_on_the_values_after_it(engine: Engine) -> None:
    now = 1_700_000_000.0
    s = engine.new_session(None, now)
    s["before"] = 1
    s.logout()
    assert plan_commit(s, now, engine.policy) is CommitPlan.LOGOUT
    s["after"] = 2
    assert s.values_after_logout == {"after": 2}
    assert plan_commit(s, now, engine.policy) is CommitPlan.LOGOUT_AND_CREATE
    detached = engine.new_session(None, now, detached=True)
    detached.logout()
    detached["after"] = 2
    assert plan_commit(detached, now, engine.policy) is CommitPlan.NOTHING


def test_a_logout_with_a_new_session_is_one_more_store_write(
    engine: Engine, store: SessionStore
) -> None:
    """The logout's own calls, then the new session's insert (nothing else)."""
    plain, _ = signed_in(engine, store)
    counting = CountingStore(store)
    plain.store = counting  # type: ignore[assignment]
    plain.request(lambda s: s.logout())
    alone = list(counting.calls)
    flashed, _ = signed_in(engine, store)
    counting.calls.clear()
    flashed.store = counting  # type: ignore[assignment]
    flashed.request(sign_out_with(("flash", FLASH)))
    assert counting.calls == [*alone, "insert"]


@pytest.mark.parametrize(
    ("outcome", "cleared", "ended", "expected"),
    [
        (Outcome(), False, None, SiteData.KEEP),
        (Outcome("id=; Max-Age=0", logged_out=True), False, None, SiteData.CLEAR),
        (
            Outcome("id=n", logged_out=True, issued=True),
            False,
            None,
            SiteData.CLEAR_ALL_BUT_COOKIES,
        ),
        (None, True, IDLE, SiteData.CLEAR),
        (Outcome("id=n", issued=True), True, IDLE, SiteData.CLEAR_ALL_BUT_COOKIES),
        (None, True, REPLACED, SiteData.KEEP),
        (None, True, None, SiteData.KEEP),
        (Outcome("id=n", issued=True), False, None, SiteData.KEEP),
    ],
)
def test_site_data_is_cleared_by_one_rule(
    outcome: Outcome | None, cleared: bool, ended: str | None, expected: SiteData
) -> None:
    """Section D.1: a response that ends a session for its browser clears the site's data,
    never its cookies beside a new session's cookie (applied after ``Set-Cookie``)."""
    assert site_data_to_clear(outcome, cleared, ended) is expected
