""""Keep me signed in": a sign-in's own lifetime (``Session.login(user, remember=True)`` under
``Policy(remember=RememberPolicy(...))``), through both adapters with the cookie kept as a
browser keeps it and a manual clock, and through the core against every store.

What a client sees: a remembered sign-in gets a persistent cookie whose ``Max-Age`` is what
remains of the remember lifetime (a normal one a browser-session cookie, with
``CookiePolicy.persistent`` off); the server keeps it past the normal idle timeout and ends it at
the remember ones; rotations keep the choice, a sign-out or another sign-in drops it; nothing a
client sends makes a session remembered.
"""

from __future__ import annotations

from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path

import pytest

from sessionwarden.clock import ManualClock
from sessionwarden.core import Engine, Session, SessionInfo
from sessionwarden.events import EventKind
from sessionwarden.policy import Policy, RememberPolicy
from sessionwarden.stores.base import SessionStore

from .conftest import STORE_KINDS, Recorder, open_test_store
from .test_engine import Client as CoreClient
from .test_engine import run_sync
from .two_adapters import COOKIE, KINDS, Client, client

pytestmark = pytest.mark.anyio
SECRET = b"remember-me-secret-" + b"r" * 32
DAY = 86_400
REMEMBER = RememberPolicy(idle_timeout=7 * DAY, absolute_timeout=30 * DAY)
BASE = "https://localhost"
SAME_ORIGIN = {"sec-fetch-site": "same-origin"}
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _policy(**kwargs: object) -> Policy:
    return Policy(secret_keys=(SECRET,), remember=REMEMBER, **kwargs)  # type: ignore[arg-type]


def _cookie_attrs(c: Client) -> dict[str, str]:
    """The attributes (lower-case names) of the session cookie the last response set."""
    for header in c.responses[-1].headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if COOKIE in jar:
            morsel = jar[COOKIE]
            return {k: v for k, v in morsel.items() if v} | {"value": morsel.value}
    raise AssertionError("the last response set no session cookie")


async def _user(c: Client) -> str | None:
    user: str | None = (await c.request("GET", "/whoami")).json()["user"]
    return user


async def _post(c: Client, path: str) -> None:
    token = await c.token()
    r = await c.request("POST", path, headers={**SAME_ORIGIN, "x-csrf-token": token})
    assert r.status_code == 200, r.text


# -- the cookie -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_a_remembered_sign_in_gets_a_persistent_cookie_a_normal_one_does_not(
    kind: str,
) -> None:
    """``CookiePolicy.persistent`` is off (the default): a shared computer's browser forgets a
    normal sign-in when it closes; the remembered one's cookie lasts its remember lifetime.
    The sign-in's audit event says which it was."""
    with client(kind, _policy(), base=BASE) as c:
        await c.login("?remember=1")
        attrs = _cookie_attrs(c)
        assert attrs["max-age"] == str(30 * DAY)
        assert c.recorder.of(EventKind.LOGGED_IN)[-1].detail == {"remembered": True}
    with client(kind, _policy(), base=BASE) as c:
        await c.login()
        attrs = _cookie_attrs(c)
        assert "max-age" not in attrs and "expires" not in attrs
        assert c.recorder.of(EventKind.LOGGED_IN)[-1].detail == {"remembered": False}


