"""Attacks on the DBSC binding, at the level of the pure decisions.

Each test plays an attacker who holds something real (the long-lived cookie, an old bound
cookie, a proof that once worked, a challenge of another session, a key of their own) and
checks what the server answers: never a bound cookie, never a binding to the attacker's key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from sessionwarden import dbsc

from .client import DbscBrowser, DeviceKey, b64u_json, parse_challenge, unsigned_proof
from .pure_server import ORIGIN, PureServer


def _bound(alg: str = "ES256", **policy: object) -> tuple[PureServer, DbscBrowser, str]:
    server = PureServer(policy=dbsc.DbscPolicy(enabled=True, **policy))  # type: ignore[arg-type]
    browser = DbscBrowser(server.send, server.clock.now, alg=alg)
    browser.request("GET", "/login")
    assert browser.instructions is not None
    (sid,) = server.records
    return server, browser, sid


def _challenge_for(server: PureServer, browser: DbscBrowser) -> str:
    """What an attacker with the long-lived cookie gets from the refresh endpoint: a 403 and a
    challenge (harmless without the key)."""
    reply = server.send(
        "POST",
        server.policy.refresh_path,
        {**browser.cookie_header(), "sec-secure-session-id": str(browser.session_id)},
    )
    assert reply.status == 403
    challenge, sid = parse_challenge(reply.header("secure-session-challenge") or "")
    assert sid == browser.session_id
    return challenge


def _refresh_with(server: PureServer, browser: DbscBrowser, proof: str) -> dbsc.DbscResult:
    sid = browser.cookies["__Host-id"][0]
    request = dbsc.DbscRequest(proof=proof, session_id=browser.session_id, fetch_site="same-origin")
    return dbsc.refresh(
        server.policy,
        server.state(sid),
        request,
        server.clock.now(),
        server.keyring.hash_value,
        ORIGIN,
    )


def _refused(result: dbsc.DbscResult, reason: str) -> None:
    assert result.status == 403
    assert not any(k == "Set-Cookie" for k, _ in result.headers)  # no bound cookie, ever
    assert [(n.kind.value, n.reason) for n in result.notes] == [("dbsc.proof_failed", reason)]


def _thief_cookies(browser: DbscBrowser, *, bound: bool) -> dict[str, str]:
    jar = {"__Host-id": browser.cookies["__Host-id"][0]}
    if bound:
        jar["__Host-dbsc"] = browser.cookies["__Host-dbsc"][0]
    return {"cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}


# ---------------------------------------------------------------- stolen cookies


def test_long_lived_cookie_alone_is_served_as_anonymous() -> None:
    server, browser, _ = _bound()
    reply = server.send("GET", "/account", _thief_cookies(browser, bound=False))
    assert reply.body == b"anonymous"
    assert server.kinds()[-1] == "dbsc.missing_bound_cookie:missing"
    assert browser.request("GET", "/account").body == b"alice"  # the owner is unaffected


def test_long_lived_cookie_alone_revokes_under_on_missing_revoke() -> None:
    server, browser, sid = _bound(on_missing="revoke")
    assert server.send("GET", "/account", _thief_cookies(browser, bound=False)).body == b"anonymous"
    assert server.revoked == [sid]


def test_bound_cookie_past_its_max_age_is_refused() -> None:
    server, browser, _ = _bound()
    stolen = _thief_cookies(browser, bound=True)
    assert server.send("GET", "/account", stolen).body == b"alice"  # within its minutes
    server.clock.advance(600)
    assert server.send("GET", "/account", stolen).body == b"anonymous"
    assert server.kinds()[-1] == "dbsc.missing_bound_cookie:expired"


def test_bound_cookie_of_another_session_is_wrong() -> None:
    server, victim, _ = _bound()
    other = DbscBrowser(server.send, server.clock.now)
    other.request("GET", "/login")
    mixed = {
        "cookie": f"__Host-id={victim.cookies['__Host-id'][0]}; "
        f"__Host-dbsc={other.cookies['__Host-dbsc'][0]}"
    }
    assert server.send("GET", "/account", mixed).body == b"anonymous"
    assert server.kinds()[-1] == "dbsc.missing_bound_cookie:wrong"


def test_two_bound_cookies_are_wrong_even_if_one_is_valid() -> None:
    server, browser, _ = _bound()
    jar = _thief_cookies(browser, bound=True)["cookie"] + "; __Host-dbsc=planted"
    assert server.send("GET", "/account", {"cookie": jar}).body == b"anonymous"


def test_thief_with_both_cookies_cannot_refresh() -> None:
    server, browser, _ = _bound()
    thief = DbscBrowser(server.send, server.clock.now)
    thief.cookies = dict(browser.cookies)
    thief.instructions = browser.instructions
    thief.key = DeviceKey("ES256")  # the thief's own key: the device key never left the device
    server.clock.advance(601)
    assert thief.request("GET", "/account").body == b"anonymous"
    assert thief.log[1:3] == ["POST /_sessionwarden/dbsc/refresh -> 403"] * 2
    assert server.kinds()[-2] == "dbsc.proof_failed:bad-signature"


# ---------------------------------------------------------------- forged and replayed proofs


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_proof_signed_by_another_key_is_refused(alg: str) -> None:
    server, browser, _ = _bound(alg)
    challenge = _challenge_for(server, browser)
    _refused(
        _refresh_with(server, browser, DeviceKey(alg).proof(challenge, with_jwk=False)),
        "bad-signature",
    )


def test_jwk_sent_on_refresh_is_ignored() -> None:
    server, browser, _ = _bound()
    challenge = _challenge_for(server, browser)
    attacker = DeviceKey("ES256")
    _refused(
        _refresh_with(server, browser, attacker.proof(challenge, with_jwk=True)), "bad-signature"
    )
    # and the real key still works even when a (foreign) jwk rides along
    challenge = _challenge_for(server, browser)
    assert browser.key is not None
    proof = browser.key.proof(challenge, with_jwk=False, header={"jwk": attacker.jwk()})
    assert _refresh_with(server, browser, proof).status == 200


def test_replayed_proof_is_refused() -> None:
    server, browser, sid = _bound()
    challenge = _challenge_for(server, browser)
    assert browser.key is not None
    proof = browser.key.proof(challenge, with_jwk=False)
    result = _refresh_with(server, browser, proof)
    assert result.status == 200
    server.put(sid, result.state)
    _refused(_refresh_with(server, browser, proof), "unknown-challenge")


def test_challenge_of_another_session_is_refused() -> None:
    server, victim, _ = _bound()
    other = DbscBrowser(server.send, server.clock.now)
    other.request("GET", "/login")
    foreign = _challenge_for(server, other)
    assert victim.key is not None
    _refused(
        _refresh_with(server, victim, victim.key.proof(foreign, with_jwk=False)),
        "unknown-challenge",
    )


def test_expired_challenge_is_refused() -> None:
    server, browser, _ = _bound()
    challenge = _challenge_for(server, browser)
    server.clock.advance(server.policy.challenge_ttl + 1)
    assert browser.key is not None
    _refused(
        _refresh_with(server, browser, browser.key.proof(challenge, with_jwk=False)),
        "expired-challenge",
    )


@pytest.mark.parametrize("typ", ["JWT", "dpop+jwt", None, "DBSC+JWT"])
def test_wrong_typ_is_refused(typ: str | None) -> None:
    server, browser, _ = _bound()
    challenge = _challenge_for(server, browser)
    assert browser.key is not None
    proof = browser.key.proof(challenge, with_jwk=False, header={"typ": typ})
    _refused(_refresh_with(server, browser, proof), "wrong-typ")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none_is_refused_on_refresh(alg: str) -> None:
    server, browser, _ = _bound()
    challenge = _challenge_for(server, browser)
    proof = unsigned_proof(challenge, {"alg": alg, "typ": "dbsc+jwt"})
    _refused(_refresh_with(server, browser, proof), "algorithm-not-allowed")


def test_alg_none_is_refused_on_registration() -> None:
    server = PureServer()
    login = server.send("GET", "/login", {})
    from .client import parse_registration

    offer = parse_registration(login.header("secure-session-registration") or "")
    (sid,) = server.records
    proof = unsigned_proof(offer["challenge"], {"alg": "none", "typ": "dbsc+jwt"})
    reply = server.send(
        "POST", offer["path"], {"cookie": f"__Host-id={sid}", "secure-session-response": proof}
    )
    assert reply.status == 403 and reply.all("set-cookie") == []
    state = server.state(sid)
    assert state is not None and not state.bound
    assert server.kinds() == ["dbsc.proof_failed:algorithm-not-allowed"]


def test_hs256_with_the_public_key_as_secret_is_refused() -> None:
    """The classic algorithm confusion: an HMAC 'signed' with the public JWK as the secret."""
    server, browser, _ = _bound()
    challenge = _challenge_for(server, browser)
    assert browser.key is not None
    head = b64u_json({"alg": "HS256", "typ": "dbsc+jwt"})
    body = b64u_json({"jti": challenge})
    secret = json.dumps(browser.key.jwk()).encode()
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    sig = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    _refused(_refresh_with(server, browser, f"{head}.{body}.{sig}"), "algorithm-not-allowed")


def test_algorithm_switch_after_registration_is_refused() -> None:
    """Registered with ES256: an RS256 proof (even validly signed) is not this device's key."""
    server, browser, _ = _bound("ES256")
    challenge = _challenge_for(server, browser)
    rsa = DeviceKey("RS256")
    _refused(
        _refresh_with(server, browser, rsa.proof(challenge, with_jwk=True)), "algorithm-not-allowed"
    )


