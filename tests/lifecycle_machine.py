"""A stateful fuzzer of the session lifecycle, through the real ASGI middleware on a real store.

:class:`LifecycleMachine` (a hypothesis ``RuleBasedStateMachine``) plays several browsers, an
attacker who kept a copy of every session ID ever issued, and an operator, against
:class:`~sessionwarden.asgi.SessionWardenMiddleware` with a :class:`ManualClock`. Its rules:
sign in (several browsers of one user, so the per-user cap is exercised), write, read, sign out,
rotate, "log out other devices", revoke one session, "sign out everywhere", two requests begun
on one ID and committed in either order (with a clock step or a revocation between), a request
on a rotated-out ID inside its grace window, clock steps (small, across the touch interval, the
rotation interval, the grace window, the idle and absolute deadlines) and replays of every ID.

The model knows only what the specification guarantees, and checks only safety:

* **dead stays dead**: an ID that was signed out, revoked, rotated out explicitly (or whose
  grace window ended), whose session expired for certain (idle or absolute), or that was seen
  dead once, never answers with a signed-in user or the session's data again; "log out other
  devices" rotates explicitly and ends the user's other sessions, all of them when a concurrent
  request moved or ended its own session first;
* **one live ID per lineage**: a login lineage never has two stored records at once;
* **a write never revives**: no request that was in flight when its session died brings it back
  (the two rules above, checked after every commit, in either order);
* **the absolute deadline never moves later** for one login lineage (what the application sees
  and the cookie's lifetime);
* **the cap**: no user ever has more stored (or listed) sessions than the cap.

A *lineage* is what one login (or the first write of an anonymous visitor) starts: the app
stores a serial number under ``lin`` when it signs in, and rotations carry the data along.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sessionwarden import tokens
from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.policy import MonitorPolicy, Policy
from sessionwarden.records import SessionRecord

SECRET = b"L" * 32
IDLE, ABSOLUTE, ROTATE, GRACE, TOUCH, CAP = 100.0, 300.0, 30.0, 5.0, 10.0, 2
POLICY = Policy(
    secret_keys=(SECRET,),
    idle_timeout=IDLE,
    absolute_timeout=ABSOLUTE,
    rotate_every=ROTATE,
    rotation_grace=GRACE,
    touch_interval=TOUCH,
    max_sessions_per_user=CAP,
    # Every request comes from one network and one browser: no risk rule fires on its own.
    monitor=MonitorPolicy(unknown_id_limit_per_minute=0),
)
USERS = ("alice", "bob")
CLIENTS = 4
UA = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
ACTIONS = ("read", "write", "login", "logout", "rotate", "revoke_others")
#: Clock steps: small, and just before / just after each interval of the policy.
STEPS = (
    0.5,
    1.0,
    TOUCH - 1,
    TOUCH + 1,
    GRACE - 1,
    GRACE + 1,
    ROTATE - 1,
    ROTATE + 1,
    IDLE - 1,
    IDLE + 1,
    ABSOLUTE / 2,
)

#: Totals of every machine run in this process (the long run prints them).
TOTALS = {"examples": 0, "steps": 0, "requests": 0, "violations": 0}


class Violation(AssertionError):
    """An invariant of the lifecycle did not hold."""


@dataclass
class Lineage:
    lin: str
    user: str | None
    start: float  # the commit that started it: the server's created_at is never later
    idle_deadline: float  # certainly expired from then on (the server's deadline is earlier)
    ids: list[str] = field(default_factory=list)
    dead: str | None = None  # why it certainly ended
    created_seen: float | None = None  # the created_at the app first saw

    @property
    def abs_deadline(self) -> float:
        return self.start + ABSOLUTE


@dataclass
class Seen:
    """What the application saw of its session when the request reached it, and did."""

    user: str | None
    lin: str | None
    data: dict[str, Any]
    created_at: float | None
    expires_at: float | None
    lin_after: str | None = None


@dataclass
class Result:
    presented: str | None
    action: str
    user: str  # who signs in, for a login
    loaded_at: float
    committed_at: float
    status: int
    seen: Seen | None
    cookie: str | None  # a new ID, "" when the cookie is cleared, None when untouched
    max_age: float | None


def _parse_set_cookie(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, float | None]:
    cookie: str | None = None
    max_age: float | None = None
    for name, value in headers:
        if name.lower() != b"set-cookie":
            continue
        text = value.decode("latin-1")
        first, *attrs = [p.strip() for p in text.split(";")]
        cname, _, cvalue = first.partition("=")
        if cname != POLICY.cookie.name or any(a.lower().startswith("domain=") for a in attrs):
            continue
        cookie = cvalue
        max_age = None
        for a in attrs:
            if a.lower().startswith("max-age="):
                max_age = float(a.split("=", 1)[1])
    return cookie, max_age


class _App:
    """The application behind the middleware: records what it saw, then does one action."""

    def __init__(self) -> None:
        self.serial = itertools.count(1)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        fuzz = scope["fuzz"]
        session = get_session(scope)
        seen = Seen(
            user=session.user_id,
            lin=_str_or_none(session.get("lin")),
            data=dict(session.items()),
            created_at=session.created_at,
            expires_at=session.expires_at,
        )
        fuzz["seen"] = seen
        action = fuzz["action"]
        if action == "login":
            session.login(fuzz["user"])
            session["lin"] = f"L{next(self.serial)}"
        elif action == "logout":
            session.logout()
        elif action == "rotate":
            session.rotate()
        elif action == "write":
            session["w"] = next(self.serial)
        elif action == "revoke_others":
            session.revoke_other_sessions()
        if action in ("write", "rotate", "revoke_others") and session.get("lin") is None:
            # Every session this app creates is labelled at once (an anonymous lineage), so two
            # concurrent requests never label one session differently.
            session["lin"] = f"A{next(self.serial)}"
        seen.lin_after = _str_or_none(session.get("lin"))
        arrived: asyncio.Event | None = fuzz.get("arrived")
        gate: asyncio.Event | None = fuzz.get("gate")
        if arrived is not None and gate is not None:
            arrived.set()
            await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


class _Quiet:
    """Events are not what this machine checks; thousands of them would only slow it."""

    def emit(self, event: Any) -> None:
        pass


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class LifecycleMachine(RuleBasedStateMachine):
    """See the module's docstring. Subclasses name the store (:attr:`open_store`)."""

    #: Returns ``(store URL, cleanup)`` for one example.
    open_store: ClassVar[Callable[[], tuple[str, Callable[[], None]]]]

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(1_700_000_000.0)
        self.runner = asyncio.Runner()
        url, self.cleanup = type(self).open_store()
        self.mw = SessionWardenMiddleware(
            _App(), policy=POLICY, store=url, clock=self.clock, sink=_Quiet()
        )
        self.keyring = self.mw.engine.keyring
        self.jars: list[str | None] = [None] * CLIENTS
        self.issued: list[str] = []
        self.lineage_of: dict[str, str | None] = {}  # ID -> lineage (None: not known)
        self.lineages: dict[str, Lineage] = {}
        self.dead_ids: dict[str, float] = {}  # ID -> time from which it is certainly dead
        self.port = itertools.count(40000)
        # Session IDs from a seeded generator: which of two sessions created in the same
        # instant is the older (the cap evicts it) follows their IDs, and hypothesis needs the
        # same rules to do the same things when it replays an example.
        rng = random.Random(0)
        self._real_new_id = tokens.new_session_id
        if not os.environ.get("SESSIONWARDEN_FUZZ_RANDOM_IDS"):
            tokens.new_session_id = lambda: base64.urlsafe_b64encode(rng.randbytes(32)).decode()[
                :43
            ]
        TOTALS["examples"] += 1

    # -- driving requests ----------------------------------------------------------------------
    def _scope(self, cookie: str | None, action: str, user: str) -> dict[str, Any]:
        headers = [(b"host", b"localhost"), (b"user-agent", UA)]
        if cookie is not None:
            headers.append((b"cookie", f"{POLICY.cookie.name}={cookie}".encode()))
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "https",
            "path": f"/{action}",
            "raw_path": f"/{action}".encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", next(self.port)),
            "server": ("localhost", 443),
            "fuzz": {"action": action, "user": user},
        }

    async def _request(
        self,
        cookie: str | None,
        action: str,
        user: str,
        gate: asyncio.Event | None = None,
        arrived: asyncio.Event | None = None,
    ) -> Result:
        scope = self._scope(cookie, action, user)
        scope["fuzz"]["gate"], scope["fuzz"]["arrived"] = gate, arrived
        loaded_at = self.clock.now()
        started: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.append(message)

        await self.mw(scope, receive, send)
        TOTALS["requests"] += 1
        assert started, "no response"
        cookie_out, max_age = _parse_set_cookie(list(started[0].get("headers") or []))
        return Result(
            presented=cookie,
            action=action,
            user=user,
            loaded_at=loaded_at,
            committed_at=self.clock.now(),
            status=started[0]["status"],
            seen=scope["fuzz"].get("seen"),
            cookie=cookie_out,
            max_age=max_age,
        )

    def _do(self, client: int | None, cookie: str | None, action: str, user: str) -> Result:
        result = self.runner.run(self._request(cookie, action, user))
        self._observe(result)
        self._settle(result)
        self._deliver(client, result)
        return result

    def _deliver(self, client: int | None, result: Result) -> None:
        """A browser keeps the last cookie it was sent; a replay's new cookie goes to every
        browser that held the replayed ID (a copy of the same browser)."""
        if result.cookie is None:
            return
        new = result.cookie or None
        if client is not None:
            self.jars[client] = new
        elif result.presented is not None and new is not None:
            self.jars = [new if j == result.presented else j for j in self.jars]

    # -- the model -----------------------------------------------------------------------------
    def _certainly_dead(self, raw: str, now: float) -> str | None:
        since = self.dead_ids.get(raw)
        if since is not None and now >= since:
            return "rotated out"
        lin = self.lineage_of.get(raw)
        line = self.lineages.get(lin) if lin is not None else None
        if line is None:
            return None
        if line.dead is not None:
            return line.dead
        if now >= line.abs_deadline:
            return "absolute timeout"
        if now >= line.idle_deadline:
            return "idle timeout"
        return None

    def _fail(self, what: str, result: Result) -> None:
        TOTALS["violations"] += 1
        raise Violation(f"{what} ({result.action} at t+{result.loaded_at - 1_700_000_000.0:g})")

    def _observe(self, result: Result) -> None:
        """Check what the application saw against what must hold."""
        seen, p = result.seen, result.presented
        if seen is None or p is None:
            return
        answered = seen.user is not None or seen.lin is not None or bool(seen.data)
        dead = self._certainly_dead(p, result.loaded_at)
        if dead is not None and answered:
            self._fail(f"an ID that is dead ({dead}) answered as {seen.user!r}/{seen.lin}", result)
        known = self.lineage_of.get(p)
        if seen.lin is not None and known is not None and seen.lin != known:
            self._fail(f"an ID of lineage {known} answered as lineage {seen.lin}", result)
        line = self.lineages.get(seen.lin) if seen.lin is not None else None
        if line is None:
            return
        if line.dead is not None:
            self._fail(f"a dead lineage ({line.dead}) answered", result)
        if seen.user != line.user:
            self._fail(f"lineage of {line.user!r} answered as {seen.user!r}", result)
        if seen.created_at is not None:
            if seen.created_at > line.start:
                self._fail("created_at later than the login: the absolute deadline moved", result)
            if line.created_seen is not None and seen.created_at > line.created_seen:
                self._fail("created_at moved later within one lineage", result)
            line.created_seen = seen.created_at
        if seen.expires_at is not None and seen.expires_at > line.abs_deadline:
            self._fail("expires_at beyond the absolute deadline", result)
        # The request is activity: the server's idle deadline may be extended up to here.
        line.idle_deadline = max(line.idle_deadline, result.loaded_at + IDLE)

    def _settle(self, result: Result) -> None:
        """What the committed response certainly did."""
        seen, now = result.seen, result.committed_at
        old = self.lineages.get(seen.lin) if seen is not None and seen.lin is not None else None
        if old is not None and old.dead is None and now < old.idle_deadline:
            old.idle_deadline = max(old.idle_deadline, now + IDLE)  # a touch at commit time
        if result.cookie == "" and result.presented is not None:
            self._seen_dead(result)
        if seen is None or result.status != 200:
            return
        new = result.cookie or None
        # A signed-in lineage ends whatever raced the logout; an anonymous one that a
        # concurrent explicit rotation had moved lives on (nothing names its successor).
        signed_out = result.action == "logout" and old is not None
        if signed_out and old is not None and (old.user is not None or self._won_race(result)):
            self._end(old, "signed out")
        if result.action == "revoke_others" and old is not None and old.user is not None:
            # "Log out other devices" ends the user's other sessions, and when its own session
            # was moved or ended by a concurrent request (the race is lost), that one too: a
            # copy of the cookie that raced it must not survive.
            won = self._won_race(result)
            for line in self.lineages.values():
                if line.user == old.user and (line is not old or not won):
                    self._end(line, "other devices signed out")
        if new is None:
            return
        self.issued.append(new)
        lin = seen.lin_after
        self.lineage_of[new] = lin
        if lin is None:
            return
        line = self.lineages.get(lin)
        if line is None:  # a login, or an anonymous visitor's first write
            if old is not None and result.action == "login" and self._won_race(result):
                self._end(old, "rotated at login")
            user = result.user if result.action == "login" else seen.user
            line = self.lineages[lin] = Lineage(lin, user, now, now + IDLE)
            self._check_cookie_lifetime(line, result)
            line.ids.append(new)
            return
        if result.action in ("rotate", "revoke_others"):
            # explicit rotation ("log out other devices" rotates too): every older ID dies at once
            for raw in line.ids:
                self.dead_ids[raw] = min(self.dead_ids.get(raw, now), now)
        else:
            for raw in line.ids:  # periodic: the older IDs die when the grace ends
                self.dead_ids[raw] = min(self.dead_ids.get(raw, now + GRACE), now + GRACE)
        line.ids.append(new)
        self._check_cookie_lifetime(line, result)

    def _won_race(self, result: Result) -> bool:
        """Whether the request (a login, a logout) found the session it loaded, or the one a
        periodic rotation moved it to. When a concurrent explicit rotation had already moved
        it, it lost the race (a login then starts a fresh session): what that rotation issued
        lives on, as a session this request never saw."""
        p = result.presented
        return p is None or self._certainly_dead(p, result.committed_at) is None

    def _check_cookie_lifetime(self, line: Lineage, result: Result) -> None:
        if result.max_age is not None and result.committed_at + result.max_age > (
            line.abs_deadline + 1
        ):
            self._fail("the cookie outlives the absolute deadline", result)

    def _seen_dead(self, result: Result) -> None:
        """The server cleared the cookie of the newest ID of a lineage: that lineage ended
        (whatever the reason), and stays ended."""
        p = result.presented
        assert p is not None
        lin = self.lineage_of.get(p)
        line = self.lineages.get(lin) if lin is not None else None
        newest = line is not None and line.ids and line.ids[-1] == p
        if newest and line is not None and (result.seen is None or result.seen.lin is None):
            self._end(line, "seen ended")

    def _end(self, line: Lineage, why: str) -> None:
        if line.dead is None:
            line.dead = why

    # -- rules ---------------------------------------------------------------------------------
    def _step(self) -> None:
        TOTALS["steps"] += 1

    @rule(client=st.integers(0, CLIENTS - 1), user=st.sampled_from(USERS))
    def login(self, client: int, user: str) -> None:
        self._step()
        self._do(client, self.jars[client], "login", user)

    @rule(
        client=st.integers(0, CLIENTS - 1),
        action=st.sampled_from(("read", "write", "logout", "rotate", "revoke_others")),
    )
    def request(self, client: int, action: str) -> None:
        self._step()
        self._do(client, self.jars[client], action, USERS[0])

    @rule(data=st.data(), action=st.sampled_from(("read", "write")))
    @precondition(lambda self: bool(self.issued))
    def replay(self, data: st.DataObject, action: str) -> None:
        """The attacker (or a stale tab) presents any ID ever issued."""
        self._step()
        raw = data.draw(st.sampled_from(self.issued), label="replayed")
        self._do(None, raw, action, USERS[0])

    def replay_all(self) -> None:
        """Present every ID ever issued once (the regression tests' last step)."""
        for raw in list(self.issued):
            self._do(None, raw, "read", USERS[0])

    @rule(data=st.data(), action=st.sampled_from(("read", "write", "rotate", "login")))
    @precondition(lambda self: any(self.clock.now() < t for t in self.dead_ids.values()))
    def in_grace(self, data: st.DataObject, action: str) -> None:
        """A request on a periodically rotated-out ID inside its grace window."""
        self._step()
        now = self.clock.now()
        # in the order issued (IDs are random: sorting them would make the runs differ)
        choices = [raw for raw in self.issued if now < self.dead_ids.get(raw, now)]
        raw = data.draw(st.sampled_from(choices), label="pre-rotation ID")
        self._do(None, raw, action, USERS[1])

    @rule(step=st.sampled_from(STEPS))
    def advance(self, step: float) -> None:
        self._step()
        self.clock.advance(step)

    @rule(offset=st.sampled_from((-0.5, 0.0, 0.5)))
    @precondition(lambda self: self._next_deadline() is not None)
    def to_deadline(self, offset: float) -> None:
        """Step to just before, onto, or just past the nearest deadline the model knows."""
        self._step()
        deadline = self._next_deadline()
        assert deadline is not None
        target = deadline + offset
        if target > self.clock.now():
            self.clock.advance(target - self.clock.now())

    def _next_deadline(self) -> float | None:
        now = self.clock.now()
        times = [t for t in self.dead_ids.values() if t > now]
        for line in self.lineages.values():
            if line.dead is None:
                times += [t for t in (line.idle_deadline, line.abs_deadline) if t > now]
        return min(times, default=None)

    @rule(user=st.sampled_from(USERS))
    def sign_out_everywhere(self, user: str) -> None:
        self._step()
        self.runner.run(self.mw.revoke_user(user))
        for line in self.lineages.values():
            if line.user == user:
                self._end(line, "signed out everywhere")

    @rule(data=st.data(), user=st.sampled_from(USERS))
    def revoke_one(self, data: st.DataObject, user: str) -> None:
        """The user ends one session from the "your devices" list."""
        self._step()
        listed = self.runner.run(self.mw.list_sessions(user))
        if not listed:
            return
        order = {tokens.ref_of(self.keyring.hash_id(raw)): i for i, raw in enumerate(self.issued)}
        refs = sorted((s.ref for s in listed), key=lambda r: order.get(r, len(order)))
        ref = data.draw(st.sampled_from(refs), label="ref")
        if not self.runner.run(self.mw.revoke_session(user, ref)):
            return
        for raw, lin in self.lineage_of.items():
            if lin is not None and tokens.ref_of(self.keyring.hash_id(raw)) == ref:
                self._end(self.lineages[lin], "revoked")

    @rule(
        client=st.integers(0, CLIENTS - 1),
        first=st.sampled_from(ACTIONS),
        second=st.sampled_from(ACTIONS),
        step=st.sampled_from((0.0, 1.0, TOUCH + 1, GRACE + 1, ROTATE + 1, IDLE + 1)),
        between=st.sampled_from(("nothing", "sign_out_everywhere", "logout")),
        swap=st.booleans(),
    )
    def concurrent(
        self, client: int, first: str, second: str, step: float, between: str, swap: bool
    ) -> None:
        """Two requests begun on the same ID; the clock steps (and maybe the session is ended)
        while both are in flight; they commit in either order."""
        self._step()
        cookie = self.jars[client]
        users = (USERS[0], USERS[1])
        pair, ended = self.runner.run(
            self._pair(cookie, (first, second), users, step, between, swap)
        )
        for result in pair:  # both loaded before anything else happened
            self._observe(result)
        if between == "sign_out_everywhere":
            for line in self.lineages.values():
                if line.user is not None:
                    self._end(line, "signed out everywhere while in flight")
        if ended is not None:
            self._observe(ended)
            self._settle(ended)
            self._deliver(client, ended)
        for result in pair:  # in the order they committed
            self._settle(result)
            self._deliver(client, result)

    async def _pair(
        self,
        cookie: str | None,
        actions: tuple[str, str],
        users: tuple[str, str],
        step: float,
        between: str,
        swap: bool,
    ) -> tuple[list[Result], Result | None]:
        gates = [asyncio.Event(), asyncio.Event()]
        arrivals = [asyncio.Event(), asyncio.Event()]
        tasks = [
            asyncio.create_task(self._request(cookie, actions[i], users[i], gates[i], arrivals[i]))
            for i in (0, 1)
        ]
        for arrived, task in zip(arrivals, tasks, strict=True):
            waiter = asyncio.create_task(arrived.wait())
            await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        self.clock.advance(step)
        ended: Result | None = None
        if between == "sign_out_everywhere":
            for user in USERS:
                await self.mw.revoke_user(user)
        elif between == "logout" and cookie is not None:
            ended = await self._request(cookie, "logout", USERS[0])
        out: list[Result] = []
        for i in [1, 0] if swap else [0, 1]:
            gates[i].set()
            out.append(await tasks[i])
        return out, ended

    # -- invariants over the store ---------------------------------------------------------------
    @invariant()
    def stored_state(self) -> None:
        raws = self.issued[-24:] if self.cheap else self.issued
        found, users = self.runner.run(self._read_store(raws))
        now = self.clock.now()
        by_lineage: dict[str, int] = {}
        for record in found:
            if not isinstance(record, SessionRecord):
                continue
            lin = _str_or_none(record.data.get("lin"))
            if lin is None:
                continue
            line = self.lineages.get(lin)
            expired = now >= min(record.expires_at, record.created_at + ABSOLUTE)
            if line is not None and line.dead is not None and not expired:
                TOTALS["violations"] += 1
                raise Violation(f"a live record of a lineage that ended ({line.dead})")
            by_lineage[lin] = by_lineage.get(lin, 0) + 1
            if by_lineage[lin] > 1:
                TOTALS["violations"] += 1
                raise Violation(f"two stored records of lineage {lin}")
        for user, (stored, listed) in users.items():
            if stored > CAP or listed > CAP:
                TOTALS["violations"] += 1
                raise Violation(f"{user} has {stored} stored, {listed} listed > {CAP}")

    async def _read_store(self, raws: list[str]) -> tuple[list[Any], dict[str, tuple[int, int]]]:
        """What the store holds (read directly: no request, so nothing is touched)."""
        store = self.mw.store
        found = [await store.get(self.keyring.hash_id(raw)) for raw in raws]
        now = self.clock.now()
        # The cap counts live sessions: a record past its deadline that is not purged yet is
        # stored but no longer counts (nor is it listed).
        users = {
            user: (
                sum(r.expires_at > now for r in await store.user_sessions(user)),
                len(await self.mw.list_sessions(user)),
            )
            for user in USERS
        }
        return found, users

    cheap: ClassVar[bool] = False

    def teardown(self) -> None:
        try:
            close = getattr(self.mw.store, "close", None)
            if close is not None:
                self.runner.run(close())
        finally:
            tokens.new_session_id = self._real_new_id
            self.runner.close()
            self.cleanup()


def memory_store() -> tuple[str, Callable[[], None]]:
    return "memory://", lambda: None


def sqlite_store() -> tuple[str, Callable[[], None]]:
    folder = tempfile.mkdtemp(prefix="sw-fuzz-")
    return f"sqlite:///{folder}/s.db", lambda: shutil.rmtree(folder, ignore_errors=True)


def fuzz_setting(name: str, default: int) -> int:
    """``SESSIONWARDEN_FUZZ_EXAMPLES`` / ``SESSIONWARDEN_FUZZ_STEPS`` for the long run."""
    return int(os.environ.get(name, default))
