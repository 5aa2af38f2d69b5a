"""Requirements A2-A10 that need a configuration of their own or a clock, checked against live
servers: the application of ``tests/two_adapters.py`` served by uvicorn (ASGI) and by Werkzeug's
threaded server (Flask over WSGI) over TLS on loopback (``tests/live_two_adapters.py``), each
browser an ``httpx.Client`` with its own cookie jar, its address named by the trusted proxy
(this loopback address) in ``X-Forwarded-For``. The server's clock is a :class:`ManualClock`
the test moves: nothing waits for a timeout. Only statuses, headers, bodies, the cookie jars,
the audit events and (for fail-closed) the store's own process are used.

Items: explicit ``SameSite`` and the persistent cookie's ``Max-Age`` (A2.13, A2.14); rotation
on re-authentication, step-up, credential and privilege changes (A3.19), an expired ID never
coming back (A3.21), the renewal grace window (A3.22); failing closed with a generic answer when
the store is gone (A4.24, A4.26); idle and absolute timeouts, a passive path and the records
they delete (A6.34-A6.38); step-up bound to the session and the operation (A7.40); the
session cap (A8.43); the replay of a rotated-out ID (A9.51) and the application's risk decision
(A9.52); the route guard for state-changing paths (A10.53), the policy for requests without
fetch metadata or ``Origin`` (A10.56), exempt paths that do not widen (A10.61) and report-only
roll-out (A10.63).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionwarden.events import EventKind
from sessionwarden.policy import (
    CookiePolicy,
    CsrfPolicy,
    HttpsPolicy,
    MonitorPolicy,
    Policy,
    RiskSignal,
)
from sessionwarden.stores.sqlite_rows import RECORD

from .conftest import SECRET
from .live_two_adapters import COOKIE, LiveTwo, live_two
from .private_redis import PrivateRedis
from .test_standards_spec_clients import parse_set_cookie

ADAPTERS = pytest.mark.parametrize("kind", ["asgi", "wsgi"])
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
HOME = "203.0.113.5"


def _policy(**settings: Any) -> Policy:
    return Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("127.0.0.1",),
        https=HttpsPolicy(trusted_proxies=("127.0.0.1",)),
        **settings,
    )


@contextmanager
def served(kind: str, tmp: Path, store: str = "memory://", **settings: Any) -> Iterator[LiveTwo]:
    with live_two(kind, _policy(**settings), tmp, store) as live:
        yield live


class Browser:
    """A browser: its cookie jar, agent and address."""

    def __init__(self, live: LiveTwo, ua: str = FIREFOX, ip: str = HOME) -> None:
        self.live, self.ua, self.ip = live, ua, ip
        self.http = live.client()

    def close(self) -> None:
        self.http.close()

    @property
    def cookie(self) -> str | None:
        return self.http.cookies.get(COOKIE)

    def keep(self, value: str) -> None:
        """Put a copy of a session cookie in this jar (a stolen or kept copy)."""
        self.http.cookies.clear()
        self.http.cookies.set(COOKIE, value, domain="127.0.0.1", path="/")

    def request(self, method: str, path: str, **headers: str) -> httpx.Response:
        sent = {"user-agent": self.ua, "x-forwarded-for": self.ip, "accept": "application/json"}
        return self.http.request(method, path, headers=sent | headers)

    def token(self) -> str:
        return str(self.request("GET", "/token").json()["csrf_token"])

    def post(self, path: str, *, token: bool = True, **headers: str) -> httpx.Response:
        """A same-origin post from a page of the site, with the token unless told not to."""
        sent = {"sec-fetch-site": "same-origin", "origin": self.live.base}
        if token:
            sent["x-csrf-token"] = self.token()
        return self.request("POST", path, **(sent | headers))

    def login(self) -> str:
        r = self.post("/login")
        assert r.status_code == 200, r.text
        assert self.cookie
        return self.cookie

    def user(self) -> str | None:
        r = self.request("GET", "/whoami")
        assert r.status_code == 200, r.text
        user: str | None = r.json()["user"]
        return user


@pytest.fixture
def browsers() -> Iterator[Any]:
    made: list[Browser] = []

    def make(live: LiveTwo, ua: str = FIREFOX, ip: str = HOME) -> Browser:
        b = Browser(live, ua, ip)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def _session_cookie(r: httpx.Response) -> Any:
    found = [parse_set_cookie(h) for h in r.headers.get_list("set-cookie")]
    found = [c for c in found if c.name == COOKIE]
    assert len(found) == 1, r.headers.get_list("set-cookie")
    return found[0]


# -- A2.13, A2.14: SameSite always explicit; a persistent cookie within both caps -----------------


@ADAPTERS
@pytest.mark.parametrize("same_site", ["Strict", "Lax", "None"])
def test_same_site_is_always_the_configured_value(
    kind: str, same_site: str, tmp_path: Path, browsers: Any
) -> None:
    """A2.13: the sign-in's cookie names the configured ``SameSite`` once, ``None`` only with
    ``Secure``; by default (A2.14) it is a browser-session cookie."""
    cookie = CookiePolicy(same_site=same_site)  # type: ignore[arg-type]
    with served(kind, tmp_path, cookie=cookie) as live:
        b = browsers(live)
        r = b.post("/login")
        set_cookie = _session_cookie(r)
        assert [v for n, v in set_cookie.attributes if n == "samesite"] == [same_site]
        assert set_cookie.has("secure")
        assert not set_cookie.has("max-age") and not set_cookie.has("expires")


@ADAPTERS
@pytest.mark.parametrize(("absolute", "cap"), [(7200.0, 7200), (500 * 86_400.0, 400 * 86_400)])
def test_a_persistent_cookie_lives_no_longer_than_the_session_or_400_days(
    kind: str, absolute: float, cap: int, tmp_path: Path, browsers: Any
) -> None:
    """A2.14: with persistence on, ``Max-Age`` is at most the absolute timeout and never over
    400 days; an hour later the re-issued cookie asks for an hour less."""
    lifetime = {"absolute_timeout": absolute, "idle_timeout": absolute}
    with served(kind, tmp_path, cookie=CookiePolicy(persistent=True), **lifetime) as live:
        b = browsers(live)
        age = int(_session_cookie(b.post("/login")).get("max-age"))
        assert 0 < age <= cap
        live.clock.advance(3600)
        later = int(_session_cookie(b.post("/rotate")).get("max-age"))
        assert b.user() == "alice"
        assert later <= min(cap, int(absolute) - 3600)


# -- A3.19, A3.21, A3.22: rotation and the grace window ------------------------------------------


@ADAPTERS
@pytest.mark.parametrize("path", ["/reauth", "/password", "/rotate", "/step-up?op=pay"])
def test_each_privilege_event_rotates_the_id_and_the_old_one_dies_at_once(
    kind: str, path: str, tmp_path: Path, browsers: Any
) -> None:
    """A3.19: re-authentication, a credential change, a privilege change (``rotate``) and a
    step-up each set a new ID; a client that kept the old one is signed out at once (no grace:
    a copy taken before the change must not share its privilege), the owner stays signed in."""
    with served(kind, tmp_path) as live:
        owner, copy = browsers(live), browsers(live)
        before = owner.login()
        r = owner.post(path)
        assert r.status_code == 200, r.text
        after = owner.cookie
        assert after and after != before
        copy.keep(before)
        assert copy.user() is None
        assert owner.user() == "alice"


@ADAPTERS
def test_an_expired_id_is_never_brought_back_by_a_sign_in(
    kind: str, tmp_path: Path, browsers: Any
) -> None:
    """A3.21: after the idle timeout the old ID, sent to the sign-in, gets a new one; the old
    one stays dead afterwards."""
    with served(kind, tmp_path, idle_timeout=600) as live:
        b = browsers(live)
        old = b.login()
        live.clock.advance(601)
        assert b.user() is None
        b.keep(old)
        new = b.login()
        assert new != old
        stale = browsers(live)
        stale.keep(old)
        assert stale.user() is None
        assert b.user() == "alice"


@ADAPTERS
def test_a_renewed_id_works_for_the_grace_window_only_and_its_replay_ends_the_session(
    kind: str, tmp_path: Path, browsers: Any
) -> None:
    """A3.22 and A9.51: renewal every 60 s with a 10 s grace. The old ID still works 5 s after
    the renewal (a request in flight), is refused 11 s after it with a
    ``session.replay.rotated`` event, and that replay ends the session it became."""
    with served(kind, tmp_path, rotate_every=60, rotation_grace=10) as live:
        owner = browsers(live)
        first = owner.login()
        live.clock.advance(61)
        assert owner.user() == "alice"
        second = owner.cookie
        assert second and second != first
        in_flight = browsers(live)
        in_flight.keep(first)
        live.clock.advance(5)
        assert in_flight.user() == "alice"
        live.clock.advance(6)
        thief = browsers(live)
        thief.keep(first)
        assert thief.user() is None
        assert live.events.count(EventKind.REPLAY_ROTATED) == 1
        assert owner.user() is None  # the whole family ends


# -- A4.24, A4.26: the store is gone -----------------------------------------------------------


@ADAPTERS
def test_a_lost_store_fails_closed_with_a_generic_answer(
    kind: str, tmp_path: Path, browsers: Any
) -> None:
    """A4.24 and A4.26: with the session store (a Redis server of this test's own) killed, a
    signed-in browser gets 503, never its user, for reads and writes alike; the answer names
    neither the store, its address, nor the session ID, and carries no traceback."""
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        url = f"redis://127.0.0.1:{redis.port}/0"
        with served(kind, tmp_path, store=url) as live:
            b = browsers(live)
            cookie = b.login()
            assert b.user() == "alice"
            redis.kill()
            for r in (b.request("GET", "/whoami"), b.post("/transfer", token=False)):
                assert r.status_code == 503, (r.status_code, r.text)
                text = r.text + json.dumps(dict(r.headers))
                for secret in (cookie, "alice", "redis", str(redis.port), "Traceback"):
                    assert secret.lower() not in text.lower(), secret
            assert live.events.count(EventKind.STORE_UNAVAILABLE) >= 1
    finally:
        redis.kill()


# -- A6.34-A6.38: timeouts, on the server's clock ----------------------------------------------


@ADAPTERS
def test_idle_and_absolute_timeouts_and_a_passive_path(
    kind: str, tmp_path: Path, browsers: Any
) -> None:
    """A6.34, A6.35, A6.37: idle 600 s, absolute 1800 s. Requests every 500 s keep the session
    past the idle timeout; polling the passive path does not; every session ends at the
    absolute timeout however busy. A6.38: each end is reported once with its reason, and the
    stored records are gone (the SQLite file keeps only their tombstones)."""
    db = tmp_path / "s.db"
    lifetime = {"idle_timeout": 600.0, "absolute_timeout": 1800.0, "passive_paths": ("/poll",)}
    with served(kind, tmp_path, store=f"sqlite:///{db}", **lifetime) as live:
        busy, polling = browsers(live), browsers(live)
        busy.login()
        polling.login()
        for _ in range(3):  # t = 1500
            live.clock.advance(500)
            assert busy.user() == "alice"
            assert polling.request("GET", "/poll").status_code == 200
        assert polling.user() is None  # 1500 s without a request that counts
        live.clock.advance(301)  # t = 1801
        assert busy.user() is None
        kinds = [e.kind for e in live.events.events]
        assert kinds.count(EventKind.EXPIRED_IDLE) == 1
        assert kinds.count(EventKind.EXPIRED_ABSOLUTE) == 1
        with contextlib.closing(sqlite3.connect(db)) as conn:  # grey-box: the rows themselves
            rows = conn.execute("SELECT kind FROM items WHERE user_id = 'alice'").fetchall()
        assert rows and RECORD not in {kind for (kind,) in rows}  # tombstones only


# -- A7.40: step-up bound to its session and its operation ---------------------------------------


@ADAPTERS
def test_a_step_up_grant_is_for_one_operation_of_one_session_once(
    kind: str, tmp_path: Path, browsers: Any
) -> None:
    """A7.40: the sensitive operation without a grant is refused (403); a grant for it works
    once; it is worth nothing for another operation, nor in another session of the same user."""
    with served(kind, tmp_path) as live:
        a, other = browsers(live), browsers(live)
        a.login()
        other.login()
        op = "/sensitive?op=transfer:bob:10"
        assert a.post(op).status_code == 403
        assert a.post("/step-up?op=transfer:bob:10").status_code == 200
        assert other.post(op).status_code == 403  # the grant is this session's
        assert a.post("/sensitive?op=transfer:bob:9999").status_code == 403  # another amount
        assert a.post(op).status_code == 200
        assert a.post(op).status_code == 403  # used up
        kinds = [e.kind for e in live.events.events]
        assert EventKind.STEP_UP_GRANTED in kinds and EventKind.STEP_UP_REFUSED in kinds


# -- A8.43: the session cap ------------------------------------------------------------------


@ADAPTERS
@pytest.mark.parametrize("action", ["evict-oldest", "reject"])
def test_the_session_cap_evicts_the_oldest_or_refuses_the_new_sign_in(
    kind: str, action: str, tmp_path: Path, browsers: Any
) -> None:
    """A8.43: at most two sessions. Evicting: the third sign-in ends the first. Refusing: the
    third sign-in fails with a clear error, and the first two still work."""
    with served(kind, tmp_path, max_sessions_per_user=2, on_session_limit=action) as live:
        first, second, third = browsers(live), browsers(live), browsers(live)
        first.login()
        live.clock.advance(1)
        second.login()
        live.clock.advance(1)
        r = third.post("/login")
        if action == "evict-oldest":
            assert r.status_code == 200
            assert (first.user(), second.user(), third.user()) == (None, "alice", "alice")
            assert live.events.count(EventKind.EVICTED) == 1
        else:
            assert r.status_code == 409
            assert r.json() == {"error": "session-limit", "reason": "max-sessions"}
            assert (first.user(), second.user(), third.user()) == ("alice", "alice", None)
            assert live.events.count(EventKind.LOGIN_REFUSED) == 1


# -- A9.52: the application's risk decision --------------------------------------------------------


@ADAPTERS
def test_the_risk_decision_receives_a_typed_signal_and_is_applied(
    kind: str, tmp_path: Path, browsers: Any
) -> None:
    """A9.52: a changed browser is high risk and revoked by default; the application's decision
    (here: only log it) is applied, and it received the typed signal without the cookie."""
    seen: list[RiskSignal] = []

    def decide(signal: RiskSignal) -> Any:
        seen.append(signal)
        return "log"

    with served(kind, tmp_path, monitor=MonitorPolicy(decide=decide)) as live:
        owner = browsers(live)
        cookie = owner.login()
        other = browsers(live, ua=CHROME)
        other.keep(cookie)
        assert other.user() == "alice"
        assert seen and seen[-1].reasons == ("agent-changed",) and seen[-1].risk == "high"
        assert seen[-1].client_ip == HOME and cookie not in repr(seen[-1])
        assert live.events.of(EventKind.ANOMALY)[-1].detail["action"] == "log"


# -- A10.53, A10.56, A10.61, A10.63: the CSRF configuration ---------------------------------------


@ADAPTERS
@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE"])
def test_a_state_changing_path_refuses_safe_methods_with_405(
    kind: str, method: str, tmp_path: Path, browsers: Any
) -> None:
    """A10.53: ``GET``, ``HEAD``, ``OPTIONS`` and ``TRACE`` on a path declared state-changing
    get 405 with ``Allow`` before the application runs; ``POST`` there still works."""
    csrf = CsrfPolicy(state_changing_paths=("/transfer",))
    with served(kind, tmp_path, csrf=csrf) as live:
        b = browsers(live)
        b.login()
        r = b.request(method, "/transfer")
        assert r.status_code == 405
        assert "POST" in r.headers.get("allow", "")
        assert "transfer done" not in r.text
        assert b.post("/transfer").text == "transfer done"


@ADAPTERS
@pytest.mark.parametrize("policy", ["allow", "refuse"])
def test_a_post_without_fetch_metadata_or_origin_follows_the_policy(
    kind: str, policy: str, tmp_path: Path, browsers: Any
) -> None:
    """A10.56: a signed-in POST with a valid token but neither ``Sec-Fetch-Site`` nor
    ``Origin``: ``allow`` lets the token decide (200), ``refuse`` answers 403. Without any
    cookie there is nothing to forge and it is not refused by this rule."""
    csrf = CsrfPolicy(missing_headers=policy)  # type: ignore[arg-type]
    with served(kind, tmp_path, csrf=csrf) as live:
        b = browsers(live)
        b.login()
        r = b.request("POST", "/transfer", **{"x-csrf-token": b.token()})
        assert r.status_code == (200 if policy == "allow" else 403), r.text
        if policy == "refuse":
            assert r.json().get("reason") == "missing-browser-headers", r.text
        anonymous = browsers(live)
        r = anonymous.request("POST", "/transfer")
        assert r.status_code == 403  # no session, so no token: the token check refuses it
        assert r.json().get("reason") != "missing-browser-headers", r.text


def _raw_post(live: LiveTwo, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """A POST with the request target exactly as written (no client normalises it)."""
    conn = http.client.HTTPSConnection("127.0.0.1", live.port, context=live.tls, timeout=15)
    try:
        conn.putrequest("POST", target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@ADAPTERS
@pytest.mark.parametrize(
    ("target", "exempt"),
    [
        ("/webhook/github", True),
        ("/webhook", False),
        ("/webhook/../transfer", False),
        ("/webhook/%2e%2e/transfer", False),
        ("/webhook/..%2ftransfer", False),
        ("//webhook/", False),
        ("/Webhook/github", False),
        ("/webhooks/github", False),
        ("/transfer", False),
    ],
)
def test_an_exempt_subtree_is_matched_exactly(
    kind: str, target: str, exempt: bool, tmp_path: Path, browsers: Any
) -> None:
    """A10.61: with ``/webhook/`` exempt, a cross-site POST with a session and no token into
    that subtree is not refused by the CSRF check (the framework answers, 404 here: no such
    route); ``/webhook``, dot segments, a doubled slash, another case or a longer name are
    refused with 403 and never reach ``/transfer``. (Werkzeug's server itself reads the target
    ``//webhook/`` as ``/webhook/``, the path the application then routes: inside the subtree
    for both the check and the router.)"""
    csrf = CsrfPolicy(exempt_paths=("/webhook/",))
    with served(kind, tmp_path, csrf=csrf) as live:
        b = browsers(live)
        b.login()
        headers = {
            "Host": f"127.0.0.1:{live.port}",
            "Cookie": f"{COOKIE}={b.cookie}",
            "User-Agent": FIREFOX,
            "X-Forwarded-For": HOME,
            "Sec-Fetch-Site": "cross-site",
            "Origin": "https://evil.test",
        }
        status, body = _raw_post(live, target, headers)
        assert b"transfer done" not in body
        if exempt or (target == "//webhook/" and kind == "wsgi"):
            assert status == 404, (status, body[:200])
        elif "../" in target and status == 400:
            pass  # the server refused the target itself
        else:
            assert status == 403, (target, status, body[:200])


@ADAPTERS
def test_report_only_lets_a_forged_post_through_and_reports_it(
    kind: str, tmp_path: Path, browsers: Any
) -> None:
    """A10.63: in report-only mode a cross-site POST without a token is served and reported
    (``csrf.would_block``); enforced, it gets 403 with a generic body and a refusal event
    naming the check, and never the token."""
    with served(kind, tmp_path, csrf=CsrfPolicy(report_only=True)) as live:
        b = browsers(live)
        b.login()
        forged = {"sec-fetch-site": "cross-site", "origin": "https://evil.test"}
        assert b.post("/transfer", token=False, **forged).text == "transfer done"
        assert live.events.count(EventKind.CSRF_WOULD_BLOCK) >= 1
    (tmp_path / "enforced").mkdir()
    with served(kind, tmp_path / "enforced") as live:
        b = browsers(live)
        b.login()
        token = b.token()
        r = b.post("/transfer", token=False, **forged, **{"x-csrf-token": token})
        assert r.status_code == 403 and "transfer done" not in r.text
        assert token not in r.text and "Traceback" not in r.text
        refused = live.events.of(EventKind.CROSS_ORIGIN_REFUSED)
        assert refused and refused[-1].detail.get("header") == "sec-fetch-site"
        assert token not in json.dumps([e.to_dict() for e in live.events.events])
