"""Session IDs, keyed hashing and masked tokens.

Why each primitive looks the way it does:

* IDs are 256 bits from :mod:`secrets` (the operating system's CSPRNG: each draw is a system
  call, never a buffer a fork would duplicate), base64url without padding (43 characters).
  They carry no meaning; everything about a session lives server-side.
* The store never sees a raw ID. It is keyed by ``HMAC-SHA256(secret, id)``: a copy of the store
  (a backup, a replica, a ``KEYS *``) yields nothing an attacker can present as a cookie, and the
  secret is needed even to test a guess offline.
* Several secrets may be configured: the first signs, all verify, so a secret is rotated without
  logging everybody out (sessions move to the new key when their ID next rotates).
* Logs and events carry a *reference*: the first 16 hex digits of the keyed hash. It names a
  session to an operator and can never be turned back into the cookie.
* CSRF tokens are a per-session secret XOR a fresh random mask, sent as ``mask || masked``. Every
  rendering differs, so compression side channels (BREACH) learn nothing; verification unmasks and
  compares in constant time.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Sequence

ID_BYTES = 32
ID_LENGTH = 43  # len(base64url(32 bytes)) without padding
CSRF_SECRET_BYTES = 32
REF_LENGTH = 16

_ID_SHAPE = re.compile(f"[A-Za-z0-9_-]{{{ID_LENGTH}}}")


def new_session_id() -> str:
    """A fresh 256-bit session ID from the operating system's CSPRNG."""
    return b64e(secrets.token_bytes(ID_BYTES))


def is_well_formed_id(value: str) -> bool:
    """True only for strings that could have come from :func:`new_session_id`.

    Checked before any store look-up, so junk never costs a round trip and never reaches a query.
    """
    return _ID_SHAPE.fullmatch(value) is not None


#: base64url is base64 with ``-_`` for ``+/`` (RFC 4648 §5); :mod:`binascii` speaks the
#: standard alphabet, so each direction is one ``translate`` (what :mod:`base64`'s urlsafe
#: functions do, without their layers of argument handling). Decoding also turns the standard
#: alphabet's own ``+``, ``/`` and ``=`` (never in unpadded base64url) into ``!``, which no
#: alphabet has, so the strict decode refuses them with everything else outside the alphabet.
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_+/=", b"+/!!!")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#: Each character's 6-bit value, and (by ``len % 4`` of the text) the low bits of the last
#: character that carry no data: 2 characters hold 1 byte (4 spare bits), 3 hold 2 (2 spare).
_VALUE_OF = {char: value for value, char in enumerate(_ALPHABET)}
_UNUSED_BITS = (0, 0, 0b1111, 0b11)


def b64e(raw: bytes) -> str:
    """base64url without padding."""
    return binascii.b2a_base64(raw, newline=False).translate(_TO_URLSAFE, b"=").decode("ascii")


def b64d(text: str) -> bytes | None:
    """Strict base64url decode; ``None`` for anything malformed (never raises)."""
    tail = len(text) % 4
    if tail == 1 or not text.isascii():  # not a whole number of bytes, or not the alphabet
        return None
    raw = text.encode("ascii").translate(_FROM_URLSAFE)
    try:
        decoded = binascii.a2b_base64(raw + b"=" * (-len(raw) % 4), strict_mode=True)
    except (binascii.Error, ValueError):  # a character outside the alphabet
        return None
    if tail and _VALUE_OF[text[-1]] & _UNUSED_BITS[tail]:
        # Not the canonical spelling (RFC 4648 §3.5): the last character's bits past the
        # data, which decoding ignores, must be zero.
        return None
    return decoded


_BLOCK = 64  # SHA-256's block size
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class _HmacSha256:
    """HMAC-SHA256 (RFC 2104) under one key, with the key's two padded blocks hashed once.

    Per message this costs two copies of a SHA-256 state instead of setting up an HMAC context
    (a third of the time for a session ID); the result is the standard HMAC, byte for byte.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\x00")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


class Keyring:
    """The secret keys behind keyed hashing: the first signs, every key verifies."""

    __slots__ = ("_macs",)

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("secret_keys: at least one key is required")
        self._macs = tuple(_HmacSha256(key) for key in keys)

    def hash_id(self, session_id: str) -> str:
        """The store key for a session ID, under the current (first) secret."""
        return self._macs[0].hexdigest(session_id.encode("ascii"))

    def legacy_hashes(self, session_id: str) -> Iterable[str]:
        """Store keys under the older secrets, tried only when the current one misses."""
        for mac in self._macs[1:]:
            yield mac.hexdigest(session_id.encode("ascii"))

    def hash_value(self, purpose: str, value: str) -> str:
        """A keyed hash of any other value (a user ID in an index key, a client address)."""
        return _hash_value(self._macs[0], purpose, value)

    def legacy_value_hashers(self) -> tuple[Callable[[str, str], str], ...]:
        """:meth:`hash_value` under each older secret (values stored before a key rotation)."""
        return tuple(functools.partial(_hash_value, mac) for mac in self._macs[1:])


def _hash_value(mac: _HmacSha256, purpose: str, value: str) -> str:
    msg = purpose.encode() + b"\x00" + value.encode("utf-8", "surrogatepass")
    return mac.hexdigest(msg)


def ref_of(store_key: str) -> str:
    """The short, loggable reference of a session (derived from its keyed hash)."""
    return store_key[:REF_LENGTH]


def new_lineage() -> str:
    """A fresh random lineage value for a new session (not a secret: it grants nothing)."""
    return b64e(secrets.token_bytes(16))


def new_csrf_secret() -> str:
    return b64e(secrets.token_bytes(CSRF_SECRET_BYTES))


def mask_token(secret_b64: str) -> str:
    """A fresh masked rendering of the session's CSRF secret."""
    secret = b64d(secret_b64)
    if secret is None or len(secret) != CSRF_SECRET_BYTES:
        raise ValueError("malformed CSRF secret")
    mask = secrets.token_bytes(CSRF_SECRET_BYTES)
    return b64e(mask + _xor(mask, secret))


def _xor(a: bytes, b: bytes) -> bytes:
    """``a`` XOR ``b``, two strings of :data:`CSRF_SECRET_BYTES` bytes (as one integer each:
    a byte-by-byte loop in Python costs ten times as much)."""
    n = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return n.to_bytes(CSRF_SECRET_BYTES, "big")


MASKED_TOKEN_LENGTH = len(b64e(bytes(2 * CSRF_SECRET_BYTES)))


def unmask_token(token: str) -> bytes | None:
    """The secret inside a masked token, or ``None`` when the token is malformed."""
    if len(token) != MASKED_TOKEN_LENGTH:
        return None
    raw = b64d(token)
    if raw is None or len(raw) != 2 * CSRF_SECRET_BYTES:
        return None
    return _xor(raw[:CSRF_SECRET_BYTES], raw[CSRF_SECRET_BYTES:])


def verify_masked_token(token: str, secret_b64: str) -> bool:
    """Constant-time check that ``token`` is a masking of ``secret_b64``."""
    candidate = unmask_token(token)
    return candidate is not None and is_secret(candidate, secret_b64)


def is_secret(candidate: bytes, secret_b64: str) -> bool:
    """Constant-time check that an unmasked token (:func:`unmask_token`) is ``secret_b64``."""
    secret = b64d(secret_b64)
    return secret is not None and hmac.compare_digest(candidate, secret)
