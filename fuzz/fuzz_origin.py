"""Fuzz ``csrf.cross_origin_verdict`` with hostile Origin / Sec-Fetch-Site / Host values.

Properties, for an unsafe method on a non-exempt path:

* it never raises;
* with a ``Sec-Fetch-Site`` other than ``same-origin`` / ``none`` the request passes only with a
  trusted Origin;
* with no ``Sec-Fetch-Site`` and an Origin, it passes only when the Origin is trusted or is, by an
  independent check, the request's own scheme, host and port;
* a cross-site attacker origin (another host) is never accepted.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import atheris

with atheris.instrument_imports():
    from sessionwarden.csrf import cross_origin_verdict
    from sessionwarden.facts import RequestFacts
    from sessionwarden.policy import CsrfPolicy

POLICY = CsrfPolicy(trusted_origins=("https://partner.test",), exempt_paths=("/hooks",))
SITES = (None, "same-origin", "none", "same-site", "cross-site", "", " cross-site", "junk")
HOSTS = ("app.test", "app.test:443", "app.test:8443", "[::1]:8000", "127.0.0.1", "")
ORIGINS = (
    None,
    "https://app.test",
    "https://evil.test",
    "null",
    "https://partner.test",
    "https://app.test.evil.test",
    "http://app.test",
)
DEFAULT = {"http": "80", "https": "443"}


def _reference_same_origin(origin: str, scheme: str, host: str) -> bool:
    """A deliberately simple, independent notion of "Origin names this request's origin"."""
    o = origin.strip().lower()
    prefix = scheme.lower() + "://"
    if not o.startswith(prefix):
        return False

    def split(auth: str) -> tuple[str, str] | None:
        if auth.startswith("["):
            end = auth.find("]")
            if end < 0:
                return None
            name, rest = auth[: end + 1], auth[end + 1 :]
            if rest and not rest.startswith(":"):
                return None
            port = rest[1:] if rest else ""
        else:
            name, _, port = auth.partition(":")
        if port:
            if not (port.isascii() and port.isdigit()):
                return None
            port = str(int(port))
            if port == DEFAULT.get(scheme.lower()):
                port = ""
        return name, port

    return split(o[len(prefix) :]) == split(host.lower()) is not None


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    method = ("POST", "PUT", "DELETE", "PATCH", "post")[fdp.ConsumeIntInRange(0, 4)]
    scheme = "https" if fdp.ConsumeBool() else "http"
    host = HOSTS[fdp.ConsumeIntInRange(0, len(HOSTS) - 1)]
    if fdp.ConsumeBool():
        host = fdp.ConsumeUnicodeNoSurrogates(40).lower()
    site = SITES[fdp.ConsumeIntInRange(0, len(SITES) - 1)]
    if fdp.ConsumeIntInRange(0, 3) == 0:
        site = fdp.ConsumeUnicodeNoSurrogates(20)
    origin = ORIGINS[fdp.ConsumeIntInRange(0, len(ORIGINS) - 1)]
    if fdp.ConsumeBool():
        origin = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 120))
    path = "/transfer" if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(40)
    facts = RequestFacts(
        method=method.upper(),
        scheme=scheme,
        host=host,
        path=path,
        client_ip="203.0.113.1",
        origin=origin,
        sec_fetch_site=site,
    )
    verdict = cross_origin_verdict(facts, POLICY)
    if not verdict.ok or verdict.reason == "exempt-path":
        return
    trusted = origin is not None and origin.strip().lower() == "https://partner.test"
    s = (site or "").strip()
    if s and s not in ("same-origin", "none") and not trusted:
        raise AssertionError(f"Sec-Fetch-Site {site!r} accepted without a trusted origin")
    if (
        not s
        and origin is not None
        and not trusted
        and not _reference_same_origin(origin, scheme, host)
    ):
        raise AssertionError(f"origin {origin!r} accepted for {scheme}://{host}")
    cross = origin is not None and "evil" in origin.lower() and s not in ("same-origin", "none")
    if cross and "evil" not in host:
        raise AssertionError(f"attacker origin {origin!r} accepted")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
