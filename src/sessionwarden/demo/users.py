"""Demo accounts: names mapped to salted scrypt hashes, never to passwords.

The encoded form is ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>`` so the cost can be raised
later without breaking stored hashes. Verification recomputes the hash with the stored parameters
and compares in constant time; an unknown user is checked against a dummy hash so the time taken
does not tell whether the name exists.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from functools import cache

__all__ = [
    "USERNAME_PATTERN",
    "check_login",
    "hash_password",
    "parse_user_spec",
    "random_password",
    "verify_password",
]

#: 2**15 * 8 * 128 bytes = 32 MiB of memory per hash: slow for a GPU farm, fine for a login.
_LOG2_N = 15
_R = 8
_P = 1
_SALT_BYTES = 16
_DKLEN = 32
_MAXMEM = 64 * 1024 * 1024
#: Longer passwords only cost hashing time; nobody types more than this.
MAX_PASSWORD_BYTES = 1024
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _scrypt(password: bytes, salt: bytes, log2_n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=1 << log2_n, r=r, p=p, maxmem=_MAXMEM, dklen=dklen)


def hash_password(password: str) -> str:
    """A fresh salted scrypt hash of ``password`` in the encoded form above."""
    raw = password.encode("utf-8")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise ValueError(f"password longer than {MAX_PASSWORD_BYTES} bytes")
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(raw, salt, _LOG2_N, _R, _P, _DKLEN)
    return f"scrypt${_LOG2_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``; ``False`` (never an exception) for junk."""
    raw = password.encode("utf-8")
    try:
        scheme, log2_n, r, p, salt_b64, digest_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        n_, r_, p_ = int(log2_n), int(r), int(p)
        if not (10 <= n_ <= 20 and 1 <= r_ <= 32 and 1 <= p_ <= 16):
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(digest_b64, validate=True)
    except ValueError:
        return False
    if len(raw) > MAX_PASSWORD_BYTES:
        # Still spend the time, so an over-long password is not a timing oracle either.
        raw = raw[:MAX_PASSWORD_BYTES]
        _scrypt(raw, salt, n_, r_, p_, len(expected) or _DKLEN)
        return False
    actual = _scrypt(raw, salt, n_, r_, p_, len(expected) or _DKLEN)
    return hmac.compare_digest(actual, expected)


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def check_login(users: dict[str, str], username: str, password: str) -> bool:
    """Verify a login attempt; the same work is done whether or not ``username`` exists."""
    encoded = users.get(username)
    if encoded is None:
        verify_password(password, _dummy_hash())
        return False
    return verify_password(password, encoded)


def parse_user_spec(spec: str) -> tuple[str, str]:
    """``NAME:PASSWORD`` (the password may contain colons) into its two parts."""
    name, sep, password = spec.partition(":")
    if not sep:
        raise ValueError(f"expected NAME:PASSWORD, got {spec.split(':', 1)[0]!r} with no colon")
    if not USERNAME_PATTERN.fullmatch(name):
        raise ValueError("user names are 1-64 characters from A-Z a-z 0-9 _ . -")
    if not password:
        raise ValueError(f"user {name!r}: empty password")
    return name, password


def random_password() -> str:
    """A password for the generated demo user: 128 bits from the CSPRNG."""
    return secrets.token_urlsafe(16)