# -- the server's timeouts --------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_the_server_keeps_a_remembered_session_past_the_normal_idle_timeout(
    kind: str,
) -> None:
    """Away for a day: the remembered session is still signed in (and its periodic rotation
    re-issues the cookie with what remains of its lifetime); a week and a second away, it has
    ended on the server, as ``session.expired.idle``."""
    policy = _policy()
    with client(kind, policy, base=BASE) as c:
        await c.login("?remember=1")
        c.clock.advance(DAY)
        assert await _user(c) == "alice"
        assert _cookie_attrs(c)["max-age"] == str(29 * DAY)  # rotated: the choice kept
        c.clock.advance(7 * DAY - 1)
        assert await _user(c) == "alice"
        c.clock.advance(7 * DAY + 1)
        assert await _user(c) is None
        assert c.recorder.count(EventKind.EXPIRED_IDLE) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_a_normal_session_ends_at_the_normal_idle_timeout(kind: str) -> None:
    """The same policy, a sign-in without "keep me signed in": the policy's ``idle_timeout``."""
    policy = _policy()
    with client(kind, policy, base=BASE) as c:
        await c.login()
        c.clock.advance(policy.idle_timeout + 1)
        assert await _user(c) is None
        assert c.recorder.count(EventKind.EXPIRED_IDLE) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_a_remembered_session_ends_at_its_absolute_timeout_however_active(
    kind: str,
) -> None:
    """Used every six days, never idle: it ends 30 days after its sign-in, not a second later;
    each rotated cookie's ``Max-Age`` is what remains of those 30 days."""
    with client(kind, _policy(), base=BASE) as c:
        await c.login("?remember=1")
        for elapsed in (6, 12, 18, 24):
            c.clock.advance(6 * DAY)
            assert await _user(c) == "alice"
            assert _cookie_attrs(c)["max-age"] == str((30 - elapsed) * DAY)
        c.clock.advance(6 * DAY - 1)
        assert await _user(c) == "alice"
        c.clock.advance(1)
        assert await _user(c) is None
        assert c.recorder.count(EventKind.EXPIRED_ABSOLUTE) == 1


# -- what keeps the choice and what drops it --------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", ["/rotate", "/reauth", "/password"])
async def test_a_rotation_keeps_the_choice(kind: str, path: str) -> None:
    """A privilege change, a re-authentication, a password change: a new ID, still remembered
    (persistent cookie, kept past the normal idle timeout)."""
    with client(kind, _policy(), base=BASE) as c:
        await c.login("?remember=1")
        c.clock.advance(3600)
        before = c.cookie
        await _post(c, path)
        assert c.cookie != before
        assert _cookie_attrs(c)["max-age"] == str(30 * DAY - 3600)
        c.clock.advance(2 * DAY)
        assert await _user(c) == "alice"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("query", ["?user=bob", ""])
async def test_a_later_sign_in_without_remember_drops_it(kind: str, query: str) -> None:
    """Another user signing in on the shared computer, or the same user signing in again
    without ticking the box: a browser-session cookie and the normal idle timeout."""
    policy = _policy()
    with client(kind, policy, base=BASE) as c:
        await c.login("?remember=1")
        await c.login(query)
        assert "max-age" not in _cookie_attrs(c)
        assert c.recorder.of(EventKind.LOGGED_IN)[-1].detail == {"remembered": False}
        c.clock.advance(policy.idle_timeout + 1)
        assert await _user(c) is None


@pytest.mark.parametrize("kind", KINDS)
async def test_a_sign_out_ends_it(kind: str) -> None:
    """Signing out ends the remembered session on the server: its cookie, replayed, is an
    ended session."""
    with client(kind, _policy(), base=BASE) as c:
        await c.login("?remember=1")
        remembered = c.cookie
        await _post(c, "/logout")
        assert await _user(c) is None
        c.cookie = remembered
        assert await _user(c) is None


# -- a client cannot make itself remembered ---------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_a_cookie_kept_past_its_lifetime_does_nothing_on_the_server(kind: str) -> None:
    """A browser (or an attacker) that keeps a browser-session cookie as if it had a long
    ``Max-Age``, and asks the sign-in route's other requests to remember, gets nothing: the
    server decides the lifetime from the sign-in alone."""
    policy = _policy()
    with client(kind, policy, base=BASE) as c:
        await c.login()
        kept = c.cookie
        assert (await c.request("GET", "/whoami?remember=1")).json() == {"user": "alice"}
        c.clock.advance(policy.idle_timeout + 1)
        c.cookie = kept
        assert await _user(c) is None


# -- still a session like any other -----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_a_remembered_session_is_still_anomaly_checked(kind: str) -> None:
    """The remembered cookie presented by another browser family (a stolen cookie) ends the
    session, as it would a normal one."""
    with client(kind, _policy(), base=BASE) as c:
        c.http.headers["user-agent"] = FIREFOX
        await c.login("?remember=1")
        c.http.headers["user-agent"] = CHROME
        assert await _user(c) is None
        assert c.recorder.count(EventKind.ANOMALY) == 1


