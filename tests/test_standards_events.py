"""Audit events, one per action (ASVS 16.3.1, 16.3.3; the session cheat sheet's "logging sessions
life cycle"): each session change, refusal, signal and defensive action, performed through both
adapters over HTTP, yields exactly one event of its kind, with the outcome the documented
vocabulary gives it (``sessionwarden.events.OUTCOMES``), and exactly the events listed (none
missing, none twice). Every event carries every field ASVS 16.2.1/16.2.2 asks for, with its type
(a schema check over a whole session's life through both adapters, in ``Event.to_dict`` and in
the JSON lines a real handler writes)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sessionwarden import tokens
from sessionwarden.clock import ManualClock
from sessionwarden.core import Engine, run_sync
from sessionwarden.events import OUTCOMES, Event, EventKind
from sessionwarden.policy import MonitorPolicy, Policy
from sessionwarden.records import Lookup
from sessionwarden.sinks import LOG_SCHEMA_KEYS, JsonFormatter, JsonLogSink
from sessionwarden.stores import MemoryStore

from .conftest import SECRET, Recorder
from .dbsc.client import DbscBrowser, DeviceKey
from .dbsc.http_server import Server, Stores, dbsc_policy, open_stores
from .two_adapters import KINDS, Client, client

pytestmark = pytest.mark.anyio
ADAPTERS = pytest.mark.parametrize("kind", KINDS)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _policy(**options: Any) -> Policy:
    options.setdefault("rotate_every", 0)
    return Policy(secret_keys=(SECRET,), allowed_hosts=("app.test",), **options)


def _browser(c: Client) -> Client:
    """Another browser of the same application (its own cookie, the same server)."""
    return Client(c.http, c.recorder, c.clock, kind=c.kind, store=c.store)


async def _post(c: Client, path: str, **headers: str) -> int:
    token = await c.token()
    sent = {"sec-fetch-site": "same-origin", "x-csrf-token": token, **headers}
    return (await c.request("POST", path, headers=sent)).status_code


class Action:
    """The events one action produced."""

    def __init__(self, c: Client) -> None:
        self.recorder = c.recorder
        self.mark = len(c.recorder.events)

    @property
    def events(self) -> list[Event]:
        return self.recorder.events[self.mark :]

    def one(self, kind: EventKind, outcome: str, *, reason: str | None = None) -> Event:
        """The one event of ``kind``, whose outcome (and reason) are those given."""
        found = [e for e in self.events if e.kind is kind]
        assert len(found) == 1, [e.to_dict() for e in self.events]
        event = found[0]
        assert event.outcome == outcome and event.to_dict()["outcome"] == outcome
        if reason is not None:
            assert event.reason == reason
        return event

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]


async def _signed_in(c: Client) -> str:
    """Sign ``c`` in; the correlation value of its session."""
    await c.login()
    return c.recorder.of(EventKind.LOGGED_IN)[-1].session


# -- the session's life -------------------------------------------------------------------------


@ADAPTERS
async def test_created_authenticated_rotated_reauthenticated_logged_out(kind: str) -> None:
    with client(kind, _policy(rotate_every=60)) as c:
        act = Action(c)
        await c.token()  # the login page's session
        created = act.one(EventKind.CREATED, "success")
        assert act.kinds() == [EventKind.CREATED] and created.user_id is None

        act = Action(c)
        token = await c.token()
        r = await c.request(
            "POST", "/login", headers={"sec-fetch-site": "same-origin", "x-csrf-token": token}
        )
        assert r.status_code == 200
        act.one(EventKind.ROTATED, "success", reason="login")
        login = act.one(EventKind.LOGGED_IN, "success")
        assert act.kinds() == [EventKind.ROTATED, EventKind.LOGGED_IN]
        assert login.user_id == "alice" and login.session == created.session

        c.clock.advance(61)
        act = Action(c)
        assert (await c.request("GET", "/whoami")).json() == {"user": "alice"}
        act.one(EventKind.ROTATED, "success", reason="periodic")
        assert act.kinds() == [EventKind.ROTATED]

        act = Action(c)
        assert await _post(c, "/reauth") == 200
        act.one(EventKind.ROTATED, "success", reason="explicit")
        assert act.kinds() == [EventKind.ROTATED]

        act = Action(c)
        assert await _post(c, "/logout") == 200
        out = act.one(EventKind.LOGGED_OUT, "success")
        assert act.kinds() == [EventKind.LOGGED_OUT] and out.session == created.session


@ADAPTERS
async def test_step_up_granted_used_refused(kind: str) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        for path, event, outcome, also in (
            # A grant is a privilege change: the ID rotates with it.
            ("/step-up?op=wire", EventKind.STEP_UP_GRANTED, "success", [EventKind.ROTATED]),
            ("/sensitive?op=wire", EventKind.STEP_UP_USED, "success", []),
            ("/sensitive?op=wire", EventKind.STEP_UP_REFUSED, "refused", []),  # used up
        ):
            await c.token()
            act = Action(c)
            status = await _post(c, path, accept="application/json")
            assert status == (403 if outcome == "refused" else 200)
            act.one(event, outcome)
            assert sorted(act.kinds()) == sorted([event, *also])


@ADAPTERS
@pytest.mark.parametrize(
    ("idle", "event"),
    [(True, EventKind.EXPIRED_IDLE), (False, EventKind.EXPIRED_ABSOLUTE)],
    ids=["idle", "absolute"],
)
async def test_expired(kind: str, idle: bool, event: EventKind) -> None:
    with client(kind, _policy(idle_timeout=600, absolute_timeout=3600)) as c:
        value = await _signed_in(c)
        if idle:
            c.clock.advance(601)
        else:
            for _ in range(6):  # active all along: only the absolute timeout ends it
                c.clock.advance(590)
                assert (await c.request("GET", "/whoami")).json() == {"user": "alice"}
            c.clock.advance(3600 - 6 * 590)
        act = Action(c)
        assert (await c.request("GET", "/whoami")).json() == {"user": None}
        assert act.one(event, "ended").session == value
        assert act.kinds() == [event]


class _InFlight(MemoryStore):
    """A store whose next read can let time pass: ``delay`` seconds go by on ``clock`` right
    after it (a request's load), before the request's commit."""

    def __init__(self) -> None:
        super().__init__()
        self.clock: ManualClock | None = None
        self.delay = 0.0

    def get(self, key: str) -> Lookup:
        found = super().get(key)
        if self.delay and self.clock is not None:
            self.clock.advance(self.delay)
            self.delay = 0.0
        return found


@ADAPTERS
@pytest.mark.parametrize(
    ("idle", "event"),
    [(True, EventKind.EXPIRED_IDLE), (False, EventKind.EXPIRED_ABSOLUTE)],
    ids=["idle", "absolute"],
)
async def test_expired_while_the_request_runs(kind: str, idle: bool, event: EventKind) -> None:
    """Live when the request arrived, past its deadline when its response starts: the commit
    ends it and reports it, once, as a request arriving later would have; the request's write
    is dropped (``session.write_after_revoke``). The next request on the old cookie is told
    again (reason ``again``): the ending is not reported twice."""
    store = _InFlight()
    with client(kind, _policy(idle_timeout=600, absolute_timeout=3600), store=store) as c:
        store.clock = c.clock
        value = await _signed_in(c)
        if not idle:
            for _ in range(6):  # active all along: only the absolute timeout ends it
                c.clock.advance(590)
                assert (await c.request("GET", "/whoami")).json() == {"user": "alice"}
        token = await c.token()
        c.clock.advance(599 if idle else 3599 - 6 * 590)
        old, store.delay = c.cookie, 2.0
        act = Action(c)
        r = await c.request(
            "POST", "/transfer", headers={"sec-fetch-site": "same-origin", "x-csrf-token": token}
        )
        assert r.status_code == 200 and c.cookie is None  # the cookie goes
        assert act.one(event, "ended", reason="").session == value
        act.one(EventKind.WRITE_AFTER_REVOKE, "refused")
        assert sorted(act.kinds()) == sorted([event, EventKind.WRITE_AFTER_REVOKE])
        c.cookie = old
        act = Action(c)
        assert (await c.request("GET", "/whoami")).json() == {"user": None}
        act.one(event, "ended", reason="again")
        assert act.kinds() == [event]


# -- revocations --------------------------------------------------------------------------------


@ADAPTERS
async def test_revoked_by_the_user_from_another_device(kind: str) -> None:
    with client(kind, _policy()) as c:
        await _signed_in(c)
        other = _browser(c)
        theirs = await _signed_in(other)
        act = Action(c)
        assert await _post(c, "/others") == 200
        revoked = act.one(EventKind.REVOKED, "ended", reason="user:revoke-others")
        act.one(EventKind.ROTATED, "success", reason="revoke-others")
        assert act.kinds() == [EventKind.ROTATED, EventKind.REVOKED]
        assert revoked.session == theirs and revoked.user_id == "alice"
        assert (await other.request("GET", "/whoami")).json() == {"user": None}


@ADAPTERS
async def test_revoked_by_a_credential_change(kind: str) -> None:
    with client(kind, _policy()) as c:
        mine = await _signed_in(c)
        other = _browser(c)
        theirs = await _signed_in(other)
        act = Action(c)
        assert await _post(c, "/password") == 200
        revoked = act.one(EventKind.REVOKED, "ended", reason="policy:credential-change")
        changed = act.one(EventKind.CREDENTIALS_CHANGED, "success")
        act.one(EventKind.ROTATED, "success")
        assert sorted(act.kinds()) == sorted(
            [EventKind.ROTATED, EventKind.REVOKED, EventKind.CREDENTIALS_CHANGED]
        )
        assert (revoked.session, changed.session) == (theirs, mine)


@ADAPTERS
@pytest.mark.parametrize("by", ["admin", "user"])
async def test_revoked_by_an_operator_or_from_a_device_list(kind: str, by: str) -> None:
    """The operator's path (``sessionwarden sessions revoke``: every session of the user) and a
    "your devices" page's (one session, by its reference): an engine over the same store, as
    the adapters' ``revoke_user`` and ``revoke_session`` run it."""
    with client(kind, _policy()) as c:
        value = await _signed_in(c)
        act = Action(c)
        engine = Engine(_policy(), clock=c.clock, sink=c.recorder)
        if by == "admin":
            assert len(run_sync(engine.revoke_user("alice", by=by), c.store)) == 1
            reason = "revoked:admin"
        else:
            (info,) = run_sync(engine.list_sessions("alice"), c.store)
            assert run_sync(engine.revoke_session("alice", info.ref, by=by), c.store)
            reason = "revoked:user"
        revoked = act.one(EventKind.REVOKED, "ended", reason=reason)
        assert act.kinds() == [EventKind.REVOKED] and revoked.session == value
        assert (await c.request("GET", "/whoami")).json() == {"user": None}


@ADAPTERS
@pytest.mark.parametrize(
    ("on_high", "action", "outcome"),
    [("revoke", EventKind.REVOKED, "ended"), ("step_up", EventKind.STEP_UP_REQUIRED, "refused")],
)
async def test_anomaly_signal_and_its_action(
    kind: str, on_high: Any, action: EventKind, outcome: str
) -> None:
    with client(kind, _policy(monitor=MonitorPolicy(on_high=on_high))) as c:
        c.http.headers["user-agent"] = FIREFOX
        value = await _signed_in(c)
        c.http.headers["user-agent"] = CHROME  # another browser family: a stolen cookie
        act = Action(c)
        r = await c.request("GET", "/whoami", headers={"accept": "application/json"})
        assert r.status_code in (200, 401) and "alice" not in r.text
        signal = act.one(EventKind.ANOMALY, "notice")
        ended = act.one(action, outcome)
        assert act.kinds() == [EventKind.ANOMALY, action]
        assert signal.session == ended.session == value
        assert signal.detail["action"] == on_high
        # A second request of the flagged (or ended) session adds no second signal.
        act = Action(c)
        await c.request("GET", "/whoami", headers={"accept": "application/json"})
        assert EventKind.ANOMALY not in act.kinds() and action not in act.kinds()


@ADAPTERS
async def test_evicted_beyond_the_cap_and_refused_at_the_cap(kind: str) -> None:
    with client(kind, _policy(max_sessions_per_user=1)) as c:
        first = await _signed_in(c)
        c.clock.advance(1)
        other = _browser(c)
        await other.token()
        act = Action(c)
        assert await _post(other, "/login") == 200
        evicted = act.one(EventKind.EVICTED, "ended", reason="session-cap")
        assert sorted(act.kinds()) == sorted(
            [EventKind.ROTATED, EventKind.LOGGED_IN, EventKind.EVICTED]
        )
        assert evicted.session == first
    with client(kind, _policy(max_sessions_per_user=1, on_session_limit="reject")) as c:
        await c.login()
        other = _browser(c)
        await other.token()
        act = Action(c)
        assert await _post(other, "/login", accept="application/json") == 409
        act.one(EventKind.LOGIN_REFUSED, "refused", reason="session-limit")
        assert act.kinds() == [EventKind.LOGIN_REFUSED]


# -- presented IDs ------------------------------------------------------------------------------


@ADAPTERS
async def test_unknown_and_invalid_ids(kind: str) -> None:
    with client(kind, _policy()) as c:
        for cookie, event in (
            (tokens.new_session_id(), EventKind.UNKNOWN_ID),
            ("not an id!", EventKind.MALFORMED_COOKIE),
            ("A" * 200, EventKind.MALFORMED_COOKIE),
        ):
            c.cookie = cookie
            act = Action(c)
            assert (await c.request("GET", "/whoami")).json() == {"user": None}
            act.one(event, "failure")
            assert act.kinds() == [event]


@ADAPTERS
async def test_unknown_ids_beyond_the_limit_are_throttled(kind: str) -> None:
    with client(kind, _policy(monitor=MonitorPolicy(unknown_id_limit_per_minute=2))) as c:
        for n in range(3):
            c.cookie = tokens.new_session_id()
            act = Action(c)
            r = await c.request("GET", "/whoami")
            act.one(EventKind.UNKNOWN_ID, "failure")
            if n < 2:
                assert r.status_code == 200 and act.kinds() == [EventKind.UNKNOWN_ID]
        assert r.status_code == 429
        act.one(EventKind.THROTTLED, "refused")
        assert act.kinds() == [EventKind.UNKNOWN_ID, EventKind.THROTTLED]


@ADAPTERS
async def test_duplicate_session_cookie(kind: str) -> None:
    with client(kind, _policy()) as c:
        value = await _signed_in(c)
        planted = tokens.new_session_id()
        act = Action(c)
        header = f"__Host-id={planted}; __Host-id={c.cookie}"
        r = await c.request("GET", "/whoami", headers={"cookie": header}, send_cookie=False)
        assert r.json() == {"user": None}
        act.one(EventKind.COOKIE_TOSSING, "refused")
        revoked = act.one(EventKind.REVOKED, "ended", reason="cookie-tossing")
        assert act.kinds() == [EventKind.COOKIE_TOSSING, EventKind.REVOKED]
        assert revoked.session == value


@ADAPTERS
async def test_replays_of_ended_ids(kind: str) -> None:
    with client(kind, _policy(rotate_every=60, rotation_grace=5)) as c:
        value = await _signed_in(c)
        c.clock.advance(61)
        rotated_out = c.cookie
        await c.request("GET", "/whoami")  # a periodic rotation: the old ID is an alias
        c.clock.advance(6)  # past its grace
        thief = _browser(c)
        thief.cookie = rotated_out
        act = Action(c)
        assert (await thief.request("GET", "/whoami")).json() == {"user": None}
        replay = act.one(EventKind.REPLAY_ROTATED, "failure")
        revoked = act.one(EventKind.REVOKED, "ended", reason="policy:replay-of-rotated-id")
        act.one(EventKind.ANOMALY, "notice")
        assert act.kinds() == [EventKind.REPLAY_ROTATED, EventKind.ANOMALY, EventKind.REVOKED]
        assert revoked.session == replay.session == value

        act = Action(c)
        assert (await c.request("GET", "/whoami")).json() == {"user": None}
        act.one(EventKind.REPLAY_REVOKED, "failure")  # the revoked session's own cookie
        assert act.kinds() == [EventKind.REPLAY_REVOKED]


# -- CSRF ---------------------------------------------------------------------------------------


@ADAPTERS
async def test_csrf_refusals(kind: str) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        for headers, event in (
            ({"sec-fetch-site": "same-origin"}, EventKind.CSRF_REFUSED),
            ({"sec-fetch-site": "cross-site"}, EventKind.CROSS_ORIGIN_REFUSED),
            ({"origin": "https://evil.test"}, EventKind.CROSS_ORIGIN_REFUSED),
        ):
            act = Action(c)
            r = await c.request("POST", "/transfer", headers=headers)
            assert r.status_code == 403 and "transfer done" not in r.text
            act.one(event, "refused")
            assert act.kinds() == [event]


# -- DBSC ---------------------------------------------------------------------------------------

REFRESH = "/_sessionwarden/dbsc/refresh"


@pytest.fixture
def memory_stores(tmp_path: Path) -> Iterator[Stores]:
    opened = open_stores("memory", tmp_path)
    yield opened
    for fn in opened.cleanup:
        fn()


class DbscAction:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.mark = len(server.events)

    def one(self, kind: EventKind, outcome: str) -> Event:
        events = self.server.events[self.mark :]
        found = [e for e in events if e.kind is kind]
        assert len(found) == 1, [e.to_dict() for e in events]
        assert found[0].outcome == outcome
        return found[0]

    def dbsc_kinds(self) -> list[str]:
        return [e.kind.value for e in self.server.events[self.mark :] if e.kind.value[:4] == "dbsc"]


@pytest.mark.parametrize("adapter", KINDS)
def test_dbsc_registered_refreshed_failed_skipped_terminated(
    adapter: str, memory_stores: Stores
) -> None:
    server = Server(adapter, memory_stores, dbsc_policy())
    try:
        browser = DbscBrowser(server.send, server.clock.now)
        act = DbscAction(server)
        browser.request("GET", "/login")  # signs in, and the browser registers its key
        registered = act.one(EventKind.DBSC_REGISTERED, "success")
        assert act.dbsc_kinds() == ["dbsc.registered"]
        value = server.events[-1].session
        assert registered.session == value and value

        server.clock.advance(601)  # the bound cookie's lifetime
        act = DbscAction(server)
        assert browser.request("GET", "/account").body == b"alice"
        act.one(EventKind.DBSC_REFRESHED, "success")
        assert act.dbsc_kinds() == ["dbsc.refreshed"]

        # A proof signed by a key other than the registered one.
        cookie = {"cookie": f"__Host-id={browser.cookies['__Host-id'][0]}"}
        sent = {**cookie, "sec-secure-session-id": str(browser.session_id)}
        sent["sec-fetch-site"] = "same-origin"
        reply = server.send("POST", REFRESH, sent)
        assert reply.status == 403
        challenge = (reply.header("secure-session-challenge") or "").split('"')[1]
        act = DbscAction(server)
        proof = DeviceKey("ES256").proof(challenge, with_jwk=False)
        reply = server.send("POST", REFRESH, {**sent, "secure-session-response": proof})
        assert reply.status == 403
        act.one(EventKind.DBSC_PROOF_FAILED, "failure")
        assert act.dbsc_kinds() == ["dbsc.proof_failed"]

        act = DbscAction(server)  # the long-lived cookie without the bound one
        assert server.send("GET", "/account", cookie).body == b"anonymous"
        act.one(EventKind.DBSC_MISSING_BOUND_COOKIE, "failure")
        assert act.dbsc_kinds() == ["dbsc.missing_bound_cookie"]

        act = DbscAction(server)
        skipped = f'unreachable;session_identifier="{browser.session_id}"'
        page = browser.request("GET", "/account", {"secure-session-skipped": skipped})
        assert page.body == b"alice"
        assert act.one(EventKind.DBSC_SKIPPED, "notice").session == value
        assert act.dbsc_kinds() == ["dbsc.skipped"]

        browser.request("GET", "/logout")
        act = DbscAction(server)
        assert browser.refresh().json() == {"continue": False}
        act.one(EventKind.DBSC_TERMINATED, "ended")
        assert act.dbsc_kinds() == ["dbsc.terminated"]
    finally:
        server.close()


# -- the schema (ASVS 16.2.1, 16.2.2) -----------------------------------------------------------

_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")
_REF = re.compile(r"[0-9a-f]{16}\Z")
_SCHEMA: dict[str, tuple[type, ...]] = {
    "event": (str,),
    "outcome": (str,),
    "at": (float, int),
    "time": (str,),
    "ref": (str,),
    "session": (str,),
    "user": (str, type(None)),
    "ip": (str,),
    "ua": (str,),
    "path": (str,),
    "reason": (str,),
    "detail": (dict,),
}


class LoggedRecorder(Recorder):
    """Keeps every event and hands it to a log sink too."""

    def __init__(self, sink: JsonLogSink) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, event: Event) -> None:
        super().emit(event)
        self.sink.emit(event)


