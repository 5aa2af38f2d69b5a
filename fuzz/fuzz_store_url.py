"""Fuzz ``stores.parse_store_url``: the only exception it may raise is ``ValueError``.

Also checked: a result names one of the three kinds; a SQLite result has a non-empty path with no
NUL; a Redis result's URL starts with ``redis://`` or ``rediss://`` and carries no query string
(the ``prefix`` option is ours, never passed on to the client).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import atheris

with atheris.instrument_imports():
    from sessionwarden.stores import parse_store_url

SEEDS = ("redis://", "rediss://", "sqlite:///", "sqlite:////", "memory://", "REDIS://", "")


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    url = SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)] + fdp.ConsumeUnicodeNoSurrogates(
        fdp.remaining_bytes()
    )
    try:
        spec = parse_store_url(url)
    except ValueError:
        return
    if spec.kind not in ("memory", "sqlite", "redis"):
        raise AssertionError(f"kind {spec.kind!r}")
    if spec.kind == "sqlite" and (not spec.path or "\x00" in spec.path):
        raise AssertionError(f"sqlite path {spec.path!r}")
    if spec.kind == "redis":
        if not spec.url.startswith(("redis://", "rediss://")) or "?" in spec.url:
            raise AssertionError(f"redis url {spec.url!r}")
        if not isinstance(spec.prefix, str):
            raise AssertionError("prefix")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
