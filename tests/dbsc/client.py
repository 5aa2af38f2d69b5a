"""A DBSC client that plays the browser's part, written from the spec (not from the server code).

It generates its own key (EC P-256 or RSA-2048), signs ``dbsc+jwt`` proofs, reads the server's
``Secure-Session-Registration`` / ``Secure-Session-Challenge`` headers with a parser of its own,
validates the session instructions the way the spec tells a browser to, keeps the bound cookie
with its Max-Age against an injected clock, and *defers* an in-scope request whose bound cookie
has run out: refresh first (403 -> sign the challenge -> retry), then send the request.

The transport is a callable ``send(method, path, headers) -> Response`` so the same client drives
the pure decision functions now and a real adapter later.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64u_json(value: Any) -> str:
    return b64u(json.dumps(value, separators=(",", ":")).encode())


def _int_bytes(n: int, length: int | None = None) -> bytes:
    return n.to_bytes(length or (n.bit_length() + 7) // 8, "big")


class DeviceKey:
    """The browser's key pair for one session (a TPM key stands in here as a software key)."""

    def __init__(self, alg: str = "ES256") -> None:
        self.alg = alg
        if alg == "ES256":
            self.private: Any = ec.generate_private_key(ec.SECP256R1())
        elif alg == "RS256":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            raise ValueError(alg)

    def jwk(self) -> dict[str, str]:
        numbers = self.private.public_key().public_numbers()
        if self.alg == "ES256":
            return {
                "kty": "EC",
                "crv": "P-256",
                "x": b64u(_int_bytes(numbers.x, 32)),
                "y": b64u(_int_bytes(numbers.y, 32)),
            }
        return {"kty": "RSA", "n": b64u(_int_bytes(numbers.n)), "e": b64u(_int_bytes(numbers.e))}

    def sign(self, signing_input: bytes) -> bytes:
        if self.alg == "ES256":
            der = self.private.sign(signing_input, ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)
            return _int_bytes(r, 32) + _int_bytes(s, 32)
        return self.private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())

    def proof(self, challenge: str, *, with_jwk: bool, header: dict[str, Any] | None = None) -> str:
        """A compact ``dbsc+jwt``: ``jwk`` in the header on registration only (spec B.6)."""
        head: dict[str, Any] = {"alg": self.alg, "typ": "dbsc+jwt"}
        if with_jwk:
            head["jwk"] = self.jwk()
        head.update(header or {})
        signing_input = f"{b64u_json(head)}.{b64u_json({'jti': challenge})}"
        return f"{signing_input}.{b64u(self.sign(signing_input.encode()))}"


def unsigned_proof(challenge: str, header: dict[str, Any]) -> str:
    """A JWT with an empty signature (``alg: none`` and friends)."""
    return f"{b64u_json(header)}.{b64u_json({'jti': challenge})}."


# ---------------------------------------------------------------- reading the server's headers

_SFSTR = r'"((?:[^"\\]|\\.)*)"'


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_registration(value: str) -> dict[str, Any]:
    """``(ES256 RS256);path="...";challenge="..."`` -> algorithms and params (spec B.2/B.3)."""
    m = re.fullmatch(r"\(([A-Za-z0-9 ]*)\)((?:;[a-z_]+=" + _SFSTR + r")*)", value)
    assert m, f"not an inner list with sf-string params: {value!r}"
    params = {k: _unescape(v) for k, v in re.findall(r";([a-z_]+)=" + _SFSTR, m.group(2))}
    assert "path" in params, "registration without the required path"
    return {"algorithms": m.group(1).split(), **params}


def parse_challenge(value: str) -> tuple[str, str]:
    """``"<challenge>";id="<session id>"`` -> (challenge, id); the id is mandatory."""
    m = re.fullmatch(_SFSTR + r";id=" + _SFSTR, value)
    assert m, f"not a challenge with an id: {value!r}"
    return _unescape(m.group(1)), _unescape(m.group(2))


def parse_set_cookie(value: str) -> tuple[str, str, dict[str, str]]:
    first, *rest = [p.strip() for p in value.split(";")]
    name, _, cookie = first.partition("=")
    attrs = {}
    for piece in rest:
        k, _, v = piece.partition("=")
        attrs[k.lower()] = v
    return name, cookie, attrs


def validate_instructions(doc: dict[str, Any]) -> None:
    """What a browser checks before it keeps a session (spec B.4 / B.3 step 6)."""
    assert isinstance(doc["session_identifier"], str) and doc["session_identifier"]
    assert isinstance(doc["scope"]["include_site"], bool)
    assert doc["refresh_url"].startswith("/") or doc["refresh_url"].startswith("https://")
    for rule in doc["scope"].get("scope_specification", []):
        assert rule["type"] in ("include", "exclude")
    assert doc["credentials"], "at least one credential"
    for cred in doc["credentials"]:
        assert cred["type"] == "cookie" and cred["name"]
        attrs = cred.get("attributes", "").lower()
        assert "max-age" not in attrs and "expires" not in attrs, "Chrome rejects these"
        assert "partitioned" not in attrs