# -- configuration ----------------------------------------------------------------------------


def test_remember_without_a_remember_policy_is_an_error() -> None:
    """Asking for a lifetime the policy does not have is an error, not a silent normal one."""
    engine = Engine(Policy(secret_keys=(SECRET,)), clock=ManualClock(1e9))
    session = engine.new_session(None, 1e9)
    with pytest.raises(ValueError, match="RememberPolicy"):
        session.login("alice", remember=True)
    remembering = Engine(_policy(), clock=ManualClock(1e9)).new_session(None, 1e9)
    with pytest.raises(TypeError):
        remembering.login("alice", remember="on")  # type: ignore[arg-type]
    remembering.login("alice", remember=True)
    assert remembering.remembered and remembering.lifetime.idle == 7 * DAY


@pytest.mark.parametrize(
    ("remember", "timeouts", "field"),
    [
        ({"idle_timeout": 0}, {}, "remember.idle_timeout"),
        ({"absolute_timeout": -1}, {}, "remember.absolute_timeout"),
        ({"idle_timeout": "7d"}, {}, "remember.idle_timeout"),
        ({"absolute_timeout": 401 * DAY}, {}, "remember.absolute_timeout"),
        ({"idle_timeout": 60}, {}, "remember.idle_timeout"),  # shorter than idle_timeout
        ({}, {"absolute_timeout": 60 * DAY}, "remember.absolute_timeout"),
    ],
)
def test_a_remember_policy_is_validated(
    remember: dict[str, object], timeouts: dict[str, float], field: str
) -> None:
    """Like the timeouts of the policy, naming the field at fault; a "remember me" shorter
    than not being remembered is refused too."""
    with pytest.raises(ValueError, match=field):
        Policy(secret_keys=(SECRET,), remember=RememberPolicy(**remember), **timeouts)  # type: ignore[arg-type]


# -- every store, through the core ------------------------------------------------------------


@pytest.fixture(params=STORE_KINDS)
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    with open_test_store(request.param, request, tmp_path) as s:
        yield s


def test_remembered_on_every_store(any_store: SessionStore) -> None:
    """The choice is kept in the record's core-owned flags, which every store persists: listed
    as remembered, kept past the normal idle timeout and through rotations, ended at the
    remember idle timeout. The application's own data named like the flag changes nothing."""
    clock = ManualClock(1_700_000_000.0)
    engine = Engine(_policy(), clock=clock, sink=Recorder())
    alice, carol = CoreClient(engine, any_store), CoreClient(engine, any_store)
    alice.request(lambda s: s.login("alice", remember=True))

    def forge(s: Session) -> None:
        s.login("carol")
        s["remember"] = True
        s["flags"] = {"remember": True}

    carol.request(forge)
    listed = {i.user_id: i for u in ("alice", "carol") for i in _listed(engine, any_store, u)}
    assert listed["alice"].remembered and listed["alice"].to_dict()["remembered"] is True
    assert not listed["carol"].remembered
    clock.advance(DAY)  # past the normal idle timeout: a periodic rotation
    first = alice.cookie
    assert alice.request().user_id == "alice" and alice.cookie != first
    assert carol.request().user_id is None
    clock.advance(7 * DAY + 1)
    assert alice.request().user_id is None


def test_a_remembered_session_is_capped_and_revocable(any_store: SessionStore) -> None:
    clock = ManualClock(1_700_000_000.0)
    engine = Engine(_policy(max_sessions_per_user=1), clock=clock, sink=Recorder())
    phone, laptop = CoreClient(engine, any_store), CoreClient(engine, any_store)
    phone.request(lambda s: s.login("alice", remember=True))
    laptop.request(lambda s: s.login("alice", remember=True))
    assert phone.request().user_id is None  # evicted by the cap
    (info,) = _listed(engine, any_store, "alice")
    assert info.remembered
    assert run_sync(engine.revoke_session("alice", info.ref), any_store)
    assert laptop.request().user_id is None


def _listed(engine: Engine, store: SessionStore, user: str) -> list[SessionInfo]:
    listed: list[SessionInfo] = run_sync(engine.list_sessions(user), store)
    return listed