def test_registration_signed_by_a_key_other_than_its_jwk_is_refused() -> None:
    server = PureServer()
    login = server.send("GET", "/login", {})
    from .client import parse_registration

    offer = parse_registration(login.header("secure-session-registration") or "")
    (sid,) = server.records
    shown, signer = DeviceKey(), DeviceKey()
    proof = signer.proof(offer["challenge"], with_jwk=False, header={"jwk": shown.jwk()})
    reply = server.send(
        "POST", offer["path"], {"cookie": f"__Host-id={sid}", "secure-session-response": proof}
    )
    assert reply.status == 403
    assert server.kinds() == ["dbsc.proof_failed:bad-signature"]
    # the challenge was spent: the honest proof for it no longer registers either
    honest = shown.proof(offer["challenge"], with_jwk=True)
    reply = server.send(
        "POST", offer["path"], {"cookie": f"__Host-id={sid}", "secure-session-response": honest}
    )
    assert reply.status == 403


def test_registration_without_an_offer_or_session_is_refused() -> None:
    server = PureServer()
    key = DeviceKey()
    reply = server.send(
        "POST",
        server.policy.register_path,
        {"secure-session-response": key.proof("x", with_jwk=True)},
    )
    assert reply.status == 403 and server.kinds() == ["dbsc.proof_failed:not-offered"]


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "https://evil.test"},
        {"sec-fetch-site": "same-origin", "origin": "https://evil.test"},
    ],
)
def test_registration_from_a_cross_site_context_is_refused(headers: dict[str, str]) -> None:
    server = PureServer()
    login = server.send("GET", "/login", {})
    from .client import parse_registration

    offer = parse_registration(login.header("secure-session-registration") or "")
    (sid,) = server.records
    proof = DeviceKey().proof(offer["challenge"], with_jwk=True)
    sent = {"cookie": f"__Host-id={sid}", "secure-session-response": proof, **headers}
    reply = server.send("POST", offer["path"], sent)
    assert reply.status == 403 and reply.all("set-cookie") == []
    assert server.kinds() == ["dbsc.proof_failed:cross-site"]


