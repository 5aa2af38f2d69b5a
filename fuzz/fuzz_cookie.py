"""Fuzz the session-cookie parser: ``sessionwarden.cookies.cookie_values``.

Properties checked on every input:

* it never raises and always returns a list of distinct ``str``;
* a header longer than ``MAX_COOKIE_HEADER`` yields nothing;
* every value it returns was really sent under the exact (case-sensitive) name: the header holds
  ``name=value`` (possibly quoted), and a value never contains the ``;`` separator;
* for structured headers (pieces under the name, its case variants and other names) the result
  is exactly the values sent under the exact name, in order, deduplicated: a case variant such as
  ``__host-id`` is never read as the session cookie;
* a value it returns is only ever accepted as a session ID when ``is_well_formed_id`` says so,
  which needs exactly 43 base64url characters.

Run: see fuzz/README.md.
"""

from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import atheris

with atheris.instrument_imports():
    from sessionwarden import tokens
    from sessionwarden.cookies import MAX_COOKIE_HEADER, cookie_values

NAMES = ("__Host-id", "id", "__Secure-sid")
_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    name = NAMES[fdp.ConsumeIntInRange(0, len(NAMES) - 1)]
    if fdp.ConsumeBool():
        # structured: pieces under the real name, case variants, other names and junk
        pieces = []
        expected: list[str] = []
        for _ in range(fdp.ConsumeIntInRange(0, 6)):
            kind = fdp.ConsumeIntInRange(0, 3)
            cname = (name, name.lower(), name.swapcase(), "other")[kind]
            value = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 60)).replace(";", "")
            pieces.append(f"{cname}={value}")
            if cname == name:
                v = value.strip(" \t")
                if len(v) >= 2 and v[0] == v[-1] == '"':
                    v = v[1:-1]
                if v not in expected:
                    expected.append(v)
        header = " ;".join(pieces) if fdp.ConsumeBool() else ";".join(pieces)
        got = cookie_values(header, name)
        if got != expected:
            raise AssertionError(f"{header!r}: got {got!r}, expected {expected!r}")
    else:
        header = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    values = cookie_values(header, name)
    if not isinstance(values, list):
        raise AssertionError("cookie_values must return a list")
    if len(header) > MAX_COOKIE_HEADER and values:
        raise AssertionError("an oversized header must yield nothing")
    if len(set(values)) != len(values):
        raise AssertionError("values must be distinct")
    for value in values:
        if not isinstance(value, str) or ";" in value:
            raise AssertionError(f"bad value {value!r}")
        if not re.search(rf"(^|;)[ \t]*{re.escape(name)}[ \t]*=", header):
            raise AssertionError("a value was returned for a name that was never sent")
        if value not in header:
            raise AssertionError("a value that is not in the header was returned")
        if tokens.is_well_formed_id(value) and (
            len(value) != tokens.ID_LENGTH or not _URLSAFE.issuperset(value)
        ):
            raise AssertionError(f"accepted as an ID: {value!r}")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
