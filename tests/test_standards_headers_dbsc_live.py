"""Security headers (checklist A11) and DBSC (A15 and section B) against live servers, with
clients written from the specifications.

The application of :mod:`tests.dbsc.live_apps` runs as a process on 127.0.0.1: Starlette on
uvicorn (ASGI) and Flask on Werkzeug's server (WSGI), over TLS with a certificate made here (and,
for the HSTS check, over plain HTTP too). Every request crosses a real socket and a real TLS
handshake. Nothing is read from the library's code; what a test sees is statuses, headers,
bodies and the JSON event lines the server writes.

The clients:

* :class:`SfParser` parses Structured Field values strictly, by the algorithms of RFC 9651
  section 4.2 (lists, inner lists, items of every type, parameters); a value it refuses is one a
  browser would drop;
* :class:`Key` builds ``dbsc+jwt`` proofs the way Chromium does (section B.6): a compact JWS,
  ``ES256`` with the raw 64-byte ``r || s`` signature or ``RS256``, the public key as ``jwk`` in
  the header on registration only, the challenge as ``jti``;
* cookies are kept by hand from ``Set-Cookie`` (RFC 6265bis 5.6), per client.

Checked elsewhere, with an injected clock (a live server runs on the wall clock, and tests never
sleep): expired challenges (``tests/dbsc/test_attacks.py::test_expired_challenge_is_refused``),
the bound cookie past its Max-Age (``test_bound_cookie_past_its_max_age_is_refused``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .dbsc.sfv import SfError, Token, sf_list, sf_string
from .live_servers import ROOT, free_port, self_signed_certificate, server_env, stop_process

AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/146.0 Safari/537.36"
SESSION_COOKIE = "__Host-id"


def test_the_sf_parser_is_strict() -> None:
    """The parser itself: what RFC 9651 accepts and what it refuses (a lenient parser would
    make every other test here pass for the wrong reasons)."""
    (reg,) = sf_list('(ES256 RS256);path="/r";challenge="a\\"b"')
    assert [i.value for i in reg.value] == [Token("ES256"), Token("RS256")]
    assert reg.params == {"path": "/r", "challenge": 'a"b'}
    two = sf_list('"c1";id="s1", "c2";id="s2"')
    assert [(m.value, m.params["id"]) for m in two] == [("c1", "s1"), ("c2", "s2")]
    assert sf_list("a;n=1;d=1.5;b=?0;x=:AQI=:")[0].params == {
        "n": 1,
        "d": 1.5,
        "b": False,
        "x": b"\x01\x02",
    }
    bad = [
        "(ES256 RS256;path=x",  # unterminated inner list
        '"c1";id="s1",',  # trailing comma
        '"c1" "c2"',  # no comma
        '(ES256);Path="x"',  # upper-case key
        '"a\\nb"',  # an escape other than \" and \\
        '"unterminated',
        "(ES256)(RS256)",
        '"é"',
    ]
    for value in bad:
        with pytest.raises(SfError):
            sf_list(value)


# --------------------------------------------------------------------------------------------
# DBSC proofs, as Chromium builds them (section B.6)
# --------------------------------------------------------------------------------------------


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64u_json(value: Any) -> str:
    return b64u(json.dumps(value, separators=(",", ":")).encode())


def b64u_decode(text: str) -> bytes:
    assert re.fullmatch(r"[A-Za-z0-9_-]*", text), text
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Key:
    """The browser's key for one session: EC P-256 (ES256) or RSA-2048 (RS256)."""

    def __init__(self, alg: str) -> None:
        self.alg = alg
        self.private: Any = (
            ec.generate_private_key(ec.SECP256R1())
            if alg == "ES256"
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )

    def jwk(self) -> dict[str, str]:
        pub = self.private.public_key().public_numbers()
        if self.alg == "ES256":
            return {
                "kty": "EC",
                "crv": "P-256",
                "x": b64u(pub.x.to_bytes(32, "big")),
                "y": b64u(pub.y.to_bytes(32, "big")),
            }
        n = pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")
        return {"kty": "RSA", "n": b64u(n), "e": b64u(pub.e.to_bytes(3, "big"))}

    def sign(self, data: bytes) -> bytes:
        if self.alg == "ES256":
            r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return bytes(self.private.sign(data, padding.PKCS1v15(), hashes.SHA256()))

    def proof(
        self,
        challenge: str,
        *,
        registration: bool,
        header: dict[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
    ) -> str:
        head: dict[str, Any] = {"alg": self.alg, "typ": "dbsc+jwt"}
        if registration:
            head["jwk"] = self.jwk()
        head.update(header or {})
        body = {"jti": challenge, **(payload or {})}
        signing_input = f"{b64u_json(head)}.{b64u_json(body)}"
        return f"{signing_input}.{b64u(self.sign(signing_input.encode()))}"


# --------------------------------------------------------------------------------------------
# The live servers
# --------------------------------------------------------------------------------------------




@dataclass
class Live:
    adapter: str
    base: str
    events_file: Path
    verify: ssl.SSLContext | bool
    process: subprocess.Popen[bytes]

    @property
    def origin(self) -> str:
        return self.base

    def events(self) -> list[dict[str, Any]]:
        if not self.events_file.exists():
            return []
        lines = self.events_file.read_text().splitlines()
        return [json.loads(line) for line in lines if line]

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base,
            verify=self.verify,
            follow_redirects=False,
            timeout=15,
            headers={"user-agent": AGENT},
        )


