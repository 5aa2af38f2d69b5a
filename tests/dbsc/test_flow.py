"""DBSC end to end at the pure level: a spec-following browser client against the decisions.

Registration after login, the 403 -> sign -> retry dance, deferral of a request whose bound
cookie ran out, single-round-trip refreshes with the pushed challenge, termination, rate
limiting, and what is (and is not) kept in the session record.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from sessionwarden import dbsc
from sessionwarden.dbsc_wire import parse_skipped, parse_string_item

from .client import DbscBrowser, parse_set_cookie
from .pure_server import PureServer


def _pair(alg: str = "ES256", **policy: object) -> tuple[PureServer, DbscBrowser]:
    server = PureServer(policy=dbsc.DbscPolicy(enabled=True, **policy))  # type: ignore[arg-type]
    browser = DbscBrowser(server.send, server.clock.now, alg=alg)
    return server, browser


def _bound_cookie(browser: DbscBrowser) -> str:
    return browser.cookies["__Host-dbsc"][0]


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_registration_after_login_binds_the_session(alg: str) -> None:
    server, browser = _pair(alg)
    browser.request("GET", "/login")
    assert browser.log == ["GET /login -> 200", "POST /_sessionwarden/dbsc/register -> 200"]
    assert browser.instructions is not None
    assert browser.instructions["refresh_url"] == "/_sessionwarden/dbsc/refresh"
    assert browser.instructions["scope"] == {
        "origin": "https://app.test",
        "include_site": False,
        "scope_specification": [
            {"type": "exclude", "path": "/_sessionwarden/dbsc/register"},
            {"type": "exclude", "path": "/favicon.ico"},
        ],
    }
    assert browser.instructions["credentials"] == [
        {
            "type": "cookie",
            "name": "__Host-dbsc",
            "attributes": "Path=/; Secure; HttpOnly; SameSite=Lax",
        }
    ]
    assert browser.request("GET", "/account").body == b"alice"
    assert server.kinds() == [f"dbsc.registered:{alg}"]
    (sid,) = server.records
    state = server.state(sid)
    assert state is not None and state.bound and state.alg == alg
    assert state.jwk == browser.key.jwk()  # type: ignore[union-attr]


def test_registration_header_and_cookie_syntax() -> None:
    server = PureServer()
    login = server.send("GET", "/login", {})
    offer = login.header("secure-session-registration")
    assert offer is not None
    assert re.fullmatch(
        r'\(ES256 RS256\);path="/_sessionwarden/dbsc/register";challenge="[A-Za-z0-9_-]{43}"', offer
    )
    browser = DbscBrowser(server.send, server.clock.now)
    browser.cookies["__Host-id"] = (parse_set_cookie(login.all("set-cookie")[0])[1], None)
    from .client import parse_registration

    reply = browser.register(parse_registration(offer))
    (set_cookie,) = reply.all("set-cookie")
    name, value, attrs = parse_set_cookie(set_cookie)
    assert name == "__Host-dbsc" and len(value) == 43
    assert attrs == {"max-age": "600", "path": "/", "secure": "", "httponly": "", "samesite": "Lax"}
    assert reply.header("content-type") == "application/json"
    assert reply.header("cache-control") == "no-store"
    assert reply.header("x-frame-options") == "DENY"
    assert reply.header("access-control-allow-origin") is None
    assert reply.header("secure-session-challenge") is None  # off by default (B.11)


def test_expired_bound_cookie_defers_the_request_behind_a_refresh() -> None:
    server, browser = _pair()
    browser.request("GET", "/login")
    first = _bound_cookie(browser)
    server.clock.advance(601)
    browser.log.clear()
    assert browser.request("GET", "/account").body == b"alice"
    assert browser.log == [
        "defer /account",
        "POST /_sessionwarden/dbsc/refresh -> 403",  # no challenge cached yet
        "POST /_sessionwarden/dbsc/refresh -> 200",
        "GET /account -> 200",
    ]
    assert _bound_cookie(browser) != first
    assert [k for k in server.kinds() if "refreshed" in k] == ["dbsc.refreshed:"]


def test_pushed_challenge_makes_the_next_refresh_one_round_trip() -> None:
    server, browser = _pair()
    browser.request("GET", "/login")
    seen = {_bound_cookie(browser)}
    for _ in range(5):
        server.clock.advance(601)
        browser.log.clear()
        assert browser.request("GET", "/page").body == b"alice"
        seen.add(_bound_cookie(browser))
    # after the first 403 dance, each refresh signs the challenge pushed with the last 200
    assert browser.log == [
        "defer /page",
        "POST /_sessionwarden/dbsc/refresh -> 200",
        "GET /page -> 200",
    ]
    assert len(seen) == 6  # never the same bound cookie twice
    assert "dbsc.proof_failed" not in " ".join(server.kinds())


def test_refresh_outlasting_challenge_ttl_costs_one_403_not_the_session() -> None:
    server, browser = _pair()
    browser.request("GET", "/login")
    server.clock.advance(601)
    browser.request("GET", "/page")
    server.clock.advance(5000)  # the pushed challenge is long stale
    browser.log.clear()
    assert browser.request("GET", "/page").body == b"alice"
    assert browser.log[1:3] == [
        "POST /_sessionwarden/dbsc/refresh -> 403",
        "POST /_sessionwarden/dbsc/refresh -> 200",
    ]
    assert server.kinds()[-2] == "dbsc.proof_failed:expired-challenge"


def test_excluded_paths_need_no_bound_cookie() -> None:
    server, browser = _pair(exclude_paths=("/static/",))
    browser.request("GET", "/login")
    server.clock.advance(601)
    browser.log.clear()
    assert browser.request("GET", "/static/app.css").body == b"alice"
    assert browser.log == ["GET /static/app.css -> 200"]
    assert not dbsc.in_scope(server.policy, "/_sessionwarden/dbsc/refresh")
    assert dbsc.in_scope(server.policy, "/staticx")
    assert dbsc.in_scope(dbsc.DbscPolicy(), "/account")
    assert not dbsc.in_scope(dbsc.DbscPolicy(), "/favicon.ico")


def test_session_gone_answers_continue_false_and_the_browser_ends_the_binding() -> None:
    server, browser = _pair()
    browser.request("GET", "/login")
    server.records.clear()  # logged out / revoked / expired server-side
    server.clock.advance(601)
    response = browser.refresh()
    assert response.status == 200 and response.json() == {"continue": False}
    assert browser.instructions is None
    assert "dbsc.terminated:no-session" in server.kinds()


def test_refresh_rate_limit_answers_429_and_keeps_the_session() -> None:
    server, browser = _pair(refresh_limit=3, refresh_window=60.0)
    browser.request("GET", "/login")
    statuses = [browser.refresh().status for _ in range(4)]
    assert statuses[:1] == [200] and 429 in statuses
    assert browser.instructions is not None  # 429 never terminates
    server.clock.advance(61)
    assert browser.refresh().status == 200


def test_previous_bound_cookie_stays_valid_only_until_its_own_max_age() -> None:
    server, browser = _pair()
    browser.request("GET", "/login")
    old = _bound_cookie(browser)
    server.clock.advance(300)
    browser.refresh()  # proactive refresh while the old cookie is alive
    (sid,) = server.records
    state = server.state(sid)
    hv = server.keyring.hash_value
    assert dbsc.check_bound_cookie(state, old, server.clock.now(), hv) is dbsc.CookieCheck.OK
    server.clock.advance(301)
    assert dbsc.check_bound_cookie(state, old, server.clock.now(), hv) is dbsc.CookieCheck.EXPIRED
    assert dbsc.check_bound_cookie(state, _bound_cookie(browser), server.clock.now(), hv) is (
        dbsc.CookieCheck.OK
    )


def test_state_is_json_and_holds_no_raw_secret() -> None:
    server, browser = _pair()
    browser.request("GET", "/login")
    server.clock.advance(601)
    browser.request("GET", "/page")
    (sid,) = server.records
    text = server.records[sid]
    state = server.state(sid)
    assert state is not None and dbsc.DbscState.from_json(json.loads(text)["dbsc"]) == state
    assert _bound_cookie(browser) not in text
    assert browser.cached_challenge is not None and browser.cached_challenge not in text
    assert dbsc.state_of({"dbsc": {"v": 99}}) is dbsc.CORRUPT
    assert dbsc.check_bound_cookie(dbsc.CORRUPT, "x" * 43, 0.0, server.keyring.hash_value) is (
        dbsc.CookieCheck.WRONG
    )


def test_skipped_header_is_parsed_and_reported() -> None:
    server, browser = _pair()
    browser.request("GET", "/login")
    sid = browser.session_id
    header = f'unreachable;session_identifier="{sid}", quota_exceeded;session_identifier="other"'
    browser.request("GET", "/page", {"secure-session-skipped": header})
    skipped = [n for n in server.notes if n.kind.value == "dbsc.skipped"]
    assert [(n.reason, n.detail["this_session"]) for n in skipped] == [
        ("unreachable", True),
        ("quota_exceeded", False),
    ]
    assert parse_skipped("server_error") == [dbsc.Skipped("server_error", "")]
    for junk in ('"str"', "a,", ",", "unreachable;=1", 'x;session_identifier="\\q"', "\x00"):
        assert parse_skipped(junk) == []


def test_string_items_quoted_bare_and_junk() -> None:
    assert parse_string_item('"abc.def"') == "abc.def"
    assert parse_string_item('"a\\"b";x=1') == 'a"b'
    assert parse_string_item("eyJ.eyJ.sig") == "eyJ.eyJ.sig"  # Chromium 156 sends it bare
    for junk in (None, "", '"open', '"a"b', "a b", '"\x7f"', "x" * 9000):
        assert parse_string_item(junk) is None


def test_policy_validation() -> None:
    for bad in (
        {"algorithms": ("none",)},
        {"algorithms": ()},
        {"algorithms": ("ES256", "ES256")},
        {"algorithms": ("HS256",)},
        {"cookie_name": "dbsc"},
        {"cookie_max_age": 5},
        {"register_path": "relative"},
        {"refresh_path": "/_sessionwarden/dbsc/register"},
        {"on_missing": "ignore"},
        {"refresh_limit": 0},
        {"exclude_paths": ('/a"b',)},
    ):
        with pytest.raises(ValueError, match=r"^dbsc\."):
            dbsc.DbscPolicy(**bad)  # type: ignore[arg-type]
    assert dbsc.DbscPolicy().enabled is False


@pytest.mark.parametrize(
    ("scheme", "host", "ok"),
    [
        ("https", "app.test", True),
        ("http", "localhost:8000", True),
        ("http", "127.0.0.1:8000", True),
        ("http", "[::1]:8000", True),
        ("http", "app.test", False),
        ("http", "10.0.0.1", False),
        ("ws", "localhost", False),
    ],
)
def test_offered_on_https_or_loopback_only(scheme: str, host: str, ok: bool) -> None:
    assert dbsc.may_offer(scheme, host) is ok


def test_importing_sessionwarden_does_not_need_cryptography() -> None:
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "cryptography" or name.startswith("cryptography."):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import sessionwarden
from sessionwarden import dbsc
from sessionwarden.tokens import Keyring
hv = Keyring([b"k" * 32]).hash_value
policy = dbsc.DbscPolicy(enabled=True)
offer = dbsc.registration_offer(policy, None, 0.0, hv)
assert dbsc.check_bound_cookie(offer.state, None, 0.0, hv) is dbsc.CookieCheck.UNBOUND
assert "sessionwarden.dbsc_proof" not in sys.modules
try:
    dbsc.registration(policy, offer.state, dbsc.DbscRequest(proof="a.b.c"), 0.0, hv, "https://a")
except ImportError as exc:
    print("needs-extra", exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "needs-extra blocked: cryptography" in out.stdout


def test_bound_cookie_survives_a_secret_rotation_through_legacy_hashers() -> None:
    from sessionwarden.tokens import Keyring

    server, browser = _pair()
    browser.request("GET", "/login")
    (sid,) = server.records
    state, value, now = server.state(sid), _bound_cookie(browser), server.clock.now()
    rotated = Keyring([b"n" * 32, b"k" * 32])
    old_only = Keyring([b"k" * 32])
    assert dbsc.check_bound_cookie(state, value, now, rotated.hash_value) is dbsc.CookieCheck.WRONG
    assert (
        dbsc.check_bound_cookie(state, value, now, rotated.hash_value, [old_only.hash_value])
        is dbsc.CookieCheck.OK
    )
