"""An expired session's reason is told to every request presenting its ID for a while, not only to
the first one: the request that finds the expiry (on loading, or a commit in flight across the
deadline) leaves a short-lived tombstone of it (``expired.idle`` / ``expired.absolute``, kept for
one idle timeout) instead of deleting the record. Nothing brings the session back. The expiry is
reported once per session ended, by whichever finder ended it (a request, a commit, the check of
open connections), even when two find it at once. On every store, the Redis Cluster and Sentinel
set-ups included.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sessionwarden.clock import ManualClock
from sessionwarden.core import Engine
from sessionwarden.core.live import check_live
from sessionwarden.core.ops import Op, Revoke, Steps
from sessionwarden.events import EventKind, FanOut
from sessionwarden.policy import Policy
from sessionwarden.records import RecordUpdate, SessionRecord, Tombstone
from sessionwarden.sinks import JsonLogSink, PrometheusSink
from sessionwarden.stores.base import SessionStore

from .conftest import DISTRIBUTED_KINDS, SECRET, STORE_KINDS, open_test_store
from .test_engine import Client, Recorder

IDLE, ABSOLUTE = 600.0, 3600.0


@pytest.fixture(params=STORE_KINDS + DISTRIBUTED_KINDS)
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    with open_test_store(request.param, request, tmp_path) as s:
        yield s


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def engine(clock: ManualClock, recorder: Recorder) -> Engine:
    policy = Policy(
        secret_keys=(SECRET,), idle_timeout=IDLE, absolute_timeout=ABSOLUTE, rotate_every=0
    )
    return Engine(policy, clock=clock, sink=recorder)


def _signed_in(engine: Engine, store: SessionStore) -> Client:
    c = Client(engine, store)
    c.request(lambda s: s.login("alice"))
    assert c.cookie is not None
    return c


def _present(engine: Engine, store: SessionStore, raw: str) -> str | None:
    """What a request presenting ``raw`` learns (``session_ended``); it must be anonymous."""
    c = Client(engine, store, cookie=raw)
    loaded = c.run(engine.load(c.facts()))
    assert loaded.session.user_id is None and loaded.session.record is None
    assert loaded.clear_cookie
    return loaded.ended  # type: ignore[no-any-return]


def test_every_request_on_an_idle_expired_id_learns_why(
    engine: Engine, any_store: SessionStore, clock: ManualClock, recorder: Recorder
) -> None:
    c = _signed_in(engine, any_store)
    raw = c.cookie
    assert raw is not None
    clock.advance(IDLE + 1)
    for _ in range(3):  # the request that finds it, a second tab, a WebSocket handshake
        assert _present(engine, any_store, raw) == "idle"
    found = any_store.get(engine.keyring.hash_id(raw))
    assert isinstance(found, Tombstone) and found.reason == "expired.idle"
    assert found.user_id == "alice"
    assert found.until == pytest.approx(clock.now() + IDLE)
    expired = [e for e in recorder.events if e.kind is EventKind.EXPIRED_IDLE]
    assert [e.reason for e in expired][:2] == ["", "again"]  # reported once, then seen again
    kinds = {e.kind for e in recorder.events}
    assert EventKind.REPLAY_REVOKED not in kinds and EventKind.UNKNOWN_ID not in kinds
    assert any_store.user_sessions("alice") == []


def test_every_request_on_an_absolute_expired_id_learns_why(
    engine: Engine, any_store: SessionStore, clock: ManualClock
) -> None:
    c = _signed_in(engine, any_store)
    raw = c.cookie
    assert raw is not None
    for _ in range(int(ABSOLUTE // (IDLE / 2)) - 1):  # kept in use up to the absolute deadline
        clock.advance(IDLE / 2)
        assert c.request().user_id == "alice"
    clock.advance(IDLE / 2 + 1)
    assert _present(engine, any_store, raw) == "absolute"
    assert _present(engine, any_store, raw) == "absolute"


def test_a_commit_in_flight_across_the_deadline_leaves_the_reason(
    engine: Engine, any_store: SessionStore, clock: ManualClock
) -> None:
    c = _signed_in(engine, any_store)
    raw = c.cookie
    assert raw is not None
    session, facts = c.begin()
    clock.advance(IDLE + 1)  # the deadline passes while the request runs
    session["n"] = 1
    out = c.finish(session, facts)
    assert out.set_cookie is not None and c.cookie is None  # not revived: the cookie goes
    assert _present(engine, any_store, raw) == "idle"
    assert _present(engine, any_store, raw) == "idle"


def test_a_commit_in_flight_across_the_deadline_reports_the_expiry_once(
    engine: Engine, any_store: SessionStore, clock: ManualClock, recorder: Recorder
) -> None:
    """The commit that ends the session reports it as the request that found it on arrival
    would, with the session's correlation value; the requests presenting the ID later get it
    again (reason ``again``), not as a new ending."""
    c = _signed_in(engine, any_store)
    raw = c.cookie
    assert raw is not None
    lineage = recorder.events[-1].session
    session, facts = c.begin()
    clock.advance(IDLE + 1)
    mark = len(recorder.events)
    session["n"] = 1
    c.finish(session, facts)
    ended = [e for e in recorder.events[mark:] if e.kind is EventKind.EXPIRED_IDLE]
    assert [(e.reason, e.session, e.user_id) for e in ended] == [("", lineage, "alice")]
    assert EventKind.WRITE_AFTER_REVOKE in [e.kind for e in recorder.events[mark:]]
    assert _present(engine, any_store, raw) == "idle"
    expired = [e.reason for e in recorder.events[mark:] if e.kind is EventKind.EXPIRED_IDLE]
    assert expired == ["", "again"]


def _until_revoke(steps: Steps[Any], store: SessionStore) -> Op[Any]:
    """Run ``steps`` up to their first revocation (not applied yet), which they return."""
    op: Op[Any] = next(steps)
    while not isinstance(op, Revoke):
        op = steps.send(op.apply(store))
    return op


def _to_the_end(steps: Steps[Any], op: Op[Any], store: SessionStore) -> Any:
    try:
        while True:
            op = steps.send(op.apply(store))
    except StopIteration as done:
        return done.value


#: Who can find a session past its deadline: a request as it arrives, the commit of a request
#: loaded before the deadline, the check of the open connections.
FINDERS = ("load", "commit", "connection")


def _json_log() -> tuple[JsonLogSink, io.StringIO]:
    logger = logging.getLogger(f"sessionwarden.test.expiry.{id(object())}")
    buffer = io.StringIO()
    logger.handlers[:] = [logging.StreamHandler(buffer)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return JsonLogSink(logger), buffer


@pytest.mark.parametrize(
    ("first", "second"), [(a, b) for a in FINDERS for b in FINDERS], ids="-then-".join
)
def test_two_finders_at_once_report_one_expiry(
    first: str, second: str, any_store: SessionStore, clock: ManualClock
) -> None:
    """Both read the live record before either ended it: the one whose revocation ended it
    reports the expiry, the other nothing. Every sink sees one event: the recorder, the
    Prometheus counter and the JSON log."""
    recorder, registry = Recorder(), CollectorRegistry()
    log, lines = _json_log()
    policy = Policy(
        secret_keys=(SECRET,), idle_timeout=IDLE, absolute_timeout=ABSOLUTE, rotate_every=0
    )
    engine = Engine(policy, clock=clock, sink=FanOut(recorder, PrometheusSink(registry), log))
    c = _signed_in(engine, any_store)
    raw = c.cookie
    assert raw is not None
    key = engine.keyring.hash_id(raw)
    in_flight = []  # the commits' requests are loaded before the deadline
    for finder in (first, second):
        if finder == "commit":
            session, facts = Client(engine, any_store, cookie=raw).begin()
            session["n"] = 1
            in_flight.append((session, facts))
    clock.advance(IDLE + 1)
    mark, logged = len(recorder.events), len(lines.getvalue().splitlines())

    def steps(finder: str) -> Steps[Any]:
        if finder == "load":
            return engine.load(Client(engine, any_store, cookie=raw).facts())
        if finder == "commit":
            return engine.commit(*in_flight.pop())
        return check_live(engine, key, clock.now())

    a, b = steps(first), steps(second)
    op_a, op_b = _until_revoke(a, any_store), _until_revoke(b, any_store)
    _to_the_end(a, op_a, any_store)
    _to_the_end(b, op_b, any_store)
    ended = [e for e in recorder.events[mark:] if e.kind is EventKind.EXPIRED_IDLE]
    assert [e.reason for e in ended] == [""]
    labels = {"kind": "session.expired.idle"}
    assert registry.get_sample_value("sessionwarden_events_total", labels) == 1.0
    docs = [json.loads(line) for line in lines.getvalue().splitlines()[logged:]]
    assert [d["event"] for d in docs].count("session.expired.idle") == 1
    found = any_store.get(key)
    assert isinstance(found, Tombstone) and found.reason == "expired.idle"


def test_the_tombstone_of_an_expiry_never_comes_back_to_life(
    engine: Engine, any_store: SessionStore, clock: ManualClock
) -> None:
    c = _signed_in(engine, any_store)
    raw = c.cookie
    assert raw is not None
    key = engine.keyring.hash_id(raw)
    clock.advance(IDLE + 1)
    assert _present(engine, any_store, raw) == "idle"
    # Whatever a request still in flight would write: nothing lands on the tombstone.
    assert not any_store.update(key, RecordUpdate(set_data={"n": 2}))
    assert (
        any_store.rotate(
            key,
            key + "x",
            RecordUpdate(),
            old_becomes=Tombstone(key, "rotated:privilege", clock.now(), clock.now() + 60),
            max_per_user=5,
            tombstone_until=clock.now() + 60,
            activity_max=0,
        )
        is None
    )
    assert not isinstance(any_store.get(key), SessionRecord)
    # A login on the expired ID starts a new session; the old ID stays ended.
    again = Client(engine, any_store, cookie=raw)
    assert again.request(lambda s: s.login("alice")).user_id == "alice"
    assert again.cookie not in (None, raw)
    assert _present(engine, any_store, raw) == "idle"
    assert len(any_store.user_sessions("alice")) == 1


def test_after_one_idle_timeout_the_id_is_unknown_again(
    engine: Engine, any_store: SessionStore, clock: ManualClock, recorder: Recorder
) -> None:
    c = _signed_in(engine, any_store)
    raw = c.cookie
    assert raw is not None
    clock.advance(IDLE + 1)
    assert _present(engine, any_store, raw) == "idle"
    clock.advance(IDLE - 1)
    assert _present(engine, any_store, raw) == "idle"
    clock.advance(1)
    assert _present(engine, any_store, raw) is None
    assert recorder.events[-1].kind is EventKind.UNKNOWN_ID


def test_a_revocations_tombstone_is_kept_for_the_tombstone_ttl(
    any_store: SessionStore, clock: ManualClock
) -> None:
    """Only the expiry's tombstone is short: a signed-out ID is reported as long as before."""
    engine = Engine(
        Policy(secret_keys=(SECRET,), idle_timeout=IDLE, absolute_timeout=ABSOLUTE), clock=clock
    )
    c = _signed_in(engine, any_store)
    raw = c.cookie
    assert raw is not None
    c.request(lambda s: s.logout())
    clock.advance(ABSOLUTE - 1)
    assert _present(engine, any_store, raw) == "signed-out"
    clock.advance(1)
    assert _present(engine, any_store, raw) is None