def test_refresh_for_another_dbsc_session_id_does_not_touch_the_binding() -> None:
    server, browser, sid = _bound()
    before = server.records[sid]
    reply = server.send(
        "POST",
        server.policy.refresh_path,
        {**browser.cookie_header(), "sec-secure-session-id": "forged"},
    )
    assert reply.status == 200 and reply.json() == {"continue": False}
    assert server.records[sid] == before


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "EC", "crv": "P-384", "x": "A" * 64, "y": "A" * 64},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},  # far too small
        "not-an-object",
        None,
    ],
)
def test_unusable_registration_keys_are_refused(jwk: object) -> None:
    server = PureServer()
    login = server.send("GET", "/login", {})
    from .client import parse_registration

    offer = parse_registration(login.header("secure-session-registration") or "")
    (sid,) = server.records
    key = DeviceKey()
    proof = key.proof(offer["challenge"], with_jwk=False, header={"jwk": jwk})
    reply = server.send(
        "POST", offer["path"], {"cookie": f"__Host-id={sid}", "secure-session-response": proof}
    )
    assert reply.status == 403
    assert server.kinds() == ["dbsc.proof_failed:unusable-key"]


def test_jwk_with_private_members_is_refused() -> None:
    server = PureServer()
    login = server.send("GET", "/login", {})
    from .client import parse_registration

    offer = parse_registration(login.header("secure-session-registration") or "")
    (sid,) = server.records
    key = DeviceKey()
    leaked = {**key.jwk(), "d": "AAAA"}
    proof = key.proof(offer["challenge"], with_jwk=False, header={"jwk": leaked})
    reply = server.send(
        "POST", offer["path"], {"cookie": f"__Host-id={sid}", "secure-session-response": proof}
    )
    assert reply.status == 403 and server.kinds() == ["dbsc.proof_failed:unusable-key"]