# ---------------------------------------------------------------- the browser


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Send = Callable[[str, str, dict[str, str]], Response]


@dataclass
class DbscBrowser:
    """One browser profile against one origin."""

    send: Send
    now: Callable[[], float]
    alg: str = "ES256"
    cookies: dict[str, tuple[str, float | None]] = field(default_factory=dict)
    key: DeviceKey | None = None
    instructions: dict[str, Any] | None = None
    registration_path: str = ""
    cached_challenge: str | None = None
    log: list[str] = field(default_factory=list)

    # cookie jar ----------------------------------------------------------------------
    def cookie_header(self) -> dict[str, str]:
        live = {n: v for n, (v, exp) in self.cookies.items() if exp is None or exp > self.now()}
        self.cookies = {n: self.cookies[n] for n in live}
        if not live:
            return {}
        return {"cookie": "; ".join(f"{n}={v}" for n, v in live.items())}

    def _store_cookies(self, response: Response) -> None:
        for value in response.all("set-cookie"):
            name, cookie, attrs = parse_set_cookie(value)
            if "max-age" in attrs and int(attrs["max-age"]) <= 0:
                self.cookies.pop(name, None)
            else:
                exp = self.now() + int(attrs["max-age"]) if "max-age" in attrs else None
                self.cookies[name] = (cookie, exp)

    def _raw(self, method: str, path: str, headers: dict[str, str] | None = None) -> Response:
        sent = {**self.cookie_header(), **(headers or {})}
        response = self.send(method, path, sent)
        self._store_cookies(response)
        self.log.append(f"{method} {path} -> {response.status}")
        return response

    # the DBSC session ------------------------------------------------------------------
    @property
    def session_id(self) -> str | None:
        return None if self.instructions is None else self.instructions["session_identifier"]

    def _bound_cookie_missing(self, path: str) -> bool:
        if self.instructions is None:
            return False
        if path == self.instructions["refresh_url"]:
            return False
        for rule in reversed(self.instructions["scope"].get("scope_specification", [])):
            prefix = rule.get("path", "/")
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                if rule["type"] == "exclude":
                    return False
                break
        self.cookie_header()  # drop what has expired
        return any(c["name"] not in self.cookies for c in self.instructions["credentials"])

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> Response:
        """A page load or fetch: deferred behind a refresh when the bound cookie is missing."""
        if self._bound_cookie_missing(path):
            self.log.append(f"defer {path}")
            self.refresh()
        response = self._raw(method, path, headers)
        offer = response.header("secure-session-registration")
        if offer is not None:
            self.register(parse_registration(offer))
        return response

    def register(self, offer: dict[str, Any], *, key: DeviceKey | None = None) -> Response:
        if self.alg not in offer["algorithms"]:
            raise AssertionError(f"{self.alg} not offered: {offer['algorithms']}")
        new_key = key or DeviceKey(self.alg)
        proof = new_key.proof(offer["challenge"], with_jwk=True)
        self.registration_path = offer["path"]
        response = self._raw(
            "POST",
            offer["path"],
            {"secure-session-response": proof, "sec-fetch-site": "same-origin"},
        )
        if response.status == 200:
            doc = response.json()
            validate_instructions(doc)
            if doc.get("continue") is not False:
                self.key, self.instructions = new_key, doc
                self._cache_challenge(response)
        return response

    def _cache_challenge(self, response: Response) -> None:
        value = response.header("secure-session-challenge")
        if value is not None:
            challenge, sid = parse_challenge(value)
            if sid == self.session_id:
                self.cached_challenge = challenge

    def refresh(self) -> Response:
        """The refresh dance: send (with a proof if a challenge is cached); on 403 take the new
        challenge, sign it and retry once; 200 keeps the session, ``continue:false`` ends it."""
        assert self.instructions is not None and self.key is not None
        response = self._refresh_once()
        if response.status == 403 and response.header("secure-session-challenge"):
            self._cache_challenge(response)
            response = self._refresh_once()
        if response.status == 200:
            doc = response.json()
            if doc is not None and doc.get("continue") is False:
                self.instructions = self.key = None
            elif doc is not None:
                validate_instructions(doc)
                assert doc["session_identifier"] == self.session_id
                self.instructions = doc
            self._cache_challenge(response)
        elif 400 <= response.status < 500 and response.status not in (403, 407, 429):
            self.instructions = self.key = None  # the spec: other 4xx terminate the session
        return response

    def _refresh_once(self) -> Response:
        assert self.instructions is not None and self.key is not None
        headers = {"sec-secure-session-id": str(self.session_id), "sec-fetch-site": "same-origin"}
        if self.cached_challenge is not None:
            headers["secure-session-response"] = self.key.proof(
                self.cached_challenge, with_jwk=False
            )
        return self._raw("POST", self.instructions["refresh_url"], headers)
