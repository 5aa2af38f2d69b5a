"""Fuzz ``proxy.TrustedProxies.resolve`` with hostile Forwarded / X-Forwarded-* headers.

Properties:

* it never raises;
* from an UNTRUSTED peer the headers are ignored: the answer is exactly the peer and the scheme it
  was given, whatever the headers say;
* from a trusted peer the scheme is the given one, ``http`` or ``https`` and nothing else, and the
  client is the peer or a parseable IP address (never arbitrary header text);
* a client-controlled header never changes the resolved client address: with proxies that set
  ``X-Forwarded-For`` (the default), a ``Forwarded`` header of the client's and entries it put
  left of our proxy's in ``X-Forwarded-For`` change nothing; with proxies that set
  ``Forwarded``, the client's ``X-Forwarded-*`` headers change nothing.
"""

from __future__ import annotations

import ipaddress
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import atheris

with atheris.instrument_imports():
    from sessionwarden.proxy import TrustedProxies

PROXIES = TrustedProxies(("10.0.0.0/8", "fd00::/8", "127.0.0.1"))
FORWARDED_PROXIES = TrustedProxies(("10.0.0.0/8", "fd00::/8", "127.0.0.1"), header="forwarded")
TRUSTED_PEERS = ("10.0.0.1", "127.0.0.1", "fd00::5", "::ffff:10.1.2.3")
UNTRUSTED_PEERS = ("203.0.113.9", "2001:db8::1", "192.168.1.1", "", "not-an-ip", "::1")
NAMES = ("forwarded", "x-forwarded-for", "x-forwarded-proto", "Forwarded", "X-Forwarded-For")


def _client_cannot_move(fdp: atheris.FuzzedDataProvider) -> None:
    """Our proxy saw ``seen``; whatever the client adds, the resolved client stays ``seen``."""
    raw = fdp.ConsumeBytes(16 if fdp.ConsumeBool() else 4)
    try:
        seen = ipaddress.ip_address(raw)
    except ValueError:
        return
    if isinstance(seen, ipaddress.IPv6Address) and seen.ipv4_mapped is not None:
        seen = seen.ipv4_mapped
    if PROXIES.is_trusted(seen):
        return  # one of our own hops: the walk rightly goes on past it
    peer = TRUSTED_PEERS[fdp.ConsumeIntInRange(0, len(TRUSTED_PEERS) - 1)]
    junk = [fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 120)) for _ in range(3)]
    if fdp.ConsumeBool():
        # X-Forwarded-For proxy: it appends what it saw; Forwarded passes through.
        chain = ", ".join([junk[0], str(seen)]) if junk[0] else str(seen)
        headers = [("forwarded", junk[1]), ("x-forwarded-for", chain)]
        client, _ = PROXIES.resolve(peer, "http", headers)
    else:
        # Forwarded proxy: it overwrites Forwarded; X-Forwarded-* pass through.
        node = f'"[{seen}]"' if seen.version == 6 else str(seen)
        headers = [
            ("x-forwarded-for", junk[0]),
            ("forwarded", f"for={node}"),
            ("x-forwarded-proto", junk[1]),
        ]
        client, _ = FORWARDED_PROXIES.resolve(peer, "http", headers)
    if client != str(seen):
        raise AssertionError(f"client header moved the client from {seen} to {client!r}")


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 2) == 0:
        _client_cannot_move(fdp)
        return
    trusted = fdp.ConsumeBool()
    peers = TRUSTED_PEERS if trusted else UNTRUSTED_PEERS
    peer = peers[fdp.ConsumeIntInRange(0, len(peers) - 1)]
    scheme = "https" if fdp.ConsumeBool() else "http"
    headers = []
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        name = NAMES[fdp.ConsumeIntInRange(0, len(NAMES) - 1)]
        headers.append((name, fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 300))))
    client, got_scheme = PROXIES.resolve(peer, scheme, headers)
    if not trusted:
        expected = ""
        try:
            ip = ipaddress.ip_address(peer)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            expected = str(ip)
        except ValueError:
            pass
        if (client, got_scheme) != (expected, scheme):
            raise AssertionError(f"untrusted peer {peer!r} moved by headers to {client!r}")
        return
    if got_scheme not in ("http", "https"):
        raise AssertionError(f"scheme {got_scheme!r}")
    try:
        ipaddress.ip_address(client)
    except ValueError:
        raise AssertionError(f"client {client!r} is not an address") from None


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
