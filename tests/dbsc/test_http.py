"""DBSC end to end through the middleware: the spec-written browser client against both adapters
(ASGI, WSGI) and every store (memory, SQLite, Redis), with a manual clock.

Registration after login, the bound cookie's expiry -> deferral -> refresh (403, sign, retry),
periodic ID rotation in the same response as a refresh, and the binding's end at logout,
revocation and expiry. The binding lives in the session record and moves with its ID.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sessionwarden.dbsc_state import state_in

from .client import DbscBrowser, parse_set_cookie
from .http_server import Server, Stores, dbsc_policy

BOUND = "__Host-dbsc"
REFRESH = "/_sessionwarden/dbsc/refresh"
REGISTER = "/_sessionwarden/dbsc/register"


@pytest.fixture(params=["asgi", "wsgi"])
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(adapter: str, stores: Stores, **options: Any) -> tuple[Server, DbscBrowser]:
    server = Server(adapter, stores, dbsc_policy(**options))
    return server, DbscBrowser(server.send, server.clock.now)


@pytest.fixture
def pair(adapter: str, stores: Stores) -> Iterator[tuple[Server, DbscBrowser]]:
    server, browser = make(adapter, stores)
    yield server, browser
    server.close()


def test_register_then_refresh_after_the_bound_cookie_expires(
    pair: tuple[Server, DbscBrowser],
) -> None:
    server, browser = pair
    login = browser.request("GET", "/login")
    assert login.status == 200
    assert browser.log == ["GET /login -> 200", f"POST {REGISTER} -> 200"]
    assert browser.instructions is not None and browser.instructions["refresh_url"] == REFRESH
    first = browser.cookies[BOUND][0]
    assert browser.request("GET", "/account").body == b"alice"
    # The public key and the challenge state are in the session record, in a field of its own.
    (record,) = server.records()
    state = state_in(record.dbsc)
    assert state is not None and state.bound and state.jwk == browser.key.jwk()  # type: ignore[union-attr]
    assert "dbsc" not in record.flags

    server.clock.advance(601)  # the bound cookie's Max-Age (600 s) has passed
    browser.log.clear()
    assert browser.request("GET", "/account").body == b"alice"
    assert browser.log == [
        "defer /account",
        f"POST {REFRESH} -> 403",
        f"POST {REFRESH} -> 200",
        "GET /account -> 200",
    ]
    second = browser.cookies[BOUND][0]
    assert second != first
    # The rotated challenge makes the next refresh a single round trip, with another value.
    server.clock.advance(601)
    browser.log.clear()
    assert browser.request("GET", "/account").body == b"alice"
    assert browser.log == ["defer /account", f"POST {REFRESH} -> 200", "GET /account -> 200"]
    assert browser.cookies[BOUND][0] not in (first, second)
    assert server.kinds() == ["dbsc.registered:ES256", "dbsc.refreshed:", "dbsc.refreshed:"]


def test_endpoint_answers_are_never_framed_cached_or_shared_cross_origin(
    pair: tuple[Server, DbscBrowser],
) -> None:
    server, browser = pair
    browser.request("GET", "/login")
    server.clock.advance(601)
    answers = [browser.refresh()]
    answers.append(server.send("POST", REFRESH, {"sec-secure-session-id": "x"}))  # no session
    for answer in answers:
        assert answer.status in (200, 403)
        assert answer.header("x-frame-options") == "DENY"
        assert "frame-ancestors 'none'" in (answer.header("content-security-policy") or "")
        assert answer.header("cache-control") == "no-store"
        assert not [k for k, _ in answer.headers if k.lower().startswith("access-control-")]
    assert answers[1].json() == {"continue": False}


def test_periodic_rotation_and_refresh_share_one_response(adapter: str, stores: Stores) -> None:
    server, browser = make(adapter, stores, rotate_every=900.0)
    try:
        browser.request("GET", "/login")
        (before,) = server.records()
        old_id = browser.cookies["__Host-id"][0]
        server.clock.advance(901)  # both the bound cookie and the session ID are due
        browser.log.clear()
        assert browser.request("GET", "/account").body == b"alice"
        refreshed = [line for line in browser.log if line.startswith("POST")]
        assert refreshed[-1] == f"POST {REFRESH} -> 200"
        assert browser.cookies["__Host-id"][0] != old_id  # rotated by the refresh response
        (after,) = server.records()
        assert after.key != before.key
        moved = state_in(after.dbsc)
        assert moved is not None and moved.jwk == state_in(before.dbsc).jwk  # type: ignore[union-attr]
        # Only the refresh and the page: no extra round trip for the rotation.
        assert browser.log[-1] == "GET /account -> 200" and len(browser.log) <= 4
        assert browser.request("GET", "/account").body == b"alice"
    finally:
        server.close()


def test_explicit_rotation_keeps_the_binding(pair: tuple[Server, DbscBrowser]) -> None:
    server, browser = pair
    browser.request("GET", "/login")
    (before,) = server.records()
    assert browser.request("GET", "/rotate").status == 200
    (after,) = server.records()
    assert after.key != before.key and after.dbsc == before.dbsc
    assert browser.request("GET", "/account").body == b"alice"
    server.clock.advance(601)
    assert browser.request("GET", "/account").body == b"alice"


def test_logout_ends_the_binding(pair: tuple[Server, DbscBrowser]) -> None:
    server, browser = pair
    browser.request("GET", "/login")
    bye = browser.request("GET", "/logout")
    cleared = [parse_set_cookie(v) for v in bye.all("set-cookie")]
    assert {name for name, value, attrs in cleared if attrs.get("max-age") == "0"} >= {
        "__Host-id",
        BOUND,
    }
    assert bye.header("clear-site-data") is not None
    # A browser still holding the binding is told it is over.
    assert browser.refresh().json() == {"continue": False}
    assert browser.instructions is None and server.records() == []


def test_revocation_elsewhere_ends_the_binding_at_the_next_refresh(
    pair: tuple[Server, DbscBrowser],
) -> None:
    server, browser = pair
    browser.request("GET", "/login")
    server.run(server.engine.revoke_user("alice", by="admin"))
    server.clock.advance(601)
    browser.log.clear()
    page = browser.request("GET", "/account")
    assert page.body == b"anonymous"
    assert browser.log[:2] == ["defer /account", f"POST {REFRESH} -> 200"]
    assert browser.instructions is None  # {"continue": false}
    assert "dbsc.terminated:no-session" in server.kinds()


def test_expiry_ends_the_binding(adapter: str, stores: Stores) -> None:
    server, browser = make(adapter, stores, idle_timeout=1200.0)
    try:
        browser.request("GET", "/login")
        server.clock.advance(1300)
        assert browser.refresh().json() == {"continue": False}
        assert browser.instructions is None
    finally:
        server.close()


def test_sessions_list_shows_the_device_bound_session(pair: tuple[Server, DbscBrowser]) -> None:
    server, browser = pair
    # A browser without DBSC ignores the offer: its session stays unbound.
    plain = server.send("GET", "/login", {})
    assert plain.header("secure-session-registration") is not None
    browser.request("GET", "/login")
    infos = server.run(server.engine.list_sessions("alice"))
    assert sorted(i.to_dict()["device_bound"] for i in infos) == [False, True]


def test_login_from_an_existing_session_offers_and_binds(
    pair: tuple[Server, DbscBrowser],
) -> None:
    server, browser = pair
    assert browser.request("GET", "/count").body == b"1"  # an anonymous session first
    browser.request("GET", "/login")  # the login rotates that session's ID
    assert browser.log[-1] == f"POST {REGISTER} -> 200"
    (record,) = server.records()
    assert record.data["n"] == 1 and state_in(record.dbsc).bound  # type: ignore[union-attr]
    server.clock.advance(601)
    assert browser.request("GET", "/count").body == b"2"


@pytest.mark.parametrize("path", ["/switch", "/login-bob"])
def test_another_users_sign_in_is_not_bound_by_the_first_users_key(
    pair: tuple[Server, DbscBrowser], path: str
) -> None:
    """Alice's session is bound to a key; Bob signs in on that browser (after ``logout()`` in
    the same request, or without it). His new session starts unbound, with the offer's fresh
    challenge alone: her key and bound state are not carried into it (they were, through the
    offer, which built his registration state from her record)."""
    server, browser = pair
    browser.request("GET", "/login")
    (alice,) = server.records()
    assert state_in(alice.dbsc).bound  # type: ignore[union-attr]
    cookies = "; ".join(f"{name}={value[0]}" for name, value in browser.cookies.items())
    r = server.send("GET", path, {"cookie": cookies})
    assert r.status == 200 and r.header("secure-session-registration") is not None
    (bob,) = server.stores.sync.user_sessions("bob")
    state = state_in(bob.dbsc)
    assert state is not None and not state.bound and state.jwk is None
    assert server.records() == [], "alice's session ended"


def test_skipped_refresh_is_reported(pair: tuple[Server, DbscBrowser]) -> None:
    server, browser = pair
    browser.request("GET", "/login")
    skipped = f'unreachable;session_identifier="{browser.session_id}"'
    assert browser.request("GET", "/account", {"secure-session-skipped": skipped}).body == b"alice"
    (event,) = [e for e in server.events if e.kind.value == "dbsc.skipped"]
    assert (event.reason, event.detail) == ("unreachable", {"this_session": True})


def test_prometheus_counts_registrations_refreshes_failures_and_missing_cookies(
    adapter: str, stores: Stores
) -> None:
    from sessionwarden.sinks import PrometheusSink

    metrics = PrometheusSink()
    server = Server(adapter, stores, dbsc_policy(), also=metrics)
    try:
        browser = DbscBrowser(server.send, server.clock.now)
        browser.request("GET", "/login")
        server.clock.advance(601)
        browser.request("GET", "/account")  # 403 (no proof yet: not a failure), then 200
        cookie = {"cookie": f"__Host-id={browser.cookies['__Host-id'][0]}"}
        server.send("GET", "/account", cookie)  # the long-lived cookie alone
        sid = {"sec-secure-session-id": str(browser.session_id)}
        server.send("POST", REFRESH, {**cookie, **sid, "secure-session-response": "x.y.z"})

        def count(kind: str) -> float:
            value = metrics.registry.get_sample_value("sessionwarden_events_total", {"kind": kind})
            return value or 0.0

        assert count("dbsc.registered") == 1 and count("dbsc.refreshed") == 1
        assert count("dbsc.missing_bound_cookie") == 1 and count("dbsc.proof_failed") == 1
    finally:
        server.close()
