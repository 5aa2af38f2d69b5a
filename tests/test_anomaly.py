"""Hijack detection end to end: fingerprints, risk, the policy's response, step-up, credential
changes, and the events and metrics they leave, against every store."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sessionwarden.clock import ManualClock
from sessionwarden.core import Engine, ReauthenticationRequired, run_sync
from sessionwarden.events import EventKind, FanOut
from sessionwarden.facts import RequestFacts
from sessionwarden.guard import Guard
from sessionwarden.monitor import PrometheusSink
from sessionwarden.policy import MonitorPolicy, Policy
from sessionwarden.stores.base import SessionStore

from .conftest import SECRET
from .test_engine import Client, Recorder, login

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


@dataclass
class Browser(Client):
    """A client that also sends ``Accept-Language``, as every browser does."""

    lang: str = "en-GB,en;q=0.9"

    def facts(self) -> RequestFacts:
        facts = super().facts()
        facts.accept_language = self.lang
        return facts


def guarded_engine(
    clock: ManualClock, recorder: Recorder, **monitor: object
) -> tuple[Engine, PrometheusSink]:
    metrics = PrometheusSink()
    policy = Policy(secret_keys=(SECRET,), allowed_hosts=("*",), monitor=MonitorPolicy(**monitor))  # type: ignore[arg-type]
    guard = Guard(policy, clock=clock, sink=FanOut(recorder, metrics))
    return guard.engine, metrics


def count(metrics: PrometheusSink, kind: EventKind) -> float:
    value = metrics.registry.get_sample_value("sessionwarden_events_total", {"kind": kind.value})
    return value or 0.0


def test_cookie_replayed_with_another_browser_is_revoked(
    store: SessionStore, clock: ManualClock
) -> None:
    rec = Recorder()
    engine, metrics = guarded_engine(clock, rec)
    victim = Client(engine, store, ua=FIREFOX, ip="198.51.100.7")
    login(victim)
    thief = Client(engine, store, cookie=victim.cookie, ua=CHROME, ip="203.0.113.9")
    assert not thief.request().is_authenticated
    assert not victim.request().is_authenticated  # the stolen session is dead for both
    anomaly = [e for e in rec.events if e.kind == EventKind.ANOMALY]
    assert anomaly and anomaly[0].detail["action"] == "revoke"
    assert "agent-changed" in anomaly[0].reason
    assert EventKind.REVOKED in rec.kinds()
    assert count(metrics, EventKind.ANOMALY) == 1
    assert count(metrics, EventKind.REVOKED) == 1


def test_network_change_alone_is_logged_and_allowed(
    store: SessionStore, clock: ManualClock
) -> None:
    rec = Recorder()
    engine, _ = guarded_engine(clock, rec)
    c = Client(engine, store, ua=FIREFOX, ip="198.51.100.7")
    login(c)
    clock.advance(3600 * 0.1)
    c.ip = "192.0.2.44"  # another network, same browser: a train, a café
    assert c.request().user_id == "alice"
    logged = [e for e in rec.events if e.kind == EventKind.ANOMALY]
    assert len(logged) == 1 and logged[0].detail["action"] == "log"
    assert logged[0].detail["risk"] == "low"
    # the new network is now the session's own: no second event from it
    clock.advance(1)
    assert c.request().user_id == "alice"
    assert len([e for e in rec.events if e.kind == EventKind.ANOMALY]) == 1


def test_flapping_between_networks_is_high_risk(store: SessionStore, clock: ManualClock) -> None:
    rec = Recorder()
    engine, _ = guarded_engine(clock, rec, network_switch_window=300)
    c = Client(engine, store, ua=FIREFOX, ip="198.51.100.7")
    login(c)
    clock.advance(10)
    c.ip = "192.0.2.44"
    assert c.request().user_id == "alice"  # first change: low
    clock.advance(10)
    c.ip = "198.51.100.7"
    assert not c.request().is_authenticated  # back within the window: two places at once
    assert "network-flapping" in [e for e in rec.events if e.kind == EventKind.ANOMALY][-1].reason


def test_rotated_out_id_replayed_after_grace_revokes_its_successor(
    store: SessionStore, clock: ManualClock
) -> None:
    rec = Recorder()
    engine, _ = guarded_engine(clock, rec)
    c = Client(engine, store, ua=FIREFOX)
    login(c)
    copied = c.cookie
    clock.advance(engine.policy.rotate_every)
    c.request()  # rotates; the copy is now a rotated-out ID
    assert c.cookie != copied
    clock.advance(engine.policy.rotation_grace + 1)
    thief = Client(engine, store, cookie=copied, ua=FIREFOX)
    assert not thief.request().is_authenticated
    assert EventKind.REPLAY_ROTATED in rec.kinds()
    assert not c.request().is_authenticated  # the session the copy led to is ended too


def test_step_up_policy_demands_reauthentication(store: SessionStore, clock: ManualClock) -> None:
    rec = Recorder()
    engine, _ = guarded_engine(clock, rec, on_high="step_up")
    c = Client(engine, store, ua=FIREFOX)
    login(c)
    c.ua = CHROME
    session = c.request()
    assert session.user_id == "alice"  # not revoked ...
    with pytest.raises(ReauthenticationRequired) as raised:
        session.require_recent_auth(3600)  # ... but sensitive operations need a new sign-in
    assert raised.value.reason == "step-up-required"
    assert EventKind.STEP_UP_REQUIRED in rec.kinds()
    before = c.cookie
    c.request(lambda s: s.reauthenticated())
    assert c.cookie != before  # re-authentication rotates the ID
    c.request().require_recent_auth(3600)  # and clears the demand


def test_recent_auth_expires(store: SessionStore, clock: ManualClock) -> None:
    engine, _ = guarded_engine(clock, Recorder())
    c = Client(engine, store, ua=FIREFOX)
    login(c)
    c.request().require_recent_auth(300)
    clock.advance(301)
    with pytest.raises(ReauthenticationRequired) as raised:
        c.request().require_recent_auth(300)
    assert raised.value.reason == "authentication-too-old"


def test_credential_change_ends_other_sessions_and_rotates(
    store: SessionStore, clock: ManualClock
) -> None:
    rec = Recorder()
    engine, _ = guarded_engine(clock, rec)
    laptop, phone = Client(engine, store, ua=FIREFOX), Client(engine, store, ua=FIREFOX)
    login(laptop)
    login(phone)
    before = laptop.cookie
    laptop.request(lambda s: s.credentials_changed())
    assert laptop.cookie != before
    assert laptop.request().user_id == "alice"
    assert not phone.request().is_authenticated
    assert any(e.reason == "policy:credential-change" for e in rec.events)


def test_disabling_a_user_ends_every_session(store: SessionStore, clock: ManualClock) -> None:
    engine, _ = guarded_engine(clock, Recorder())
    clients = [Client(engine, store, ua=FIREFOX) for _ in range(3)]
    for c in clients:
        login(c)
    assert len(run_sync(engine.revoke_user("alice", by="admin"), store)) == 3
    assert not any(c.request().is_authenticated for c in clients)


# -- leaving traits out (a vague agent, no language) ------------------------------------------


def anomalies(rec: Recorder) -> list[str]:
    return [e.reason for e in rec.events if e.kind == EventKind.ANOMALY]


def test_leaving_traits_out_does_not_keep_a_stolen_session(
    store: SessionStore, clock: ManualClock
) -> None:
    """``User-Agent: Chrome/`` with no version and no Accept-Language, from another network,
    used to pass as a network change only (logged, allowed). The missing traits count as
    changed: the agent check is high risk and the session is revoked."""
    rec = Recorder()
    engine, _ = guarded_engine(clock, rec)
    owner = Browser(engine, store, ua=CHROME, ip="198.51.100.7")
    login(owner)
    thief = Browser(engine, store, cookie=owner.cookie, ua="Chrome/", lang="", ip="203.0.113.9")
    assert not thief.request().is_authenticated
    assert not owner.request().is_authenticated
    assert "agent-changed" in anomalies(rec)[0]
    assert "language-changed" in anomalies(rec)[0]


def test_the_same_address_and_agent_without_a_language_is_noticed(
    store: SessionStore, clock: ManualClock
) -> None:
    """Behind the owner's own NAT, with the owner's exact user agent, a client that leaves out
    Accept-Language is reported (low risk: logged) rather than waved through."""
    rec = Recorder()
    engine, _ = guarded_engine(clock, rec)
    owner = Browser(engine, store, ua=CHROME, ip="198.51.100.7")
    login(owner)
    other = Browser(engine, store, cookie=owner.cookie, ua=CHROME, lang="", ip="198.51.100.7")
    assert other.request().user_id == "alice"
    assert anomalies(rec) == ["language-changed"]


def test_a_vaguer_fingerprint_never_replaces_the_precise_one(
    store: SessionStore, clock: ManualClock
) -> None:
    """With agent changes only logged, a vague client from another network is allowed but its
    fingerprint does not become the session's: each of its requests is reported again, and the
    owner coming back from home is not taken for the one who moved."""
    rec = Recorder()
    engine, _ = guarded_engine(clock, rec, agent_change_is_high=False)
    owner = Browser(engine, store, ua=CHROME, ip="198.51.100.7")
    login(owner)
    vague = Browser(engine, store, cookie=owner.cookie, ua="Chrome/", lang="", ip="203.0.113.9")
    assert vague.request().user_id == "alice"  # low risk under this policy: logged
    clock.advance(10)
    assert vague.request().user_id == "alice"
    assert len(anomalies(rec)) == 2  # still compared with the precise fingerprint
    clock.advance(10)
    assert owner.request().user_id == "alice"  # home again: no flapping, nothing to report
    assert len(anomalies(rec)) == 2
