"""Keyed hashing: the keyring's HMAC is the standard HMAC-SHA256, whatever the key's length."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionwarden import tokens


@pytest.mark.parametrize("size", [1, 16, 32, 44, 63, 64, 65, 128, 300])
def test_hash_id_is_hmac_sha256_of_the_id(size: int) -> None:
    key = bytes(range(256)) * 2
    key = key[:size]
    session_id = tokens.new_session_id()
    expected = hmac.digest(key, session_id.encode("ascii"), "sha256").hex()
    assert tokens.Keyring([key]).hash_id(session_id) == expected


@settings(max_examples=300, deadline=None)
@given(
    keys=st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=3),
    purpose=st.text(max_size=20),
    value=st.text(max_size=200),
)
def test_every_keyed_hash_matches_the_standard_hmac(
    keys: list[bytes], purpose: str, value: str
) -> None:
    ring = tokens.Keyring(keys)
    session_id = tokens.new_session_id()
    digests = [hmac.digest(k, session_id.encode("ascii"), "sha256").hex() for k in keys]
    assert ring.hash_id(session_id) == digests[0]
    assert list(ring.legacy_hashes(session_id)) == digests[1:]
    message = purpose.encode() + b"\x00" + value.encode("utf-8", "surrogatepass")
    assert ring.hash_value(purpose, value) == hmac.digest(keys[0], message, "sha256").hex()
    # a message hashed twice gives the same answer (the precomputed states are never consumed)
    assert ring.hash_id(session_id) == digests[0]


def test_a_keyring_needs_a_key() -> None:
    with pytest.raises(ValueError, match="secret_keys"):
        tokens.Keyring([])