@contextlib.contextmanager
def _serve(adapter: str, workdir: Path, tls: bool) -> Iterator[Live]:
    port = free_port()
    args = [sys.executable, "-m", "tests.dbsc.live_apps", adapter, str(port)]
    verify: ssl.SSLContext | bool = False
    if tls:
        cert, key, _ = self_signed_certificate(workdir)
        args += [str(cert), str(key)]
        verify = ssl.create_default_context(cafile=str(cert))
    env = server_env()
    events = workdir / f"events-{adapter}-{port}.jsonl"
    env["SWLIVE_EVENTS"] = str(events)
    log = (workdir / f"server-{adapter}-{port}.log").open("wb")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=log)
    scheme = "https" if tls else "http"
    live = Live(adapter, f"{scheme}://127.0.0.1:{port}", events, verify, proc)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{adapter} server exited with {proc.returncode}")
            try:
                with live.client() as c:
                    c.get("/whoami")
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{adapter} server did not start")
                time.sleep(0.1)
        yield live
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture(scope="module", params=["asgi", "flask"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """The app over HTTPS (TLS on 127.0.0.1), Starlette/uvicorn or Flask/Werkzeug."""
    with _serve(request.param, tmp_path_factory.mktemp(f"tls-{request.param}"), tls=True) as s:
        yield s


@pytest.fixture(scope="module", params=["asgi", "flask"])
def plain(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """The same app over plain HTTP."""
    with _serve(request.param, tmp_path_factory.mktemp(f"http-{request.param}"), tls=False) as s:
        yield s


# --------------------------------------------------------------------------------------------
# A browser: its cookies (RFC 6265bis 5.6) and its DBSC sessions
# --------------------------------------------------------------------------------------------


@dataclass
class SetCookie:
    name: str
    value: str
    attributes: dict[str, str]


def parse_set_cookie(header: str) -> SetCookie:
    pair, _, rest = header.partition(";")
    name, _, value = pair.partition("=")
    attrs: dict[str, str] = {}
    for av in rest.split(";") if rest else []:
        k, _, v = av.partition("=")
        attrs[k.strip().lower()] = v.strip()
    return SetCookie(name.strip(), value.strip(), attrs)


def set_cookies(response: httpx.Response) -> list[SetCookie]:
    return [parse_set_cookie(h) for h in response.headers.get_list("set-cookie")]


@dataclass
class Browser:
    live: Live
    http: httpx.Client
    jar: dict[str, str] = field(default_factory=dict)

    def send(self, method: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        sent = dict(headers or {})
        if self.jar:
            sent["cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        self.http.cookies.clear()
        response = self.http.request(method, path, headers=sent)
        self.http.cookies.clear()
        for cookie in set_cookies(response):
            max_age = cookie.attributes.get("max-age")
            if max_age is not None and int(max_age) <= 0:
                self.jar.pop(cookie.name, None)
            else:
                self.jar[cookie.name] = cookie.value
        return response

    def dbsc_post(self, path: str, headers: dict[str, str]) -> httpx.Response:
        """What Chromium sends to the registration and refresh endpoints: same-origin POST."""
        sent = {"sec-fetch-site": "same-origin", "accept": "application/json", **headers}
        return self.send("POST", path, sent)


@contextlib.contextmanager
def browser(live: Live) -> Iterator[Browser]:
    with live.client() as http:
        yield Browser(live, http)


@dataclass
class Offer:
    algorithms: list[str]
    path: str
    challenge: str


def read_offer(response: httpx.Response) -> Offer:
    """The ``Secure-Session-Registration`` header as a browser reads it (B.2/B.3 step 2)."""
    fields = response.headers.get_list("secure-session-registration")
    assert len(fields) == 1, fields
    members = sf_list(fields[0])
    assert len(members) == 1
    (member,) = members
    assert isinstance(member.value, list), "each registration is an inner list"
    algorithms = []
    for entry in member.value:
        assert isinstance(entry.value, Token), "algorithms are tokens"
        algorithms.append(entry.value.value)
    assert isinstance(member.params.get("path"), str), "path is a required sf-string"
    assert isinstance(member.params.get("challenge"), str), "the challenge is an sf-string"
    assert "authorization" not in member.params or isinstance(member.params["authorization"], str)
    return Offer(algorithms, member.params["path"], member.params["challenge"])


def read_challenge(response: httpx.Response) -> tuple[str, str]:
    """``Secure-Session-Challenge`` (B.2: a list of sf-strings, each with a mandatory ``id``)."""
    fields = response.headers.get_list("secure-session-challenge")
    assert fields, "no Secure-Session-Challenge"
    members = sf_list(", ".join(fields))
    assert len(members) == 1, members
    (member,) = members
    assert isinstance(member.value, str) and isinstance(member.params.get("id"), str)
    return member.value, member.params["id"]


def challenge_bits(challenge: str) -> int:
    """The entropy a challenge can carry, counted as base64url (the most generous alphabet a
    server would use in a header; anything else is counted at 4 bits a character)."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", challenge):
        return len(b64u_decode(challenge)) * 8
    return len(challenge) * 4


def validate_instructions(doc: Any, origin: str) -> None:
    """The session instructions as a browser validates them (B.3 step 6, B.4)."""
    assert isinstance(doc, dict)
    assert doc.get("continue", True) is True
    assert isinstance(doc["session_identifier"], str) and doc["session_identifier"]
    refresh = doc.get("refresh_url")
    assert refresh is None or isinstance(refresh, str)
    if isinstance(refresh, str) and "://" in refresh:
        assert refresh.startswith(origin + "/")
    scope = doc["scope"]
    assert isinstance(scope, dict) and isinstance(scope["include_site"], bool)
    assert scope.get("origin", origin) == origin
    for rule in scope.get("scope_specification", []):
        assert rule["type"] in ("include", "exclude")
        assert isinstance(rule.get("path", "/"), str) and isinstance(rule.get("domain", "*"), str)
    assert isinstance(doc["credentials"], list) and doc["credentials"]
    for cred in doc["credentials"]:
        assert cred["type"] == "cookie" and isinstance(cred["name"], str) and cred["name"]
        attrs = cred.get("attributes", "")
        assert isinstance(attrs, str)
        lowered = attrs.lower()
        assert (
            "max-age" not in lowered and "expires" not in lowered and "partitioned" not in lowered
        )
    initiators = doc.get("allowed_refresh_initiators", [])
    assert isinstance(initiators, list)


def _credential_attributes(attrs: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for av in attrs.split(";"):
        k, _, v = av.partition("=")
        if k.strip():
            out[k.strip().lower()] = v.strip().lower()
    return out


@dataclass
class Bound:
    """A browser with a registered DBSC session."""

    browser: Browser
    key: Key
    instructions: dict[str, Any]
    cookie: str

    @property
    def sid(self) -> str:
        return str(self.instructions["session_identifier"])

    @property
    def refresh_url(self) -> str:
        return str(self.instructions.get("refresh_url") or "")

    def refresh(self, proof: str | None) -> httpx.Response:
        headers = {"sec-secure-session-id": sf_string(self.sid)}
        if proof is not None:
            headers["secure-session-response"] = sf_string(proof)
        return self.browser.dbsc_post(self.refresh_url, headers)

    def challenge(self) -> str:
        """A fresh challenge: the refresh without a proof (403 plus the challenge)."""
        answer = self.refresh(None)
        assert answer.status_code == 403, answer.status_code
        challenge, sid = read_challenge(answer)
        assert sid == self.sid
        return challenge


def bound_cookie(response: httpx.Response, name: str) -> SetCookie | None:
    found = [c for c in set_cookies(response) if c.name == name]
    assert len(found) <= 1
    return found[0] if found else None


def check_bound_cookie(cookie: SetCookie | None, credential: dict[str, Any]) -> str:
    """The bound cookie is set, short-lived, and is the cookie the instructions describe (B.7)."""
    assert cookie is not None and cookie.value
    attrs = cookie.attributes
    assert 0 < int(attrs["max-age"]) <= 3600, "a bound cookie lives minutes"
    assert "secure" in attrs and "httponly" in attrs and "partitioned" not in attrs
    if cookie.name.startswith("__Host-"):
        assert attrs.get("path") == "/" and "domain" not in attrs
    described = _credential_attributes(credential.get("attributes", ""))
    for name in ("domain", "path", "secure", "httponly", "samesite"):
        assert described.get(name) == (attrs[name].lower() if name in attrs else None), name
    return cookie.value


def login(b: Browser, user: str = "alice") -> httpx.Response:
    response = b.send("GET", f"/login?user={user}")
    assert response.status_code == 200
    return response


def register(b: Browser, alg: str = "ES256") -> Bound:
    offer = read_offer(login(b))
    key = Key(alg)
    answer = b.dbsc_post(
        offer.path,
        {"secure-session-response": sf_string(key.proof(offer.challenge, registration=True))},
    )
    assert answer.status_code == 200, (answer.status_code, answer.text)
    assert answer.headers["content-type"].split(";")[0].strip() == "application/json"
    assert answer.headers.get("cache-control") == "no-store"
    doc = answer.json()
    validate_instructions(doc, b.live.origin)
    (credential,) = doc["credentials"]
    value = check_bound_cookie(bound_cookie(answer, credential["name"]), credential)
    return Bound(b, key, doc, value)


def events_of(live: Live, kind: str) -> list[dict[str, Any]]:
    return [e for e in live.events() if e["event"] == kind]


# --------------------------------------------------------------------------------------------
# A11: security headers on every response kind
# --------------------------------------------------------------------------------------------


def csp_directives(value: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in value.split(";"):
        tokens = part.split()
        if tokens:
            out.setdefault(tokens[0].lower(), tokens[1:])
    return out


def _every_kind(b: Browser) -> dict[str, httpx.Response]:
    return {
        "html": b.send("GET", "/page"),
        "json": b.send("GET", "/api"),
        "redirect": b.send("GET", "/go"),
        "not found": b.send("GET", "/no/such/page"),
        "refresh endpoint": b.dbsc_post("/_sessionwarden/dbsc/refresh", {}),
        "register endpoint": b.dbsc_post("/_sessionwarden/dbsc/register", {}),
        "refusal": b.send("POST", "/api", {"origin": "https://evil.test"}),  # cross-origin
        # Last, on a connection of its own: a server may close the connection after a crash.
        "error": b.send("GET", "/boom", {"connection": "close"}),
    }


def _assert_common_headers(kind: str, r: httpx.Response, https: bool) -> None:
    h = r.headers
    assert h.get("x-content-type-options") == "nosniff", kind  # item 68
    csp = h.get_list("content-security-policy")
    assert csp, kind
    for value in csp:
        d = csp_directives(value)
        assert d.get("frame-ancestors") == ["'none'"], (kind, value)  # item 66
        assert "'unsafe-eval'" not in value, kind
    xfo = h.get("x-frame-options")
    assert xfo is None or xfo.upper() == "DENY", kind
    referrer = h.get("referrer-policy")  # item 69: the policy set, or a stricter one
    if not kind.endswith(" endpoint") or referrer is not None:
        assert referrer in ("strict-origin-when-cross-origin", "same-origin", "no-referrer"), kind
    assert h.get("cross-origin-resource-policy") == "same-origin", kind  # item 71
    assert h.get("x-xss-protection") in (None, "0"), kind  # item 73
    assert "x-powered-by" not in h, kind
    assert not any("sessionwarden" in v.lower() for _, v in h.multi_items()), kind
    content_type = h.get("content-type", "")
    if content_type.startswith("text/"):
        assert "charset=" in content_type.lower(), (kind, content_type)  # item 68
    hsts = h.get_list("strict-transport-security")
    if not https:
        assert hsts == [], kind  # item 64: only over HTTPS
        return
    assert len(hsts) == 1, kind
    parts = [p.strip().lower() for p in hsts[0].split(";")]
    max_age = [int(p.split("=", 1)[1]) for p in parts if p.startswith("max-age=")]
    assert max_age and max_age[0] >= 31536000 and "includesubdomains" in parts, kind
    assert "preload" not in parts, kind  # preload only when configured


def test_security_headers_on_every_response_kind_over_https(live: Live) -> None:
    """Items 64, 66, 68, 69, 71, 73 on HTML, JSON, a redirect, a 404, a 500 and the DBSC refresh
    endpoint, signed in and not; COOP (item 70) on HTML."""
    with browser(live) as b:
        for signed_in in (False, True):
            if signed_in:
                login(b)
            answers = _every_kind(b)
            statuses = {kind: r.status_code for kind, r in answers.items()}
            assert statuses == {
                "html": 200,
                "json": 200,
                "redirect": 302,
                "not found": 404,
                "refresh endpoint": 200,  # {"continue": false}: nothing to refresh
                "register endpoint": 403,  # no proof
                "refusal": 403,  # the library's own refusal page
                "error": 500,
            }
            for kind, r in answers.items():
                _assert_common_headers(kind, r, https=True)
            assert answers["html"].headers.get("cross-origin-opener-policy") in (
                "same-origin",
                "same-origin-allow-popups",
            )
            assert "internal detail" not in answers["error"].text


def test_hsts_is_never_sent_over_plain_http(plain: Live) -> None:
    """Item 64: HSTS over HTTP is ignored by browsers and only advertises a downgrade; the
    other headers are the same over HTTP."""
    with browser(plain) as b:
        login(b)
        for kind, r in _every_kind(b).items():
            _assert_common_headers(kind, r, https=False)
        # A client's own X-Forwarded-Proto (no trusted proxy is configured) changes nothing.
        r = b.send("GET", "/page", {"x-forwarded-proto": "https", "forwarded": "proto=https"})
        _assert_common_headers("forged proto", r, https=False)


def test_csp_nonce_is_fresh_strong_and_on_every_script(live: Live) -> None:
    """Item 65: a strict CSP with a new nonce of at least 128 bits on each HTML response, every
    ``<script>`` of the body carrying exactly that nonce; object-src and base-uri 'none';
    item 67: form-action 'self'."""
    seen: set[str] = set()
    with browser(live) as b:
        for n in range(12):
            if n == 6:
                login(b)
            r = b.send("GET", "/page")
            assert r.status_code == 200
            (csp,) = r.headers.get_list("content-security-policy")
            d = csp_directives(csp)
            nonces = [s[len("'nonce-") : -1] for s in d["script-src"] if s.startswith("'nonce-")]
            assert len(nonces) == 1, csp
            nonce = nonces[0]
            assert "'strict-dynamic'" in d["script-src"]
            assert "'unsafe-inline'" not in d["script-src"] or "'strict-dynamic'" in d["script-src"]
            raw = base64.b64decode(nonce, validate=True)
            assert len(raw) * 8 >= 128, nonce
            assert nonce not in seen, "a nonce was reused"
            seen.add(nonce)
            scripts = re.findall(r"<script\b([^>]*)>", r.text)
            assert len(scripts) == 2
            for attrs in scripts:
                assert f'nonce="{nonce}"' in attrs
            assert d["object-src"] == ["'none'"] and d["base-uri"] == ["'none'"]
            assert d["form-action"] == ["'self'"]


def test_cors_never_reflects_an_arbitrary_origin(live: Live) -> None:
    """Item 72 (and item 90 for the refresh endpoint): no credentialed CORS for another origin."""
    with browser(live) as b:
        login(b)
        evil = {"origin": "https://evil.test"}
        answers = [
            b.send("GET", "/api", evil),
            b.send("OPTIONS", "/api", {**evil, "access-control-request-method": "POST"}),
            b.dbsc_post("/_sessionwarden/dbsc/refresh", evil),
        ]
        for r in answers:
            assert r.headers.get("access-control-allow-origin") in (None, live.origin)
            assert "access-control-allow-credentials" not in r.headers


# --------------------------------------------------------------------------------------------
# A15 / B: DBSC
# --------------------------------------------------------------------------------------------


def test_registration_offer_is_an_rfc9651_list_with_a_strong_fresh_challenge(live: Live) -> None:
    """Item 86, B.2/B.3: after sign-in over HTTPS the offer parses strictly as a list holding one
    inner list of algorithm tokens, with ``path`` and ``challenge`` sf-string parameters; the
    challenge has at least 128 bits and differs at every sign-in. A client that ignores the
    header (no DBSC) stays signed in."""
    challenges = set()
    for _ in range(3):
        with browser(live) as b:
            response = login(b)
            offer = read_offer(response)
            assert set(offer.algorithms) <= {"ES256", "RS256"} and "ES256" in offer.algorithms
            assert offer.path.startswith("/")
            assert challenge_bits(offer.challenge) >= 128
            challenges.add(offer.challenge)
            assert b.send("GET", "/whoami").text == "alice"  # never registers: still alice
    assert len(challenges) == 3
    with browser(live) as b:  # no offer to a stranger
        assert "secure-session-registration" not in b.send("GET", "/page").headers


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_register_refresh_and_the_rotated_bound_cookie(live: Live, alg: str) -> None:
    """Items 87 and 88, B.3-B.7: a valid proof registers (200, no-store, instructions valid per
    B.4, a short-lived ``Secure; HttpOnly`` bound cookie matching its credential); a refresh
    without a proof gets 403 with a strictly parsed challenge of >= 128 bits naming the session;
    the signed retry gets 200, a new cookie value with the same attributes, and the next
    challenge, which the following refresh answers in one round trip."""
    with browser(live) as b:
        bound = register(b, alg)
        (credential,) = bound.instructions["credentials"]
        assert b.send("GET", "/whoami").text == "alice"
        values = {bound.cookie}
        challenge = bound.challenge()
        assert challenge_bits(challenge) >= 128
        for _ in range(2):
            r = bound.refresh(bound.key.proof(challenge, registration=False))
            assert r.status_code == 200, r.text
            assert r.headers.get("cache-control") == "no-store"
            value = check_bound_cookie(bound_cookie(r, credential["name"]), credential)
            assert value not in values, "a refresh mints a new bound-cookie value"
            values.add(value)
            if r.content:
                doc = r.json()
                validate_instructions(doc, live.origin)
                assert doc["session_identifier"] == bound.sid
            challenge, sid = read_challenge(r)
            assert sid == bound.sid and challenge_bits(challenge) >= 128
            assert b.send("GET", "/whoami").text == "alice"
        assert len(events_of(live, "dbsc.registered")) >= 1


def _refused_refresh(bound: Bound, proof: str | None) -> httpx.Response:
    """A refresh that must fail: 403 with a fresh challenge for this session, and no bound
    cookie set (B.5 step 2)."""
    r = bound.refresh(proof)
    assert r.status_code == 403, (r.status_code, r.text)
    (credential,) = bound.instructions["credentials"]
    assert bound_cookie(r, credential["name"]) is None
    challenge, sid = read_challenge(r)
    assert sid == bound.sid and challenge_bits(challenge) >= 128
    return r


def _tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    raw = bytearray(b64u_decode(sig))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{payload}.{b64u(bytes(raw))}"


def test_refresh_refuses_every_wrong_proof(live: Live) -> None:
    """Item 88, B.5/B.6: another key, another algorithm (``RS256`` header on an ES256 session,
    ``HS256`` keyed with the public key, ``none``), a bad signature, a wrong ``typ``, a replayed
    proof, a challenge never issued, a registration-style proof of a thief's key, and malformed
    JWTs each get 403 with a new challenge, never a bound cookie, never a 5xx or another 4xx
    (which would end the browser's session); a failure is an event."""
    with browser(live) as b:
        bound = register(b, "ES256")
        before = len(events_of(live, "dbsc.proof_failed"))
        thief = Key("ES256")
        rsa_thief = Key("RS256")

        def hs256(challenge: str) -> str:
            import hmac

            head = b64u_json({"alg": "HS256", "typ": "dbsc+jwt"})
            body = b64u_json({"jti": challenge})
            secret = json.dumps(bound.key.jwk()).encode()
            mac = hmac.new(secret, f"{head}.{body}".encode(), "sha256").digest()
            return f"{head}.{body}.{b64u(mac)}"

        # Each wrong proof, and whether it names the challenge (then the challenge is spent).
        wrong: list[tuple[Any, bool]] = [
            (lambda c: thief.proof(c, registration=False), True),
            (lambda c: thief.proof(c, registration=True), True),  # a jwk on refresh: unused
            (lambda c: rsa_thief.proof(c, registration=False), True),
            (hs256, True),
            (
                lambda c: (
                    f"{b64u_json({'alg': 'none', 'typ': 'dbsc+jwt'})}.{b64u_json({'jti': c})}."
                ),
                True,
            ),
            (lambda c: _tamper(bound.key.proof(c, registration=False)), True),
            (lambda c: bound.key.proof(c, registration=False, header={"typ": "JWT"}), True),
            # RFC 7515 4.1.11: an extension the verifier does not understand invalidates a JWS.
            (lambda c: bound.key.proof(c, registration=False, header={"crit": ["b64"]}), True),
            (lambda c: bound.key.proof(c + "x", registration=False), False),
            (lambda c: bound.key.proof(c, registration=False).rsplit(".", 1)[0], False),
            (lambda c: "not a jwt", False),
            (lambda c: "a.b.c", False),
            (lambda c: bound.key.proof(c, registration=False) + ".extra", False),
        ]
        for make, spends in wrong:
            # A browser of its own for each: refreshes are rate-limited per session.
            with browser(live) as fresh:
                bound = register(fresh, "ES256")
                challenge = bound.challenge()
                _refused_refresh(bound, make(challenge))
                right = bound.key.proof(challenge, registration=False)
                if spends:  # the challenge answered wrongly is spent: the right key is refused
                    _refused_refresh(bound, right)
                else:  # a proof that never named it leaves it to the real device
                    assert bound.refresh(right).status_code == 200
                assert fresh.send("GET", "/whoami").text == "alice"  # the device is unaffected
        # Replay: a proof that worked once never works again.
        bound = register(b, "ES256")
        challenge = bound.challenge()
        good = bound.key.proof(challenge, registration=False)
        assert bound.refresh(good).status_code == 200
        _refused_refresh(bound, good)
        assert len(events_of(live, "dbsc.proof_failed")) >= before + len(wrong)
        assert b.send("GET", "/whoami").text == "alice"  # the real device is unaffected


def test_challenges_are_bound_to_their_session(live: Live) -> None:
    """Item 86/88: a challenge issued to one session answers nothing in another, and a
    registration challenge is not a refresh challenge (nor the other way round)."""
    with browser(live) as alice, browser(live) as bob:
        a = register(alice)
        bob_offer = read_offer(login(bob, "bob"))
        b_bound_key = Key("ES256")
        # Bob's registration challenge, signed by alice's key, at alice's refresh.
        _refused_refresh(a, a.key.proof(bob_offer.challenge, registration=False))
        # Alice's refresh challenge used to register bob.
        stolen = a.challenge()
        r = bob.dbsc_post(
            bob_offer.path,
            {"secure-session-response": sf_string(b_bound_key.proof(stolen, registration=True))},
        )
        assert 400 <= r.status_code < 500 and "secure-session-challenge" not in r.headers
        assert not any(c.name.startswith("__Host-dbsc") for c in set_cookies(r) if c.value)


def test_registration_refuses_wrong_proofs_and_binds_nothing(live: Live) -> None:
    """Item 87: a wrong ``jti``, ``alg: none``, ``HS256``, a bad signature, a missing ``jwk``, a
    ``jwk`` that is not the signing key, a wrong ``typ``, a ``crit`` extension and malformed
    JWTs: 4xx (never 401/404-as-success, never 5xx), no instructions, no bound cookie; the
    session stays unbound (a later refresh ends with ``continue: false``)."""
    other = Key("ES256")

    def cases(key: Key, challenge: str) -> list[str]:
        return [
            key.proof(challenge + "x", registration=True),
            f"{b64u_json({'alg': 'none', 'typ': 'dbsc+jwt'})}.{b64u_json({'jti': challenge})}.",
            key.proof(challenge, registration=False),  # no jwk
            key.proof(challenge, registration=True, header={"jwk": other.jwk()}),
            _tamper(key.proof(challenge, registration=True)),
            key.proof(challenge, registration=True, header={"typ": "JWT"}),
            key.proof(challenge, registration=True, header={"alg": "HS256"}),
            "garbage",
            key.proof(challenge, registration=True, header={"crit": ["exp"], "exp": 1}),
        ]

    for index in range(9):
        with browser(live) as b:
            offer = read_offer(login(b))
            key = Key("ES256")
            proof = cases(key, offer.challenge)[index]
            r = b.dbsc_post(offer.path, {"secure-session-response": sf_string(proof)})
            assert 400 <= r.status_code < 500, (index, r.status_code)
            assert r.headers.get("content-type", "").split(";")[0] != "application/json" or (
                "session_identifier" not in r.text
            )
            assert not [c for c in set_cookies(r) if c.name.startswith("__Host-dbsc") and c.value]
            assert b.send("GET", "/whoami").text == "alice"
            # A proof that answered the challenge spent it: even the correct proof now fails.
            # One that did not name it (a wrong jti, garbage) leaves it to the real browser.
            fixed = key.proof(offer.challenge, registration=True)
            again = b.dbsc_post(offer.path, {"secure-session-response": sf_string(fixed)})
            expected = 200 if index in (0, 7) else 403
            assert again.status_code == expected, (index, again.status_code)


def test_a_copied_session_cookie_without_the_bound_cookie_is_not_signed_in(live: Live) -> None:
    """Item 89: once bound, the long-lived cookie alone is a theft signal (anonymous plus an
    event); a session that never registered is served as usual."""
    with browser(live) as victim, browser(live) as thief, browser(live) as plain_client:
        register(victim)
        thief.jar[SESSION_COOKIE] = victim.jar[SESSION_COOKIE]
        before = len(events_of(live, "dbsc.missing_bound_cookie"))
        assert thief.send("GET", "/whoami").text == "anonymous"
        assert len(events_of(live, "dbsc.missing_bound_cookie")) == before + 1
        login(plain_client, "carol")
        assert plain_client.send("GET", "/whoami").text == "carol"


def test_logout_terminates_and_the_endpoint_is_hardened(live: Live) -> None:
    """Item 90, B.8: sign-out sends ``Clear-Site-Data: "cookies"``; a later refresh, even with a
    valid proof of the right key, gets 200 ``{"continue": false}`` (never a 401/404) and no bound
    cookie; the endpoint's answers are never framed, cached or shared cross-origin; a
    ``Secure-Session-Skipped`` header is an event."""
    with browser(live) as b:
        bound = register(b)
        challenge = bound.challenge()
        before = len(events_of(live, "dbsc.skipped"))
        skipped = f"unreachable;session_identifier={sf_string(bound.sid)}"
        b.send("GET", "/whoami", {"secure-session-skipped": skipped})
        assert len(events_of(live, "dbsc.skipped")) == before + 1
        out = b.send("GET", "/logout")
        assert out.status_code == 200
        gone = bound_cookie(out, bound.instructions["credentials"][0]["name"])
        assert gone is not None and int(gone.attributes["max-age"]) <= 0
        cleared = [p.strip() for p in ",".join(out.headers.get_list("clear-site-data")).split(",")]
        assert '"cookies"' in cleared
        r = bound.refresh(bound.key.proof(challenge, registration=False))
        assert r.status_code == 200 and r.json() == {"continue": False}
        assert r.headers.get("cache-control") == "no-store"
        (credential,) = bound.instructions["credentials"]
        left = bound_cookie(r, credential["name"])
        assert left is None or not left.value or int(left.attributes.get("max-age", "1")) <= 0
        _assert_common_headers("refresh endpoint", r, https=True)
        # A stranger (no cookie at all) asking to refresh: the same answer.
        with browser(live) as stranger:
            r = stranger.dbsc_post(
                bound.refresh_url, {"sec-secure-session-id": sf_string(bound.sid)}
            )
            assert r.status_code == 200 and r.json() == {"continue": False}


@pytest.mark.parametrize(
    "context",
    [
        {"sec-fetch-site": "cross-site", "origin": "https://evil.test"},
        {"origin": "https://evil.test"},  # a browser without Fetch Metadata
        {"sec-fetch-site": "same-site", "origin": "https://sub.evil.test"},
    ],
    ids=["fetch-metadata", "origin-only", "same-site"],
)
def test_a_cross_site_form_cannot_make_the_refresh_endpoint_clear_cookies(
    live: Live, context: dict[str, str]
) -> None:
    """Item 90, B.8: ``{"continue": false}`` and ``Clear-Site-Data: "cookies"`` end sessions, so
    the refresh endpoint must only say them to the browser itself. A form on another site posted
    to it (a top-level navigation: ``SameSite=Lax`` cookies stay behind, ``None`` ones go) is
    refused with 403 and clears nothing, whether the visitor is a stranger, signed in without
    DBSC, or bound."""
    form = {
        **context,
        "sec-fetch-mode": "navigate",
        "sec-fetch-dest": "document",
        "content-type": "application/x-www-form-urlencoded",
    }
    with browser(live) as stranger, browser(live) as unbound, browser(live) as device:
        login(unbound)
        bound = register(device)
        for b, with_cookies in (
            (stranger, False),
            (unbound, True),
            (device, True),
            (device, False),
        ):
            jar = dict(b.jar)
            if not with_cookies:
                b.jar.clear()
            sent = {**form, "sec-secure-session-id": sf_string(bound.sid)}
            r = b.send("POST", bound.refresh_url, sent)
            b.jar = jar
            assert r.status_code == 403, (r.status_code, r.text)
            assert "clear-site-data" not in r.headers
            assert r.headers.get_list("set-cookie") == []
            assert "secure-session-challenge" not in r.headers
        assert unbound.send("GET", "/whoami").text == "alice"
        assert device.send("GET", "/whoami").text == "alice"
        assert (
            bound.refresh(bound.key.proof(bound.challenge(), registration=False)).status_code == 200
        )
