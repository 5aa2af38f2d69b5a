"""The DBSC proof: a compact JWS of type ``dbsc+jwt``, checked with :mod:`cryptography`.

Only this module imports :mod:`cryptography` (the ``dbsc`` extra); :mod:`sessionwarden.dbsc`
loads it when a proof is actually checked, so an application with DBSC off never needs it.

What is accepted, and why:

* Exactly three base64url parts, canonical spelling, at most :data:`MAX_PROOF_LENGTH` characters,
  JSON objects without duplicate names (two parsers must never read different claims).
* ``typ`` must be ``dbsc+jwt``: a JWT minted for another purpose is never a proof.
* No ``crit`` header: DBSC defines no JWS extension, and one the verifier does not understand
  makes the JWS invalid (RFC 7515 section 4.1.11).
* ``alg`` must be on the caller's allow-list, which only ever holds ``ES256`` and ``RS256``.
  ``none`` is refused whatever the list says: this library binds sessions to keys.
* Public keys: EC P-256 (points are checked to lie on the curve) or RSA with a modulus of at
  least 2048 bits and a public exponent of 65537 or another odd value >= 3. A JWK that carries
  private members is refused: a client that leaks its private key is not a device-bound one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .tokens import b64d

MAX_PROOF_LENGTH = 8192
SUPPORTED_ALGORITHMS = ("ES256", "RS256")
PROOF_TYPE = "dbsc+jwt"
MIN_RSA_BITS = 2048
_PRIVATE_MEMBERS = frozenset(("d", "p", "q", "dp", "dq", "qi", "oth", "k"))

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclass(frozen=True, slots=True)
class Proof:
    """A parsed (not yet verified) proof."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        value = self.header.get("alg")
        return value if isinstance(value, str) else ""

    @property
    def jti(self) -> str | None:
        value = self.payload.get("jti")
        return value if isinstance(value, str) and value else None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError("duplicate member")
        out[name] = value
    return out


def _json_object(part: str) -> dict[str, Any] | None:
    raw = b64d(part)
    if raw is None:
        return None
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def parse_proof(compact: str) -> Proof | None:
    """The three parts of a compact JWS, or ``None`` for anything malformed (never raises)."""
    if not compact or len(compact) > MAX_PROOF_LENGTH:
        return None
    parts = compact.split(".")
    if len(parts) != 3:
        return None
    header = _json_object(parts[0])
    payload = _json_object(parts[1])
    signature = b64d(parts[2])
    if header is None or payload is None or signature is None:
        return None
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    return Proof(header, payload, signing_input, signature)


def _b64_int(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    raw = b64d(value)
    if not raw:
        return None
    return int.from_bytes(raw, "big")


def _ec_key(jwk: dict[str, Any]) -> tuple[PublicKey, dict[str, str]] | None:
    if jwk.get("crv") != "P-256":
        return None
    x, y = jwk.get("x"), jwk.get("y")
    xb = b64d(x) if isinstance(x, str) else None
    yb = b64d(y) if isinstance(y, str) else None
    if xb is None or yb is None or len(xb) != 32 or len(yb) != 32:
        return None
    try:  # from_encoded_point checks that the point is on the curve
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + xb + yb)
    except ValueError:
        return None
    assert isinstance(x, str) and isinstance(y, str)
    return key, {"kty": "EC", "crv": "P-256", "x": x, "y": y}


def _rsa_key(jwk: dict[str, Any]) -> tuple[PublicKey, dict[str, str]] | None:
    n, e = _b64_int(jwk.get("n")), _b64_int(jwk.get("e"))
    if n is None or e is None or n.bit_length() < MIN_RSA_BITS or e < 3 or e % 2 == 0:
        return None
    try:
        key = rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError:
        return None
    return key, {"kty": "RSA", "n": str(jwk["n"]), "e": str(jwk["e"])}


def load_jwk(jwk: object, alg: str) -> tuple[PublicKey, dict[str, str]] | None:
    """The public key of a JWK fit for ``alg`` and its canonical, storable form; else ``None``."""
    if not isinstance(jwk, dict) or _PRIVATE_MEMBERS.intersection(jwk):
        return None
    if alg == "ES256" and jwk.get("kty") == "EC":
        return _ec_key(jwk)
    if alg == "RS256" and jwk.get("kty") == "RSA":
        return _rsa_key(jwk)
    return None


def _verify(key: PublicKey, alg: str, signing_input: bytes, signature: bytes) -> bool:
    try:
        if alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey):
            if len(signature) != 64:  # JWS: raw r || s, 32 bytes each (RFC 7518 3.4)
                return False
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            der = encode_dss_signature(r, s)
            key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
            return True
        if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
            return True
    except (InvalidSignature, ValueError):
        return False
    return False


def check_proof(
    proof: Proof, allowed: tuple[str, ...], jwk: object
) -> tuple[str, dict[str, str] | None]:
    """Verify ``proof`` against ``jwk`` (the header's on registration, the stored one on
    refresh). Returns ``("", canonical_jwk)`` on success, else ``(reason, None)``.

    The reason names the first check that failed, for the audit log; it is never shown to the
    client.
    """
    if proof.header.get("typ") != PROOF_TYPE:
        return "wrong-typ", None
    if "crit" in proof.header:
        # RFC 7515 4.1.11: a JWS naming critical extensions the recipient does not understand
        # is invalid, and DBSC defines none (RFC 7797's unencoded payload would be one).
        return "critical-extension", None
    alg = proof.alg
    if alg not in allowed or alg not in SUPPORTED_ALGORITHMS:
        return "algorithm-not-allowed", None
    loaded = load_jwk(jwk, alg)
    if loaded is None:
        return "unusable-key", None
    key, canonical = loaded
    if not _verify(key, alg, proof.signing_input, proof.signature):
        return "bad-signature", None
    return "", canonical

