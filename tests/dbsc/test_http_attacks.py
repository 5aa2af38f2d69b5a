"""DBSC attacks at the HTTP level, through both adapters and every store.

A thief holds copies of the cookies but not the device's private key; these tests play him and
check what the middleware serves: stolen long-lived cookie alone, an expired bound cookie, proofs
signed by another key, replayed and foreign challenges, ``alg: none``, a ``jwk`` smuggled into a
refresh, and registration from a cross-site context.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sessionwarden.dbsc_state import state_in

from .client import DbscBrowser, DeviceKey, parse_challenge, unsigned_proof
from .http_server import Server, Stores, dbsc_policy

BOUND = "__Host-dbsc"
REFRESH = "/_sessionwarden/dbsc/refresh"
REGISTER = "/_sessionwarden/dbsc/register"


@pytest.fixture(params=["asgi", "wsgi"])
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def bound_pair(adapter: str, stores: Stores, **options: Any) -> tuple[Server, DbscBrowser]:
    server = Server(adapter, stores, dbsc_policy(**options))
    browser = DbscBrowser(server.send, server.clock.now)
    browser.request("GET", "/login")
    assert browser.instructions is not None
    return server, browser


@pytest.fixture
def pair(adapter: str, stores: Stores) -> Iterator[tuple[Server, DbscBrowser]]:
    server, browser = bound_pair(adapter, stores)
    yield server, browser
    server.close()


def jar(browser: DbscBrowser, *, bound: bool) -> dict[str, str]:
    cookies = {"__Host-id": browser.cookies["__Host-id"][0]}
    if bound:
        cookies[BOUND] = browser.cookies[BOUND][0]
    return {"cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


def challenge(server: Server, browser: DbscBrowser) -> str:
    """What anybody holding the long-lived cookie gets from the refresh endpoint: a 403 and a
    challenge (useless without the key)."""
    reply = server.send(
        "POST",
        REFRESH,
        {**jar(browser, bound=False), "sec-secure-session-id": str(browser.session_id)},
    )
    assert reply.status == 403
    value, sid = parse_challenge(reply.header("secure-session-challenge") or "")
    assert sid == browser.session_id
    return value


def refresh_with(server: Server, browser: DbscBrowser, proof: str) -> Any:
    return server.send(
        "POST",
        REFRESH,
        {
            **jar(browser, bound=False),
            "sec-secure-session-id": str(browser.session_id),
            "secure-session-response": proof,
            "sec-fetch-site": "same-origin",
        },
    )


def refused(server: Server, reply: Any, reason: str) -> None:
    assert reply.status == 403
    assert reply.header("secure-session-challenge")  # a fresh one, for the real device
    assert not any(BOUND in v for v in reply.all("set-cookie"))  # never a bound cookie
    assert server.kinds()[-1] == f"dbsc.proof_failed:{reason}"


# ---------------------------------------------------------------- stolen cookies


def test_long_lived_cookie_alone_is_served_as_anonymous(pair: tuple[Server, DbscBrowser]) -> None:
    server, browser = pair
    page = server.send("GET", "/account", jar(browser, bound=False))
    assert page.body == b"anonymous"
    assert server.kinds()[-1] == "dbsc.missing_bound_cookie:missing"
    assert not page.all("set-cookie")  # the device's own cookie is left alone
    assert browser.request("GET", "/account").body == b"alice"  # the device is unaffected


def test_long_lived_cookie_alone_revokes_under_on_missing_revoke(
    adapter: str, stores: Stores
) -> None:
    server, browser = bound_pair(adapter, stores, on_missing="revoke")
    try:
        page = server.send("GET", "/account", jar(browser, bound=False))
        assert page.body == b"anonymous"
        assert any(e.reason == "policy:missing-bound-cookie" for e in server.events)
        assert server.records() == []
        assert browser.request("GET", "/account").body == b"anonymous"  # revoked for all
    finally:
        server.close()


def test_bound_cookie_past_its_max_age_is_refused(pair: tuple[Server, DbscBrowser]) -> None:
    server, browser = pair
    stolen = jar(browser, bound=True)
    assert server.send("GET", "/account", stolen).body == b"alice"  # within its minutes
    server.clock.advance(601)  # a thief's client ignores Max-Age; the server does not
    assert server.send("GET", "/account", stolen).body == b"anonymous"
    assert server.kinds()[-1] == "dbsc.missing_bound_cookie:expired"


def test_thief_with_both_cookies_cannot_refresh(pair: tuple[Server, DbscBrowser]) -> None:
    server, browser = pair
    thief = DbscBrowser(server.send, server.clock.now)
    thief.cookies = dict(browser.cookies)
    thief.instructions = browser.instructions
    thief.key = DeviceKey("ES256")  # his own key: the device key never left the device
    server.clock.advance(601)
    assert thief.request("GET", "/account").body == b"anonymous"
    assert thief.log[1:3] == [f"POST {REFRESH} -> 403"] * 2
    assert "dbsc.proof_failed:bad-signature" in server.kinds()
    assert browser.request("GET", "/account").body == b"alice"


# ---------------------------------------------------------------- forged and replayed proofs


def test_proof_signed_by_another_key_is_refused(pair: tuple[Server, DbscBrowser]) -> None:
    server, browser = pair
    proof = DeviceKey("ES256").proof(challenge(server, browser), with_jwk=False)
    refused(server, refresh_with(server, browser, proof), "bad-signature")


def test_jwk_sent_on_refresh_is_ignored(pair: tuple[Server, DbscBrowser]) -> None:
    server, browser = pair
    attacker = DeviceKey("ES256")
    proof = attacker.proof(challenge(server, browser), with_jwk=True)
    refused(server, refresh_with(server, browser, proof), "bad-signature")
    (record,) = server.records()
    assert state_in(record.dbsc).jwk == browser.key.jwk()  # type: ignore[union-attr]


def test_replayed_proof_is_refused(pair: tuple[Server, DbscBrowser]) -> None:
    server, browser = pair
    assert browser.key is not None
    proof = browser.key.proof(challenge(server, browser), with_jwk=False)
    assert refresh_with(server, browser, proof).status == 200
    refused(server, refresh_with(server, browser, proof), "unknown-challenge")


def test_challenge_of_another_session_is_refused(pair: tuple[Server, DbscBrowser]) -> None:
    server, victim = pair
    other = DbscBrowser(server.send, server.clock.now)
    other.request("GET", "/login")
    foreign = challenge(server, other)
    assert victim.key is not None
    refused(
        server,
        refresh_with(server, victim, victim.key.proof(foreign, with_jwk=False)),
        "unknown-challenge",
    )


@pytest.mark.parametrize("alg", ["none", "None", "HS256"])
def test_alg_none_is_refused(pair: tuple[Server, DbscBrowser], alg: str) -> None:
    server, browser = pair
    proof = unsigned_proof(challenge(server, browser), {"alg": alg, "typ": "dbsc+jwt"})
    reply = refresh_with(server, browser, proof)
    assert reply.status == 403 and not any(BOUND in v for v in reply.all("set-cookie"))
    assert server.kinds()[-1].startswith("dbsc.proof_failed:")


def test_alg_none_registration_is_refused(adapter: str, stores: Stores) -> None:
    server = Server(adapter, stores, dbsc_policy())
    try:
        login = server.send("GET", "/login", {})
        cookie = login.header("set-cookie") or ""
        offer = login.header("secure-session-registration") or ""
        value = offer.split('challenge="', 1)[1].split('"', 1)[0]
        header = {"alg": "none", "typ": "dbsc+jwt", "jwk": DeviceKey("ES256").jwk()}
        reply = server.send(
            "POST",
            REGISTER,
            {
                "cookie": cookie.split(";", 1)[0],
                "secure-session-response": unsigned_proof(value, header),
                "sec-fetch-site": "same-origin",
            },
        )
        assert reply.status == 403
        (record,) = server.records()
        assert not state_in(record.dbsc).bound  # type: ignore[union-attr]
    finally:
        server.close()


# ---------------------------------------------------------------- registration context


@pytest.mark.parametrize(
    "context",
    [{"sec-fetch-site": "cross-site"}, {"origin": "https://evil.test"}],
    ids=["fetch-metadata", "origin"],
)
def test_registration_from_a_cross_site_context_is_refused(
    adapter: str, stores: Stores, context: dict[str, str]
) -> None:
    server = Server(adapter, stores, dbsc_policy())
    try:
        login = server.send("GET", "/login", {})
        offer = login.header("secure-session-registration") or ""
        value = offer.split('challenge="', 1)[1].split('"', 1)[0]
        cookie = (login.header("set-cookie") or "").split(";", 1)[0]
        proof = DeviceKey("ES256").proof(value, with_jwk=True)
        reply = server.send(
            "POST",
            REGISTER,
            {"cookie": cookie, "secure-session-response": proof, **context},
        )
        assert reply.status == 403
        assert server.kinds()[-1] == "dbsc.proof_failed:cross-site"
        (record,) = server.records()
        assert not state_in(record.dbsc).bound  # type: ignore[union-attr]
    finally:
        server.close()


def test_refresh_is_rate_limited_per_session(adapter: str, stores: Stores) -> None:
    server, browser = bound_pair(adapter, stores, refresh_limit=3)
    try:
        statuses = [
            server.send(
                "POST",
                REFRESH,
                {**jar(browser, bound=False), "sec-secure-session-id": str(browser.session_id)},
            ).status
            for _ in range(5)
        ]
        assert statuses == [403, 403, 403, 429, 429]
        assert 401 not in statuses and 404 not in statuses
    finally:
        server.close()
