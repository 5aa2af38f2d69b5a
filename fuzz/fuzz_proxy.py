"""Fuzz ``proxy.TrustedProxies.resolve`` with hostile Forwarded / X-Forwarded-* headers.

Properties:

* it never raises;
* from an UNTRUSTED peer the headers are ignored: the answer is exactly the peer and the scheme it
  was given, whatever the headers say;
* from a trusted peer the scheme is the given one, ``http`` or ``https`` and nothing else, and the
  client is the peer or a parseable IP address (never arbitrary header text).
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
TRUSTED_PEERS = ("10.0.0.1", "127.0.0.1", "fd00::5", "::ffff:10.1.2.3")
UNTRUSTED_PEERS = ("203.0.113.9", "2001:db8::1", "192.168.1.1", "", "not-an-ip", "::1")
NAMES = ("forwarded", "x-forwarded-for", "x-forwarded-proto", "Forwarded", "X-Forwarded-For")


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
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