def _valid(doc: dict[str, Any]) -> None:
    """One event document against the schema: every key, its type, and its values' form."""
    assert tuple(doc) == LOG_SCHEMA_KEYS == tuple(_SCHEMA), doc
    for key, types in _SCHEMA.items():
        assert isinstance(doc[key], types) and not isinstance(doc[key], bool), (key, doc)
    assert doc["event"] in {k.value for k in EventKind}
    assert doc["outcome"] in OUTCOMES
    assert _ISO_UTC.match(doc["time"]), doc["time"]
    when = datetime.fromisoformat(doc["time"])
    assert when.utcoffset() is not None and when.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert abs(when.timestamp() - doc["at"]) < 1e-3
    for key in ("ref", "session"):
        assert doc[key] == "" or _REF.match(doc[key]), (key, doc)


@ADAPTERS
async def test_every_event_of_a_session_has_every_field(kind: str) -> None:
    """A whole life (login page, sign-in, rotations, a step-up, a refusal, a credential change,
    another device revoked, an anomaly ending it), every event in ``to_dict`` and as the line a
    real handler wrote: every field with its type; within a request, the route, the client's
    address and its user agent; the user where one was signed in."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"sessionwarden.test.schema.{kind}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    recorder = LoggedRecorder(JsonLogSink(logger, logging.DEBUG))
    with client(kind, _policy(rotate_every=60), recorder=recorder) as c:
        c.http.headers["user-agent"] = FIREFOX
        await c.login()
        other = _browser(c)
        await other.login()
        c.clock.advance(61)
        await c.request("GET", "/whoami")
        await _post(c, "/step-up?op=wire")
        await _post(c, "/sensitive?op=wire")
        await c.request("POST", "/transfer", headers={"sec-fetch-site": "cross-site"})
        await _post(c, "/password")
        c.http.headers["user-agent"] = CHROME
        await c.request("GET", "/whoami")
        c.cookie = "garbage"
        await c.request("GET", "/poll")
    events = recorder.events
    kinds = {e.kind for e in events}
    assert {
        EventKind.CREATED,
        EventKind.LOGGED_IN,
        EventKind.ROTATED,
        EventKind.STEP_UP_GRANTED,
        EventKind.STEP_UP_USED,
        EventKind.CROSS_ORIGIN_REFUSED,
        EventKind.CREDENTIALS_CHANGED,
        EventKind.REVOKED,
        EventKind.ANOMALY,
        EventKind.MALFORMED_COOKIE,
    } <= kinds
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert len(lines) == len(events)
    for event, line in zip(events, lines, strict=True):
        doc = event.to_dict()
        _valid(doc)
        _valid(line)
        assert line == json.loads(json.dumps(doc))
        assert doc["ip"] == "127.0.0.1" and doc["path"] in (
            "/token",
            "/login",
            "/whoami",
            "/poll",
            "/step-up",
            "/sensitive",
            "/transfer",
            "/password",
        )
        assert doc["ua"] in (FIREFOX, CHROME)
        if event.kind is not EventKind.MALFORMED_COOKIE and event.kind is not EventKind.CREATED:
            assert doc["user"] == "alice" and doc["session"], doc


# -- attacker-controlled text cannot forge a record (ASVS 16.4.1) --------------------------------

#: Each tries to end a record and start a forged one: CR LF, the Unicode line and paragraph
#: separators, NEL and the ASCII separators (line breaks to ``str.splitlines`` and some shippers).
FORGERIES = [
    'a\r\n{"event":"session.logged_out","user":"admin"}',
    'a\u2028{"event":"session.logged_out"}\u2029x',
    'a\x85\x1c\x1d\x1e{"event":"session.logged_out"}',
]
#: The same in a path, percent-encoded on the wire as a client must send it.
FORGED_PATH = "/x%0D%0A%7B%22event%22%3A%22session.logged_out%22%7D%E2%80%A8%C2%85"


class RawWsgi:
    """A WSGI server's side of one browser, by hand: header values and the path handed over as
    PEP 3333 says (latin-1 decoded bytes of what arrived, UTF-8 on the wire), which httpx's WSGI
    transport cannot send (ASCII only)."""

    def __init__(self, app: Any, agent: str) -> None:
        self.app = app
        self.agent = agent.encode("utf-8").decode("latin-1")
        self.cookie: str | None = None

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
        from urllib.parse import unquote_to_bytes

        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "app.test",
            "SERVER_PORT": "443",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "https",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": io.StringIO(),
            "CONTENT_LENGTH": "0",
            "HTTP_HOST": "app.test",
            "HTTP_USER_AGENT": self.agent,
        }
        if self.cookie:
            environ["HTTP_COOKIE"] = f"__Host-id={self.cookie}"
        for name, value in (headers or {}).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        started: dict[str, Any] = {}

        def start_response(status: str, hdrs: list[tuple[str, str]], exc: Any = None) -> Any:
            started["status"], started["headers"] = status, hdrs
            return lambda data: None

        body = b"".join(self.app(environ, start_response))
        for name, value in started["headers"]:
            if name.lower() == "set-cookie" and value.startswith("__Host-id="):
                self.cookie = value.split(";", 1)[0].split("=", 1)[1] or None
        return int(started["status"].split()[0]), body

    def post(self, path: str) -> int:
        _, body = self.request("GET", "/token")
        token = json.loads(body)["csrf_token"]
        sent = {"sec-fetch-site": "same-origin", "x-csrf-token": token}
        return int(self.request("POST", path, sent)[0])


async def _hostile_life(kind: str, agent: str, recorder: Recorder) -> None:
    """Sign in, sign out, then a malformed cookie on a forged path, all with ``agent``."""
    if kind == "wsgi":
        from flask import Flask

        from sessionwarden.clock import ManualClock
        from sessionwarden.integrations.flask import SessionWarden
        from sessionwarden.stores import MemoryStore

        from .two_adapters import _flask

        app: Flask = _flask()
        SessionWarden(
            app, policy=_policy(), store=MemoryStore(), clock=ManualClock(), sink=recorder
        )
        raw = RawWsgi(app, agent)
        assert raw.post("/login") == 200 and raw.post("/logout") == 200
        raw.cookie = '{"event":"session.logged_out"}'
        assert raw.request("GET", FORGED_PATH)[0] == 404
        return
    with client(kind, _policy(), recorder=recorder) as c:
        c.http.headers["user-agent"] = agent
        await c.login()
        assert await _post(c, "/logout") == 200
        c.cookie = '{"event":"session.logged_out"}'
        assert (await c.request("GET", FORGED_PATH)).status_code == 404


@ADAPTERS
@pytest.mark.parametrize("agent", FORGERIES, ids=["crlf", "u2028", "nel-fs"])
async def test_forged_records_in_agent_path_and_cookie_stay_inside_one_record(
    kind: str, agent: str, tmp_path: Path
) -> None:
    """What a real file handler wrote: one line per event (by ``\\n`` and by every line break
    ``str.splitlines`` knows), each one JSON record whose values are the hostile text, escaped;
    the only ``session.logged_out`` is the real one."""
    path = tmp_path / "events.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"sessionwarden.test.forgery.{kind}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    recorder = LoggedRecorder(JsonLogSink(logger))
    try:
        await _hostile_life(kind, agent, recorder)
    finally:
        handler.close()
    text = path.read_text(encoding="utf-8")
    assert text.isascii()
    lines = text.split("\n")
    assert lines.pop() == "" and lines == text.splitlines()
    assert len(lines) == len(recorder.events) >= 4
    docs = [json.loads(line.split(" ", 1)[1]) for line in lines]
    assert [d["event"] for d in docs] == [e.kind.value for e in recorder.events]
    assert [d["event"] for d in docs].count("session.logged_out") == 1
    received = agent.encode().decode("latin-1")  # both adapters read header bytes as latin-1
    assert [d["ua"] for d in docs] == [received] * len(docs)
    (malformed,) = [d for d in docs if d["event"] == "session.malformed_cookie"]
    assert "\r\n" in malformed["path"] and "logged_out" in malformed["path"]
    assert malformed["path"].endswith("\u2028\x85")


@pytest.mark.parametrize(
    "at", [0.0, -1.5, 1_700_000_000.0000005, 1_796_532_592.999_999_7, 253_402_300_799.9]
)
def test_time_is_at_in_iso_8601_utc(at: float) -> None:
    event = Event(EventKind.CREATED, at)
    when = datetime.fromisoformat(str(event.to_dict()["time"]))
    assert _ISO_UTC.match(str(event.time)) and when.utcoffset() == timedelta(0)
    assert abs(when.timestamp() - at) <= 1e-6
    assert event.time == Event(EventKind.LOGGED_IN, at).time  # the same instant, the same text


@pytest.mark.parametrize("at", [float("nan"), float("inf"), 1e20])
def test_a_time_no_date_has_is_null_in_the_log(at: float) -> None:
    logger = logging.getLogger("sessionwarden.test.schema.no-date")
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    JsonLogSink(logger).emit(Event(EventKind.CREATED, at))
    doc = json.loads(buffer.getvalue())
    assert doc["time"] is None and doc["outcome"] == "success"


def test_every_kind_has_one_outcome() -> None:
    assert {Event(k, 0.0).outcome for k in EventKind} <= set(OUTCOMES)
    assert {Event(k, 0.0).outcome for k in EventKind} == set(OUTCOMES)  # each one is used
