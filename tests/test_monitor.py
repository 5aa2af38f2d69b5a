"""Fingerprints, risk scoring, and the monitoring sinks, checked by what they return and emit."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionwarden import monitor, scoring, sinks, throttle
from sessionwarden.core.notices import login_notices
from sessionwarden.events import Event, EventKind, FanOut
from sessionwarden.facts import RequestFacts
from sessionwarden.policy import MonitorPolicy
from sessionwarden.records import JSON, SessionRecord
from sessionwarden.scoring import (
    REPLAY_ROTATED_RISK,
    Assessment,
    Risk,
    action_for,
    agent_family,
    assess,
    fingerprint,
    network_of,
    should_refresh,
)
from sessionwarden.sinks import (
    LOG_SCHEMA_KEYS,
    JsonFormatter,
    JsonLogSink,
    PrometheusSink,
)
from sessionwarden.throttle import OutageGate, UnknownIdThrottle
from sessionwarden.tokens import new_session_id

NOW = 1_700_000_000.0

CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
FIREFOX_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"

# ---------------------------------------------------------------------------------------------
# agent_family
# ---------------------------------------------------------------------------------------------

#: An unrecognised agent's family: ``other:`` and a digest of its string.
UNRECOGNISED = "<unrecognised>"
UA_TABLE: list[tuple[str, str, int]] = [
    (CHROME_WIN, "Chrome", 120),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.6099.144 Mobile Safari/537.36",
        "Chrome",
        120,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
        "Chrome",
        120,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
        "Edge",
        120,
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; HD1913) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.6099.144 Mobile Safari/537.36 EdgA/120.0.2210.115",
        "Edge",
        120,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.0 EdgiOS/120.2210.150 Mobile/15E148 Safari/605.1.15",
        "Edge",
        120,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/70.0.3538.102 Safari/537.36 Edge/18.19582",
        "Edge",
        18,
    ),
    (FIREFOX_WIN, "Firefox", 121),
    ("Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0", "Firefox", 121),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) FxiOS/121.0 Mobile/15E148 Safari/605.1.15",
        "Firefox",
        121,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.2 Safari/605.1.15",
        "Safari",
        17,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
        "Safari",
        17,
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
        "Safari",
        16,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0",
        "Opera",
        106,
    ),
    ("Opera/9.80 (Windows NT 6.1; WOW64) Presto/2.12.388 Version/12.18", "Opera", 12),
    (
        "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 "
        "(KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        "Samsung Internet",
        23,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Ubuntu Chromium/79.0.3945.79 Chrome/79.0.3945.79 Safari/537.36",
        "Chromium",
        79,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/120.0.6099.28 Safari/537.36",
        "HeadlessChrome",
        120,
    ),
    ("curl/8.4.0", "curl", 8),
    ("python-requests/2.31.0", "python-requests", 2),
    ("python-httpx/0.27.0", "python-httpx", 0),
    ("Python-urllib/3.11", "python-urllib", 3),
    # Android's pre-Chrome stock browser says "Safari/" but is not Safari.
    (
        "Mozilla/5.0 (Linux; U; Android 4.0.3; ko-kr; LG-L160L Build/IML74K) "
        "AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30",
        UNRECOGNISED,
        0,
    ),
    ("", "other", 0),
    (" \t ", "other", 0),
    ("Mozilla/5.0", UNRECOGNISED, 0),
    ("\x00\xff\u2028 ;;; ((( ///", UNRECOGNISED, 0),
    ("xChrome/99.0", UNRECOGNISED, 0),  # a suffix of another token is not the token
    ("Chrome/", "Chrome", 0),
    ("Chrome/abc", "Chrome", 0),
    ("Chrome/12345678901234567890", "Chrome", 123456),  # bounded
    ("Chrome/\u0661\u0662", "Chrome", 0),  # non-ASCII digits are not a version
]


@pytest.mark.parametrize(("ua", "family", "major"), UA_TABLE)
def test_agent_family_table(ua: str, family: str, major: int) -> None:
    got = agent_family(ua)
    if family == UNRECOGNISED:
        assert got[0].startswith("other:") and len(got[0]) == len("other:") + 12
        assert got[1] == major
    else:
        assert got == (family, major)


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("spec-client/1.0", "spec-client/2.7.1", True),  # an update keeps the family
        ("spec-client/1.0", "other-tool/1.0", False),
        ("Mozilla/5.0 A", "Mozilla/5.0 B", False),
        (
            "Mozilla/5.0 (X11) Gecko/20100101 Rare/3.0",
            "Mozilla/5.0 (X11) Gecko/20100101 Rare/4.1",
            True,
        ),
        ("ua-one", "ua-two", False),
        ("", "spec-client/1.0", False),
    ],
)
def test_unrecognised_agents_are_told_apart_and_keep_their_name_across_versions(
    first: str, second: str, same: bool
) -> None:
    assert (agent_family(first) == agent_family(second)) is same


def test_a_fingerprint_stored_as_plain_other_matches_any_unrecognised_agent() -> None:
    # What earlier releases stored for every unrecognised agent: no upgrade revokes them all.
    stored = fp(ua="other", uav=0)
    current = fp(ua=agent_family("spec-client/1.0")[0], uav=0)
    assert assess(stored, current, last_net_change_at=None, now=NOW, policy=POLICY) == Assessment(
        Risk.NONE, ()
    )
    # ... but a recognised browser is still a changed agent.
    firefox = fp(ua="Firefox", uav=128)
    assert assess(stored, firefox, last_net_change_at=None, now=NOW, policy=POLICY).reasons == (
        "agent-changed",
    )


def test_agent_family_only_reads_the_first_512_characters() -> None:
    assert agent_family(" " * 600 + "Firefox/121.0") == ("other", 0)
    assert agent_family(" " * 400 + "Firefox/121.0") == ("Firefox", 121)


def test_agent_family_is_fast_on_adversarial_input() -> None:
    # Many near-matches of a needle: must stay linear-ish, never backtrack.
    assert agent_family("xChrome/" * 100_000)[0].startswith("other:")
    assert agent_family("Safari/" * 100_000)[0] == "Safari"


# ---------------------------------------------------------------------------------------------
# network_of
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "net"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("10.1.2.3", "10.1.2.0/24"),
        (" 10.1.2.3 ", "10.1.2.0/24"),
        ("2001:db8:abcd:12::1", "2001:db8:abcd::/48"),
        ("2001:DB8:ABCD:FFFF:1:2:3:4", "2001:db8:abcd::/48"),
        ("::1", "::/48"),
        ("::ffff:198.51.100.9", "198.51.100.0/24"),
        ("fe80::1%eth0", "fe80::/48"),
        ("", ""),
        ("not-an-ip", ""),
        ("999.1.1.1", ""),
        ("01.2.3.4", ""),
        ("1.2.3.4/24", ""),
        ("[2001:db8::1]", ""),
        ("1.2.3.4:8080", ""),
        ("1" * 10_000, ""),
    ],
)
def test_network_of(ip: str, net: str) -> None:
    assert network_of(ip) == net


def test_mapped_and_plain_ipv4_share_a_network() -> None:
    assert network_of("::ffff:192.0.2.1") == network_of("192.0.2.200")


# ---------------------------------------------------------------------------------------------
# fingerprint
# ---------------------------------------------------------------------------------------------


def facts(ip: str = "203.0.113.7", ua: str = CHROME_WIN, lang: str = "") -> RequestFacts:
    return RequestFacts(
        method="GET",
        scheme="https",
        host="app.example",
        path="/",
        client_ip=ip,
        user_agent=ua,
        accept_language=lang,
    )


def test_fingerprint_shape() -> None:
    fp = fingerprint(facts(lang="en-US,en;q=0.9,de;q=0.8"))
    assert fp == {
        "ip": "203.0.113.7",
        "net": "203.0.113.0/24",
        "ua": "Chrome",
        "uav": 120,
        "lang": "en-us",
    }
    assert len(json.dumps(fp)) < 200


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        ("", ""),
        ("fr", "fr"),
        ("de-CH;q=0.9, de;q=0.8", "de-ch"),
        ("*", "*"),
        (" zh-Hant-TW , en", "zh-hant-tw"),
        ("<script>", ""),
        ("x" * 100, ""),
        ("\u0130stanbul", ""),
    ],
)
def test_fingerprint_language(header: str, lang: str) -> None:
    assert fingerprint(facts(lang=header))["lang"] == lang


def test_fingerprint_of_unknown_client() -> None:
    fp = fingerprint(facts(ip="", ua=""))
    assert fp["ip"] == "" and fp["net"] == "" and fp["ua"] == "other" and fp["uav"] == 0


def test_fingerprint_unwraps_mapped_ipv4() -> None:
    fp = fingerprint(facts(ip="::ffff:198.51.100.9"))
    assert fp["ip"] == "198.51.100.9" and fp["net"] == "198.51.100.0/24"


# ---------------------------------------------------------------------------------------------
# assess / action_for
# ---------------------------------------------------------------------------------------------

POLICY = MonitorPolicy()  # network_switch_window=300, agent_change_is_high=True


def fp(
    net: str = "203.0.113.0/24", ua: str = "Chrome", uav: int = 120, lang: str = "en-us"
) -> dict[str, JSON]:
    return {"ip": "", "net": net, "ua": ua, "uav": uav, "lang": lang}


OTHER_NET = "198.51.100.0/24"


@pytest.mark.parametrize(
    ("stored", "current", "last_change", "risk", "reasons"),
    [
        pytest.param(fp(), fp(), None, Risk.NONE, (), id="same-network"),
        pytest.param(
            fp(), fp(net=OTHER_NET), None, Risk.LOW, ("network-changed",), id="new-net-same-agent"
        ),
        pytest.param(
            fp(), fp(ua="Firefox", uav=121), None, Risk.HIGH, ("agent-changed",), id="agent"
        ),
        pytest.param(fp(), fp(uav=119), None, Risk.HIGH, ("agent-downgraded",), id="downgrade"),
        pytest.param(fp(), fp(uav=121), None, Risk.NONE, (), id="upgrade"),
        pytest.param(
            fp(),
            fp(net=OTHER_NET),
            NOW - 60,
            Risk.HIGH,
            ("network-flapping",),
            id="flapping-within-window",
        ),
        pytest.param(
            fp(),
            fp(net=OTHER_NET),
            NOW - 301,
            Risk.LOW,
            ("network-changed",),
            id="change-outside-window",
        ),
        pytest.param(
            fp(),
            fp(net=OTHER_NET),
            NOW + 5,
            Risk.HIGH,
            ("network-flapping",),
            id="previous-change-skewed-into-future",
        ),
        pytest.param(
            fp(), fp(lang="de-de"), None, Risk.LOW, ("language-changed",), id="language-only"
        ),
        pytest.param(None, fp(ua="curl", uav=8), None, Risk.NONE, (), id="no-stored"),
        pytest.param({}, fp(), None, Risk.NONE, (), id="empty-stored"),
        pytest.param(fp(net=""), fp(), None, Risk.NONE, (), id="unknown-old-network"),
        # A trait the stored fingerprint has and the request lacks counts as changed: leaving
        # traits out must not get a stolen cookie past the checks.
        pytest.param(fp(), fp(net=""), None, Risk.LOW, ("network-changed",), id="network-left-out"),
        pytest.param(fp(), fp(uav=0), None, Risk.HIGH, ("agent-changed",), id="version-left-out"),
        pytest.param(
            fp(), fp(ua="", uav=0), None, Risk.HIGH, ("agent-changed",), id="agent-left-out"
        ),
        pytest.param(
            fp(), fp(lang=""), None, Risk.LOW, ("language-changed",), id="language-left-out"
        ),
        pytest.param(fp(uav=0, lang=""), fp(), None, Risk.NONE, (), id="stored-vaguer-is-fine"),
        pytest.param(
            fp(),
            fp(net=OTHER_NET, ua="curl", uav=8, lang="de"),
            None,
            Risk.HIGH,
            ("network-changed", "agent-changed", "language-changed"),
            id="everything-changed",
        ),
        pytest.param(
            {"net": 5, "ua": ["x"], "uav": "120", "lang": None},
            fp(),
            None,
            Risk.NONE,
            (),
            id="malformed-stored",
        ),
        pytest.param(fp(uav=True), fp(uav=0), None, Risk.NONE, (), id="bool-is-not-a-version"),
    ],
)
def test_assess_table(
    stored: dict[str, JSON] | None,
    current: dict[str, JSON],
    last_change: float | None,
    risk: Risk,
    reasons: tuple[str, ...],
) -> None:
    got = assess(stored, current, last_net_change_at=last_change, now=NOW, policy=POLICY)
    assert got == Assessment(risk, reasons)


def test_agent_change_is_low_when_policy_says_so() -> None:
    lenient = MonitorPolicy(agent_change_is_high=False)
    changed = assess(fp(), fp(ua="Safari"), last_net_change_at=None, now=NOW, policy=lenient)
    assert changed == Assessment(Risk.LOW, ("agent-changed",))
    down = assess(fp(), fp(uav=100), last_net_change_at=None, now=NOW, policy=lenient)
    assert down == Assessment(Risk.LOW, ("agent-downgraded",))
    # Network flapping stays high regardless of the agent setting.
    flap = assess(fp(), fp(net=OTHER_NET), last_net_change_at=NOW - 1, now=NOW, policy=lenient)
    assert flap.risk is Risk.HIGH


def test_zero_switch_window_disables_flapping() -> None:
    off = MonitorPolicy(network_switch_window=0)
    got = assess(fp(), fp(net=OTHER_NET), last_net_change_at=NOW, now=NOW, policy=off)
    assert got == Assessment(Risk.LOW, ("network-changed",))


def test_assess_on_real_fingerprints() -> None:
    home = fingerprint(facts(ip="203.0.113.7", lang="en"))
    same_net = fingerprint(facts(ip="203.0.113.250", lang="en"))
    stolen = fingerprint(facts(ip="192.0.2.1", ua=FIREFOX_WIN, lang="en"))
    kw = {"last_net_change_at": None, "now": NOW, "policy": POLICY}
    assert assess(home, same_net, **kw).risk is Risk.NONE  # type: ignore[arg-type]
    assert assess(home, stolen, **kw).risk is Risk.HIGH  # type: ignore[arg-type]


def test_a_vague_agent_without_language_does_not_keep_a_stolen_session() -> None:
    """The attack: ``User-Agent: Chrome/`` (no version) and no Accept-Language, from another
    network, against a session made by a real Chrome. Before, only the network change counted
    (low risk: logged and allowed); the missing traits now count as changed."""
    owner = fingerprint(facts(ip="203.0.113.7", ua=CHROME_WIN, lang="en-GB,en;q=0.8"))
    thief = fingerprint(facts(ip="192.0.2.1", ua="Chrome/", lang=""))
    got = assess(owner, thief, last_net_change_at=None, now=NOW, policy=POLICY)
    assert got == Assessment(Risk.HIGH, ("network-changed", "agent-changed", "language-changed"))
    assert action_for(got, POLICY) == "revoke"


@pytest.mark.parametrize(
    ("current", "action", "refresh"),
    [
        pytest.param(fp(net=OTHER_NET), "log", True, id="tolerated-move"),
        pytest.param(fp(net=OTHER_NET), "allow", True, id="allowed-move"),
        pytest.param(fp(), "log", False, id="same-network"),
        pytest.param(fp(net=OTHER_NET), "revoke", False, id="refused"),
        pytest.param(fp(net=OTHER_NET), "step_up", False, id="step-up"),
        pytest.param(fp(net=OTHER_NET, uav=0), "log", False, id="vaguer-version"),
        pytest.param(fp(net=OTHER_NET, lang=""), "log", False, id="vaguer-language"),
        pytest.param(fp(net=OTHER_NET, ua=""), "log", False, id="vaguer-agent"),
        pytest.param(fp(net=""), "log", False, id="vaguer-network"),
    ],
)
def test_a_vaguer_fingerprint_never_replaces_a_precise_one(
    current: dict[str, JSON], action: str, refresh: bool
) -> None:
    assert should_refresh(fp(), current, action) is refresh  # type: ignore[arg-type]


def test_action_for() -> None:
    policy = MonitorPolicy(on_low="step_up", on_high="revoke")
    assert action_for(Assessment(Risk.NONE), policy) == "allow"
    assert action_for(Assessment(Risk.LOW, ("x",)), policy) == "step_up"
    assert action_for(Assessment(Risk.HIGH, ("x",)), policy) == "revoke"
    assert action_for(Assessment(Risk.LOW), MonitorPolicy(on_low="allow")) == "allow"
    assert action_for(Assessment(Risk.HIGH), MonitorPolicy()) == "revoke"
    assert action_for(Assessment(Risk.LOW), MonitorPolicy()) == "log"


def test_replay_of_rotated_id_is_high_risk() -> None:
    assert REPLAY_ROTATED_RISK is Risk.HIGH
    assert action_for(Assessment(REPLAY_ROTATED_RISK), MonitorPolicy()) == "revoke"


# ---------------------------------------------------------------------------------------------
# JsonLogSink / JsonFormatter
# ---------------------------------------------------------------------------------------------


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, ListHandler]]:
    logger = logging.getLogger(f"sessionwarden.test.{request.node.name}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = ListHandler()
    logger.addHandler(handler)
    yield logger, handler
    logger.removeHandler(handler)


def ev(kind: EventKind, **kw: object) -> Event:
    return Event(kind=kind, at=NOW, **kw)  # type: ignore[arg-type]


def test_json_sink_lines_follow_the_schema(
    captured: tuple[logging.Logger, ListHandler],
) -> None:
    logger, handler = captured
    sink = JsonLogSink(logger)
    for kind in EventKind:
        sink.emit(
            ev(
                kind,
                ref="0123456789abcdef",
                user_id="u1",
                client_ip="203.0.113.7",
                user_agent=CHROME_WIN,
                path="/account",
                reason="test",
                detail={"n": 1, "nested": {"ok": [1, 2.5, None, True]}},
            )
        )
    assert len(handler.records) == len(EventKind)
    for record, kind in zip(handler.records, EventKind, strict=True):
        line = record.getMessage()
        assert "\n" not in line
        doc = json.loads(line)
        assert tuple(doc) == LOG_SCHEMA_KEYS
        assert doc["event"] == kind.value
        assert doc["at"] == NOW
        assert doc["user"] == "u1" and doc["ip"] == "203.0.113.7" and doc["path"] == "/account"
        assert doc["detail"] == {"n": 1, "nested": {"ok": [1, 2.5, None, True]}}


def test_json_sink_schema_matches_event_to_dict() -> None:
    assert tuple(ev(EventKind.CREATED).to_dict()) == LOG_SCHEMA_KEYS


@pytest.mark.parametrize(
    ("kind", "level"),
    [
        (EventKind.CREATED, logging.INFO),
        (EventKind.ROTATED, logging.INFO),
        (EventKind.LOGGED_OUT, logging.INFO),
        (EventKind.STORE_RECOVERED, logging.INFO),
        (EventKind.REPLAY_REVOKED, logging.WARNING),
        (EventKind.REPLAY_ROTATED, logging.WARNING),
        (EventKind.ANOMALY, logging.WARNING),
        (EventKind.CSRF_REFUSED, logging.WARNING),
        (EventKind.CROSS_ORIGIN_REFUSED, logging.WARNING),
        (EventKind.UNKNOWN_ID, logging.WARNING),
        (EventKind.MALFORMED_COOKIE, logging.WARNING),
        (EventKind.COOKIE_TOSSING, logging.WARNING),
        (EventKind.THROTTLED, logging.WARNING),
        (EventKind.STORE_UNAVAILABLE, logging.ERROR),
    ],
)
def test_json_sink_levels(
    captured: tuple[logging.Logger, ListHandler], kind: EventKind, level: int
) -> None:
    logger, handler = captured
    JsonLogSink(logger).emit(ev(kind))
    assert [r.levelno for r in handler.records] == [level]


def test_json_sink_base_level_is_a_floor(captured: tuple[logging.Logger, ListHandler]) -> None:
    logger, handler = captured
    sink = JsonLogSink(logger, level=logging.DEBUG)
    sink.emit(ev(EventKind.CREATED))
    sink.emit(ev(EventKind.ANOMALY))
    sink.emit(ev(EventKind.STORE_UNAVAILABLE))
    assert [r.levelno for r in handler.records] == [logging.DEBUG, logging.WARNING, logging.ERROR]
    handler.records.clear()
    JsonLogSink(logger, level=logging.WARNING).emit(ev(EventKind.CREATED))
    assert [r.levelno for r in handler.records] == [logging.WARNING]


def test_json_sink_redacts_token_looking_values(
    captured: tuple[logging.Logger, ListHandler],
) -> None:
    logger, handler = captured
    sid = new_session_id()
    assert len(sid) == 43
    JsonLogSink(logger).emit(
        ev(
            EventKind.ANOMALY,
            path=f"/reset/{sid}",
            detail={
                "id": sid,
                "nested": {"list": [sid, "fine"]},
                "inline": f"cookie={sid};",
                "short": "abcdefghijklmnopqrstuvwxyz",
                sid: "as a key",
            },
        )
    )
    line = handler.records[0].getMessage()
    assert sid not in line
    doc = json.loads(line)
    assert doc["detail"]["id"] == "[redacted]"
    assert doc["detail"]["nested"]["list"] == ["[redacted]", "fine"]
    assert doc["detail"]["inline"] == "cookie=[redacted];"
    assert doc["detail"]["short"] == "abcdefghijklmnopqrstuvwxyz"
    assert doc["detail"]["[redacted]"] == "as a key"
    assert doc["path"] == "/reset/[redacted]"


def test_json_sink_truncates_and_escapes(captured: tuple[logging.Logger, ListHandler]) -> None:
    logger, handler = captured
    JsonLogSink(logger).emit(
        ev(
            EventKind.CREATED,
            user_agent="Mozilla/5.0 " * 100,
            path="/a\nb\u2028c",
            detail={"nan": float("nan"), "obj": object(), "deep": [[[[[[[[["x"]]]]]]]]]},
        )
    )
    line = handler.records[0].getMessage()
    assert line.isascii() and "\n" not in line and "\u2028" not in line
    doc = json.loads(line)
    assert len(doc["ua"]) == 256
    assert doc["path"] == "/a\nb\u2028c"
    assert doc["detail"]["nan"] is None
    assert isinstance(doc["detail"]["obj"], str)
    assert "[truncated]" in json.dumps(doc["detail"]["deep"])


def test_json_sink_skips_muted_levels(captured: tuple[logging.Logger, ListHandler]) -> None:
    logger, handler = captured
    logger.setLevel(logging.WARNING)
    sink = JsonLogSink(logger)
    sink.emit(ev(EventKind.CREATED))
    sink.emit(ev(EventKind.ANOMALY))
    assert [json.loads(r.getMessage())["event"] for r in handler.records] == ["anomaly.detected"]


def test_json_formatter(captured: tuple[logging.Logger, ListHandler]) -> None:
    logger, handler = captured
    JsonLogSink(logger).emit(ev(EventKind.REVOKED, reason="admin"))
    logger.info("plain %s", "text")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    fmt = JsonFormatter()
    event_line, plain_line, exc_line = (fmt.format(r) for r in handler.records)
    assert event_line == handler.records[0].getMessage()
    assert tuple(json.loads(event_line)) == LOG_SCHEMA_KEYS
    plain = json.loads(plain_line)
    assert plain["message"] == "plain text" and plain["level"] == "INFO"
    assert set(plain) == {"at", "level", "logger", "message"}
    exc = json.loads(exc_line)
    assert exc["level"] == "ERROR" and "ValueError: boom" in exc["exc"]


def test_json_sink_default_logger_and_fanout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sessionwarden.events")

    class Boom:
        def emit(self, event: Event) -> None:
            raise RuntimeError("broken sink")

    FanOut(Boom(), JsonLogSink()).emit(ev(EventKind.LOGGED_IN, user_id="u"))
    [record] = [r for r in caplog.records if r.name == "sessionwarden.events"]
    assert json.loads(record.getMessage())["event"] == "session.logged_in"


# ---------------------------------------------------------------------------------------------
# PrometheusSink
# ---------------------------------------------------------------------------------------------


def test_prometheus_counts_events_and_sets_gauge() -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    assert sink.registry is registry
    sample = registry.get_sample_value
    assert sample("sessionwarden_events_total", {"kind": "session.created"}) == 0.0
    sink.emit(ev(EventKind.CREATED))
    sink.emit(ev(EventKind.CREATED))
    sink.emit(ev(EventKind.REPLAY_REVOKED))
    assert sample("sessionwarden_events_total", {"kind": "session.created"}) == 2.0
    assert sample("sessionwarden_events_total", {"kind": "session.replay.revoked"}) == 1.0
    assert sample("sessionwarden_events_total", {"kind": "anomaly.detected"}) == 0.0
    sink.set_live_sessions(42)
    assert sample("sessionwarden_live_sessions") == 42.0
    sink.set_live_sessions(7)
    assert sample("sessionwarden_live_sessions") == 7.0


def test_prometheus_sinks_on_separate_registries_do_not_collide() -> None:
    a, b = PrometheusSink(), PrometheusSink()
    assert a.registry is not b.registry
    a.emit(ev(EventKind.ANOMALY))
    assert a.registry.get_sample_value("sessionwarden_events_total", {"kind": "anomaly.detected"})
    assert (
        b.registry.get_sample_value("sessionwarden_events_total", {"kind": "anomaly.detected"})
        == 0.0
    )
    from prometheus_client import REGISTRY

    assert a.registry is not REGISTRY


def test_prometheus_namespace() -> None:
    sink = PrometheusSink(namespace="myapp")
    sink.emit(ev(EventKind.CREATED))
    value = sink.registry.get_sample_value("myapp_events_total", {"kind": "session.created"})
    assert value == 1.0


@pytest.mark.redis
def test_prometheus_watches_a_redis_read_cache() -> None:
    import time

    from sessionwarden.stores.redis import RedisStore

    from .conftest import drop_prefix, redis_or_skip, unique_prefix
    from .stores.test_redis import make_record

    prefix = unique_prefix()
    store = RedisStore(redis_or_skip(), prefix=prefix)
    try:
        assert store.read_cache is not None and store.read_cache.feed.wait_connected(5.0)
        sink = PrometheusSink()
        sink.watch(store, name="sessions")
        sample = sink.registry.get_sample_value
        labels = {"store": "sessions"}
        assert sample("sessionwarden_read_cache_notices_up", labels) == 1.0
        assert sample("sessionwarden_read_cache_notice_connects_total", labels) == 1.0
        store.insert(make_record("k"), max_per_user=0, tombstone_until=time.time() + 60)
        for _ in range(4):
            assert store.get("k") is not None  # one miss, then hits
        assert sample("sessionwarden_read_cache_misses_total", labels) == 1.0
        assert sample("sessionwarden_read_cache_hits_total", labels) == 3.0
        assert sample("sessionwarden_read_cache_entries", labels) == 1.0
        with pytest.raises(ValueError, match="already watched"):
            sink.watch(store, name="sessions")
        store.read_cache.feed._break()  # the notice connection drops: the gauge says so
        assert sample("sessionwarden_read_cache_notices_up", labels) == 0.0
        assert sample("sessionwarden_read_cache_entries", labels) == 0.0
    finally:
        store.close()
        drop_prefix(prefix)


def test_prometheus_refuses_a_store_without_a_read_cache() -> None:
    from sessionwarden.stores import MemoryStore

    with pytest.raises(ValueError, match="no read cache"):
        PrometheusSink().watch(MemoryStore())


def test_prometheus_missing_dependency_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"sessionwarden\[metrics\]"):
        PrometheusSink()


# ---------------------------------------------------------------------------------------------
# OutageGate
# ---------------------------------------------------------------------------------------------


def test_outage_gate_emits_once_per_outage() -> None:
    gate = OutageGate()
    assert gate.success() is False  # healthy store: nothing to report
    assert gate.failing is False
    assert gate.failure(NOW) is True
    assert gate.failing is True
    assert gate.down_since == NOW
    assert [gate.failure(NOW + i) for i in range(1, 5)] == [False] * 4
    assert gate.success() is True
    assert gate.failing is False
    assert gate.down_since is None
    assert gate.success() is False
    assert gate.failure(NOW + 100) is True  # a new outage is reported again
    assert gate.down_since == NOW + 100


def test_outage_gate_is_thread_safe() -> None:
    gate = OutageGate()
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def worker() -> None:
        start.wait()
        for _ in range(200):
            r = gate.failure(NOW)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


# ---------------------------------------------------------------------------------------------
# UnknownIdThrottle
# ---------------------------------------------------------------------------------------------


def test_throttle_trips_after_limit_and_resets_after_window() -> None:
    throttle = UnknownIdThrottle(3)
    ip = "203.0.113.7"
    assert [throttle.hit(ip, NOW + i) for i in range(3)] == [False, False, False]
    assert throttle.blocked(ip, NOW + 3) is False
    assert throttle.hit(ip, NOW + 4) is True
    assert throttle.blocked(ip, NOW + 5) is True
    assert throttle.hit("203.0.113.8", NOW + 5) is False  # other clients are unaffected
    assert throttle.blocked(ip, NOW + 60) is False  # window over
    assert throttle.hit(ip, NOW + 60) is False
    assert throttle.blocked(ip, NOW + 61) is False


def test_throttle_zero_disables() -> None:
    throttle = UnknownIdThrottle(0)
    assert not any(throttle.hit("203.0.113.7", NOW) for _ in range(1000))
    assert throttle.blocked("203.0.113.7", NOW) is False
    assert len(throttle) == 0


def test_throttle_rejects_negative_limit() -> None:
    with pytest.raises(ValueError, match="limit_per_minute"):
        UnknownIdThrottle(-1)


def test_throttle_groups_ipv6_by_64_and_mapped_ipv4() -> None:
    throttle = UnknownIdThrottle(1)
    assert throttle.hit("2001:db8:1:2::1", NOW) is False
    assert throttle.hit("2001:db8:1:2::ffff", NOW) is True  # same /64
    assert throttle.hit("2001:db8:1:3::1", NOW) is False  # next /64
    assert throttle.hit("192.0.2.1", NOW) is False
    assert throttle.hit("::ffff:192.0.2.1", NOW) is True


def test_throttle_ignores_unknown_client() -> None:
    throttle = UnknownIdThrottle(1)
    assert not any(throttle.hit("", NOW) for _ in range(10))
    assert len(throttle) == 0


def test_throttle_memory_is_bounded() -> None:
    throttle = UnknownIdThrottle(5)
    for i in range(20_000):
        throttle.hit(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", NOW + i * 0.001)
    assert len(throttle) == 10_000
    # The newest clients are the ones remembered.
    last = 19_999
    ip = f"10.{last >> 16 & 255}.{last >> 8 & 255}.{last & 255}"
    for _ in range(5):
        throttle.hit(ip, NOW + 21)
    assert throttle.blocked(ip, NOW + 21) is True


def test_throttle_forgets_expired_windows() -> None:
    throttle = UnknownIdThrottle(5, max_tracked=100)
    for i in range(50):
        throttle.hit(f"192.0.2.{i}", NOW)
    assert len(throttle) == 50
    throttle.hit("198.51.100.1", NOW + 61)
    assert len(throttle) == 1


def test_throttle_is_thread_safe() -> None:
    throttle = UnknownIdThrottle(100)
    over: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            r = throttle.hit("203.0.113.7", NOW)
            with lock:
                over.append(r)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert over.count(False) == 100 and over.count(True) == 300


# ---------------------------------------------------------------------------------------------
# Never raising on arbitrary input
# ---------------------------------------------------------------------------------------------


@given(st.text(max_size=2000))
def test_agent_family_never_raises(ua: str) -> None:
    family, major = agent_family(ua)
    assert isinstance(family, str) and 0 <= major < 1_000_000


@given(st.text(max_size=200))
def test_network_of_never_raises(ip: str) -> None:
    net = network_of(ip)
    assert net == "" or "/" in net


@given(st.text(max_size=300), st.text(max_size=600), st.text(max_size=300))
def test_fingerprint_never_raises(ip: str, ua: str, lang: str) -> None:
    fp_ = fingerprint(facts(ip=ip, ua=ua, lang=lang))
    assert set(fp_) == {"ip", "net", "ua", "uav", "lang"}
    assert len(json.dumps(fp_)) < 400


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=5), json_values, max_size=6), st.floats())
def test_assess_never_raises_on_arbitrary_stored(stored: dict[str, JSON], at: float) -> None:
    got = assess(stored, fp(), last_net_change_at=at, now=NOW, policy=POLICY)
    assert isinstance(got.risk, Risk)


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6), st.text(max_size=100))
def test_json_sink_always_writes_one_parseable_line(detail: dict[str, JSON], text: str) -> None:
    logger = logging.getLogger("sessionwarden.test.hypothesis")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = ListHandler()
    logger.addHandler(handler)
    try:
        JsonLogSink(logger).emit(ev(EventKind.ANOMALY, path=text, user_agent=text, detail=detail))
    finally:
        logger.removeHandler(handler)
    [record] = handler.records
    line = record.getMessage()
    assert "\n" not in line
    assert tuple(json.loads(line)) == LOG_SCHEMA_KEYS


def test_monitor_keeps_every_name_of_the_split_modules_importable() -> None:
    """``sessionwarden.monitor`` was split by concern; code importing from it keeps working."""
    for module in (scoring, sinks, throttle):
        for name in module.__all__:
            assert getattr(monitor, name) is getattr(module, name), name
    assert set(monitor.__all__) == set(scoring.__all__) | set(sinks.__all__) | set(throttle.__all__)


# ---------------------------------------------------------------------------------------------
# Events are built only for a sink that wants them; every sink that does gets every one
# ---------------------------------------------------------------------------------------------


def test_a_muted_log_sink_leaves_every_event_to_the_other_sinks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from sessionwarden.clock import ManualClock
    from sessionwarden.core import Engine
    from sessionwarden.events import CallbackSink, NullSink
    from sessionwarden.policy import Policy
    from sessionwarden.stores.memory import MemoryStore

    from .conftest import SECRET
    from .test_engine import Client, login

    def sign_in_and_out(sink: sinks.JsonLogSink | FanOut | NullSink) -> list[EventKind]:
        seen: list[EventKind] = []
        engine = Engine(
            Policy(secret_keys=(SECRET,)),
            clock=ManualClock(),
            sink=FanOut(sink, CallbackSink(lambda e: seen.append(e.kind))),
        )
        browser = Client(engine, MemoryStore())
        browser.request(lambda s: s.csrf_token())
        login(browser)
        browser.request(lambda s: s.logout())
        return seen

    expected = [
        EventKind.CREATED,
        EventKind.ROTATED,
        EventKind.LOGGED_IN,
        EventKind.LOGGED_OUT,
    ]
    caplog.set_level(logging.WARNING, logger="sessionwarden.events")
    assert sign_in_and_out(sinks.JsonLogSink()) == expected
    assert sign_in_and_out(NullSink()) == expected
    assert not [r for r in caplog.records if r.name == "sessionwarden.events"]
    caplog.set_level(logging.INFO, logger="sessionwarden.events")
    assert sign_in_and_out(sinks.JsonLogSink()) == expected
    logged = [
        json.loads(r.getMessage())["event"]
        for r in caplog.records
        if r.name == "sessionwarden.events"
    ]
    assert logged == [kind.value for kind in expected]


def test_a_sink_whose_wants_fails_still_gets_the_event_through_fanout() -> None:
    class Broken:
        def __init__(self) -> None:
            self.got: list[Event] = []

        def wants(self, kind: EventKind) -> bool:
            raise RuntimeError("broken")

        def emit(self, event: Event) -> None:
            self.got.append(event)

    broken = Broken()
    fan = FanOut(sinks.JsonLogSink(logging.getLogger("sessionwarden.test.muted")), broken)
    logging.getLogger("sessionwarden.test.muted").setLevel(logging.CRITICAL)
    assert fan.wants(EventKind.LOGGED_IN)
    fan.emit(ev(EventKind.LOGGED_IN, user_id="u"))
    assert [e.kind for e in broken.got] == [EventKind.LOGGED_IN]


# -- login notices (the pure rule) ---------------------------------------------------------------


def _other(fp: dict[str, JSON] | None) -> SessionRecord:
    return SessionRecord(
        key="k", created_at=0, last_seen=0, expires_at=1, rotated_at=0, csrf_secret="s",
        user_id="alice", fingerprint=fp,
    )  # fmt: skip


HOME: dict[str, JSON] = {
    "ip": "198.51.100.7",
    "net": "198.51.100.0/24",
    "ua": "Firefox",
    "uav": 128,
    "lang": "en",
}

BOTH = [EventKind.CONCURRENT_LOGIN, EventKind.NEW_DEVICE]


@pytest.mark.parametrize(
    ("mine", "others", "kinds"),
    [
        (HOME, [], []),
        (HOME, [_other(HOME)], [EventKind.CONCURRENT_LOGIN]),
        (HOME, [_other({**HOME, "ip": "198.51.100.9", "uav": 130})], [EventKind.CONCURRENT_LOGIN]),
        (HOME, [_other({**HOME, "ua": "Chrome"})], BOTH),
        (HOME, [_other({**HOME, "net": "203.0.113.0/24"})], BOTH),
        (HOME, [_other(None)], BOTH),
        (HOME, [_other({**HOME, "ua": "Chrome"}), _other(HOME)], [EventKind.CONCURRENT_LOGIN]),
        (None, [_other(HOME)], [EventKind.CONCURRENT_LOGIN]),
    ],
)  # fmt: skip
def test_login_notices_table(
    mine: dict[str, JSON] | None, others: list[SessionRecord], kinds: list[EventKind]
) -> None:
    """A new device is a browser family and network none of the other live sessions has; a
    session without a fingerprint matches nothing, and without one of its own the sign-in is
    only concurrent."""
    notices = login_notices(mine, others)
    assert [kind for kind, _ in notices] == kinds
    for _, detail in notices:
        assert detail["others"] == len(others)
