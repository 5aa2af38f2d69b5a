"""A stolen, planted, revoked or aged session ID, as the owner and the attacker see it from the
outside: each scenario runs through both adapters (Starlette over ASGI, Flask over WSGI), every
client with its own address, browser and httpx cookie jar, the clock moved by hand, asserting
only statuses, bodies and the audit events.

Covered: revocation is seen by the very next request (ASVS 7.2.1) and disabling an account ends
it on every client (7.4.2); a planted ID is never adopted and login issues a new one (7.2.4,
Session Management cheat sheet "strict mode"); idle and absolute timeouts, a passive polling path
that does not keep a session alive, and an expired ID reported again when it comes back (7.3.1,
7.3.2); a rotated-out ID is honoured inside its grace window only, and its later replay ends
the session it became; a copied cookie used from another browser is revoked, from a nearby
address allowed, from another network reported, and from two networks in turn revoked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from flask import Flask

from sessionwarden.asgi import SessionWardenMiddleware
from sessionwarden.clock import ManualClock
from sessionwarden.events import EventKind
from sessionwarden.integrations.flask import SessionWarden
from sessionwarden.policy import Action, MonitorPolicy, Policy, RiskSignal
from sessionwarden.stores import InlineAsyncStore, MemoryStore
from sessionwarden.tokens import new_session_id

from .conftest import SECRET, Recorder
from .two_adapters import BASE, COOKIE, KINDS, _flask, _starlette

pytestmark = pytest.mark.anyio
ADAPTERS = pytest.mark.parametrize("kind", KINDS)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Client:
    """One browser: its own address, user agent and cookie jar."""

    http: httpx.Client | httpx.AsyncClient

    async def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        if isinstance(self.http, httpx.AsyncClient):
            return await self.http.request(method, path, **kw)
        return self.http.request(method, path, **kw)

    async def login(self) -> str:
        token = (await self.request("GET", "/token")).json()["csrf_token"]
        r = await self.request("POST", "/login", headers={"x-csrf-token": token})
        assert r.status_code == 200, r.text
        return self.cookie

    @property
    def cookie(self) -> str:
        return self.http.cookies.get(COOKIE) or ""

    @cookie.setter
    def cookie(self, value: str) -> None:
        self.http.cookies.clear()
        self.http.cookies.set(COOKIE, value, domain="app.test")

    async def user(self, path: str = "/whoami") -> str | None:
        r = await self.request("GET", path)
        assert r.status_code == 200, r.text
        return r.json()["user"]  # type: ignore[no-any-return]


@dataclass
class Site:
    """The application behind one adapter, its clock and its events."""

    kind: str
    app: SessionWardenMiddleware | Flask
    warden: SessionWardenMiddleware | SessionWarden
    clock: ManualClock
    events: Recorder
    clients: list[httpx.Client | httpx.AsyncClient] = field(default_factory=list)

    def client(self, peer: str = "198.51.100.7", ua: str = FIREFOX) -> Client:
        http: httpx.Client | httpx.AsyncClient
        if isinstance(self.app, SessionWardenMiddleware):
            transport = httpx.ASGITransport(app=self.app, client=(peer, 50000))
            http = httpx.AsyncClient(transport=transport, base_url=BASE)
        else:
            wsgi = httpx.WSGITransport(app=self.app, remote_addr=peer)
            http = httpx.Client(transport=wsgi, base_url=BASE)
        http.headers["user-agent"] = ua
        self.clients.append(http)
        return Client(http)

    async def call(self, name: str, *args: Any, **kw: Any) -> Any:
        """An operator call (``revoke_user``, ``list_sessions``, ...) on either adapter."""
        result = getattr(self.warden, name)(*args, **kw)
        if isinstance(self.warden, SessionWardenMiddleware):
            result = await result
        return result

    def reasons(self, kind: EventKind) -> list[str]:
        return [e.reason for e in self.events.of(kind)]


@asynccontextmanager
async def site(kind: str, **settings: Any) -> AsyncIterator[Site]:
    policy = Policy(secret_keys=(SECRET,), allowed_hosts=("app.test",), **settings)
    clock, events, store = ManualClock(), Recorder(), MemoryStore()
    the_site: Site
    if kind == "asgi":
        mw = SessionWardenMiddleware(
            _starlette(), policy=policy, store=InlineAsyncStore(store), clock=clock, sink=events
        )
        the_site = Site(kind, mw, mw, clock, events)
    else:
        flask_app = _flask()
        ext = SessionWarden(flask_app, policy=policy, store=store, clock=clock, sink=events)
        the_site = Site(kind, flask_app, ext, clock, events)
    try:
        yield the_site
    finally:
        for http in the_site.clients:
            if isinstance(http, httpx.AsyncClient):
                await http.aclose()
            else:
                http.close()


# -- revocation ---------------------------------------------------------------------------------


@ADAPTERS
async def test_a_revoked_session_is_refused_on_the_very_next_request(kind: str) -> None:
    async with site(kind) as s:
        owner = s.client()
        await owner.login()
        (info,) = await s.call("list_sessions", "alice")
        assert await s.call("revoke_session", "alice", info.ref, by="admin")
        assert await owner.user() is None


@ADAPTERS
async def test_disabling_an_account_ends_it_on_every_client(kind: str) -> None:
    async with site(kind) as s:
        laptop, phone = s.client(), s.client(peer="203.0.113.40", ua=CHROME)
        await laptop.login()
        await phone.login()
        assert len(await s.call("list_sessions", "alice")) == 2
        await s.call("revoke_user", "alice")
        assert await laptop.user() is None and await phone.user() is None


# -- fixation -----------------------------------------------------------------------------------


@ADAPTERS
async def test_a_planted_id_is_never_adopted_and_login_issues_another(kind: str) -> None:
    async with site(kind) as s:
        victim = s.client()
        planted = new_session_id()
        victim.cookie = planted
        assert await victim.user() is None
        assert s.events.of(EventKind.UNKNOWN_ID)
        assert victim.cookie != planted  # a fresh anonymous ID replaced it
        victim.cookie = planted  # planted again just before the login
        await victim.login()
        assert victim.cookie and victim.cookie != planted
        attacker = s.client(peer="203.0.113.66")
        attacker.cookie = planted
        assert await attacker.user() is None


# -- timeouts -----------------------------------------------------------------------------------


@ADAPTERS
async def test_idle_timeout_ends_a_quiet_session_and_requests_keep_it_alive(kind: str) -> None:
    async with site(kind, idle_timeout=2, absolute_timeout=100, rotate_every=0) as s:
        owner = s.client()
        cookie = await owner.login()
        for _ in range(5):  # a request every second: alive
            s.clock.advance(1)
            assert await owner.user() == "alice"
        s.clock.advance(3)
        assert await owner.user() is None
        assert s.reasons(EventKind.EXPIRED_IDLE) == [""]
        copy = s.client(peer="203.0.113.9")
        copy.cookie = cookie  # the expired ID comes back: reported again, never resurrected
        assert await copy.user() is None
        assert s.reasons(EventKind.EXPIRED_IDLE) == ["", "again"]


@ADAPTERS
async def test_absolute_timeout_ends_a_busy_session(kind: str) -> None:
    async with site(kind, idle_timeout=2, absolute_timeout=5, rotate_every=0) as s:
        owner = s.client()
        await owner.login()
        seen = []
        for _ in range(6):
            s.clock.advance(1)
            seen.append(await owner.user())
        assert seen == ["alice"] * 4 + [None, None]
        assert s.events.count(EventKind.EXPIRED_ABSOLUTE) == 1


@ADAPTERS
async def test_polling_a_passive_path_does_not_keep_a_session_alive(kind: str) -> None:
    async with site(kind, idle_timeout=3, rotate_every=0, passive_paths=("/poll",)) as s:
        tab = s.client()
        await tab.login()
        seen = []
        for _ in range(4):
            s.clock.advance(1)
            seen.append(await tab.user("/poll"))
        assert seen == ["alice", "alice", None, None]


# -- rotation -----------------------------------------------------------------------------------


@ADAPTERS
async def test_a_rotated_out_id_works_inside_its_grace_only_and_its_replay_ends_the_session(
    kind: str,
) -> None:
    async with site(kind, rotate_every=60, rotation_grace=10) as s:
        owner, thief = s.client(), s.client()
        first = await owner.login()
        s.clock.advance(61)
        assert await owner.user() == "alice"
        assert owner.cookie != first  # rotated
        thief.cookie = first
        s.clock.advance(5)
        assert await thief.user() == "alice"  # a request in flight during the rotation
        s.clock.advance(6)
        thief.cookie = first
        assert await thief.user() is None
        assert s.events.count(EventKind.REPLAY_ROTATED) == 1
        assert await owner.user() is None  # the session the old ID became ended too


# -- a copied cookie used elsewhere --------------------------------------------------------------


@ADAPTERS
async def test_a_copied_cookie_in_another_browser_is_revoked(kind: str) -> None:
    async with site(kind) as s:
        owner, thief = s.client(), s.client(ua=CHROME)
        thief.cookie = await owner.login()
        assert await thief.user() is None
        assert "agent-changed" in s.reasons(EventKind.ANOMALY)[0]
        assert await owner.user() is None


@ADAPTERS
async def test_a_nearby_address_is_allowed_and_another_network_is_reported(kind: str) -> None:
    async with site(kind) as s:
        owner = s.client(peer="203.0.113.5")
        cookie = await owner.login()
        nearby = s.client(peer="203.0.113.77")  # the same /24
        nearby.cookie = cookie
        assert await nearby.user() == "alice"
        assert not s.events.of(EventKind.ANOMALY)
        elsewhere = s.client(peer="198.18.7.9")  # another /16
        elsewhere.cookie = cookie
        assert await elsewhere.user() == "alice"  # one move is tolerated (a phone, a VPN)
        assert s.reasons(EventKind.ANOMALY) == ["network-changed"]


@ADAPTERS
async def test_use_from_two_networks_in_turn_revokes_the_session(kind: str) -> None:
    async with site(kind) as s:
        owner = s.client(peer="203.0.113.5")
        thief = s.client(peer="198.18.7.9")
        thief.cookie = await owner.login()
        seen = []
        for _ in range(2):
            seen.append(await thief.user())
            seen.append(await owner.user())
        assert seen[0] == "alice" and None in seen
        assert "network-flapping" in s.reasons(EventKind.ANOMALY)
        assert await owner.user() is None and await thief.user() is None
        assert s.events.of(EventKind.REVOKED)


# -- the application's own risk decision -----------------------------------------------------------


@ADAPTERS
async def test_the_applications_risk_decision_gets_each_signal_and_is_applied(kind: str) -> None:
    """``MonitorPolicy.decide`` (ASVS 8.2.4: pluggable risk evaluation, e.g. an ASN or
    impossible-travel check) receives a typed signal for a changed browser, a changed network,
    two networks in turn and a replayed rotated-out ID, and its answer is what happens."""
    seen: list[RiskSignal] = []
    answers: dict[str, Action | None] = {}

    def decide(signal: RiskSignal) -> Action | None:
        seen.append(signal)
        return answers.get(signal.reasons[0])

    monitor = MonitorPolicy(decide=decide)
    async with site(kind, monitor=monitor, rotate_every=60, rotation_grace=10) as s:
        owner = s.client(peer="203.0.113.5")
        cookie = await owner.login()
        # Another browser: high risk, revoke by default; the decision only logs it.
        answers["agent-changed"] = "log"
        other_browser = s.client(peer="203.0.113.5", ua=CHROME)
        other_browser.cookie = cookie
        assert await other_browser.user() == "alice"
        signal = seen[-1]
        assert (signal.reasons, signal.risk, signal.action) == (
            ("agent-changed",),
            "high",
            "revoke",
        )
        assert signal.user_id == "alice" and signal.client_ip == "203.0.113.5"
        assert signal.user_agent == CHROME and signal.ref and cookie not in repr(signal)
        assert (
            signal.previous["ip"] == "203.0.113.5" and signal.current["ua"] != signal.previous["ua"]
        )
        # Another network: low risk, logged by default; the decision revokes.
        answers["network-changed"] = "revoke"
        elsewhere = s.client(peer="198.18.7.9")
        elsewhere.cookie = owner.cookie
        assert await elsewhere.user() is None
        assert seen[-1].reasons == ("network-changed",) and seen[-1].risk == "low"
        assert await owner.user() is None
        assert s.events.of(EventKind.ANOMALY)[-1].detail["action"] == "revoke"
        # A rotated-out ID after its grace: the decision keeps the session it became alive.
        answers["replay-of-rotated-id"] = "log"
        first = await owner.login()
        s.clock.advance(61)
        assert await owner.user() == "alice"  # rotated
        s.clock.advance(11)
        thief = s.client(peer="203.0.113.5")
        thief.cookie = first
        assert await thief.user() is None
        assert (
            seen[-1].reasons == ("replay-of-rotated-id",)
            and seen[-1].ref == s.events.of(EventKind.ROTATED)[-1].ref
        )
        assert await owner.user() == "alice"


@ADAPTERS
async def test_a_failing_risk_decision_falls_back_to_the_policy(kind: str) -> None:
    def decide(signal: RiskSignal) -> Action | None:
        raise RuntimeError("resolver down")

    async with site(kind, monitor=MonitorPolicy(decide=decide)) as s:
        owner, thief = s.client(), s.client(ua=CHROME)
        thief.cookie = await owner.login()
        assert await thief.user() is None  # revoked, as the policy says
        assert await owner.user() is None


def test_an_answer_that_is_no_action_is_not_taken() -> None:
    signal = RiskSignal(("agent-changed",), "high", "revoke", "alice", "ref", "192.0.2.1", "x")
    assert MonitorPolicy(decide=lambda s: "explode").action_for(signal) == "revoke"  # type: ignore[arg-type,return-value]
    assert MonitorPolicy(decide=lambda s: None).action_for(signal) == "revoke"
    assert MonitorPolicy(decide=lambda s: "allow").action_for(signal) == "allow"