@pytest.mark.parametrize(
    "proof",
    [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.???.***",
        "e30.e30.",
        b64u_json([1]) + "." + b64u_json({"jti": "x"}) + ".AA",
        '{"alg":"ES256"}.e30.AA',
        "eyJhbGciOiJFUzI1NiIsImFsZyI6Im5vbmUifQ.e30.AA",  # duplicate "alg"
        "x" * 10_000,
        "\u00e9.\u00e9.\u00e9",
    ],
)
def test_malformed_proofs_get_a_fresh_challenge_and_never_raise(proof: str) -> None:
    server, browser, _ = _bound()
    result = _refresh_with(server, browser, proof)
    assert result.status == 403
    assert any(k == "Secure-Session-Challenge" for k, _ in result.headers)
    assert not any(k == "Set-Cookie" for k, _ in result.headers)


def test_refresh_challenge_cannot_register_the_thiefs_key() -> None:
    """A thief with the long-lived cookie is handed refresh challenges (403); none of them may
    answer a registration, or he would re-bind the session to a key of his own."""
    server, browser, sid = _bound()
    challenge = _challenge_for(server, browser)
    thief = DeviceKey()
    proof = thief.proof(challenge, with_jwk=True)
    reply = server.send(
        "POST",
        server.policy.register_path,
        {**_thief_cookies(browser, bound=False), "secure-session-response": proof},
    )
    assert reply.status == 403 and reply.all("set-cookie") == []
    assert server.kinds()[-1] == "dbsc.proof_failed:unknown-challenge"
    state = server.state(sid)
    assert state is not None and browser.key is not None and state.jwk == browser.key.jwk()


def test_a_registration_challenge_cannot_answer_a_refresh() -> None:
    server = PureServer()
    login = server.send("GET", "/login", {})
    from .client import parse_registration

    offer = parse_registration(login.header("secure-session-registration") or "")
    (sid,) = server.records
    key = DeviceKey()
    first = server.send(
        "POST",
        offer["path"],
        {
            "cookie": f"__Host-id={sid}",
            "secure-session-response": key.proof(offer["challenge"], with_jwk=True),
        },
    )
    assert first.status == 200
    session_id = first.json()["session_identifier"]
    # a second offer (a later login) leaves a registration challenge outstanding
    state = server.state(sid)
    offer2 = dbsc.registration_offer(
        server.policy, state, server.clock.now(), server.keyring.hash_value
    )
    server.put(sid, offer2.state)
    challenge = parse_registration(offer2.header[1])["challenge"]
    request = dbsc.DbscRequest(proof=key.proof(challenge, with_jwk=False), session_id=session_id)
    result = dbsc.refresh(
        server.policy,
        server.state(sid),
        request,
        server.clock.now(),
        server.keyring.hash_value,
        ORIGIN,
    )
    _refused(result, "unknown-challenge")
