"""Trusted reverse proxies, loopback hosts and the HTTPS redirect.

Anyone can send ``X-Forwarded-For: 1.2.3.4``. The header means something only when the machine
that handed us the request is a proxy we run, and even then only the entries our own proxies
appended: everything to the left of the first address they did not vouch for was written by the
client. So the walk goes from the right and stops at the first untrusted hop. Getting this wrong
lets a client pick its own IP, which defeats rate limits and the network-change check that spots a
stolen session.
"""

from __future__ import annotations

import functools
import ipaddress
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from .facts import RequestFacts
from .policy import HttpsPolicy

__all__ = [
    "FORWARDED_HEADERS",
    "UNIX_PEER",
    "Forwarded",
    "TrustedProxies",
    "https_redirect_target",
    "is_loopback_host",
    "is_valid_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
HeaderItems = Mapping[str, str] | Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]]

#: A chain longer than this is not a deployment, it is someone padding a header.
_MAX_HOPS = 32
_SCHEMES = frozenset({"http", "https"})
_REG_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._~")
_IPV6_CHARS = frozenset("0123456789abcdef:.")
# Left untouched in a redirect path: already-encoded octets and URI delimiters.
_PATH_SAFE = "!#$%&'()*+,/:;=?@[]~"


def _parse_ip(text: str) -> IPAddress | None:
    """An address, with IPv4-mapped IPv6 unwrapped so ``::ffff:10.0.0.1`` matches ``10.0.0.0/8``."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _parse_node(node: str) -> IPAddress | None:
    """A forwarded node: ``1.2.3.4``, ``1.2.3.4:80``, ``[2001:db8::1]``, ``[2001:db8::1]:80``, or a
    bare IPv6 address (some proxies write one into X-Forwarded-For). ``unknown``, obfuscated
    identifiers (``_hidden``) and junk are ``None``: they name no address we could act on."""
    node = node.strip()
    if node.startswith("["):
        close = node.find("]")
        rest = node[close + 1 :]
        if close < 0 or (rest and not _valid_port(rest[1:], rest[0])):
            return None
        return _parse_ip(node[1:close])
    if node.count(":") == 1:
        node, _, port = node.partition(":")
        if not _valid_port(port, ":"):
            return None
    return _parse_ip(node)


def _valid_port(port: str, sep: str) -> bool:
    if sep != ":":
        return False
    if port.startswith("_"):  # RFC 7239 obfuscated port
        return len(port) > 1
    return port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535


def _unquote(value: str) -> str | None:
    """An RFC 7230 token or quoted-string; ``None`` for an unterminated or stray quote."""
    value = value.strip()
    if not value.startswith('"'):
        return None if '"' in value else value
    if len(value) < 2 or not value.endswith('"'):
        return None
    out: list[str] = []
    escaped = False
    for ch in value[1:-1]:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            return None
        else:
            out.append(ch)
    return None if escaped else "".join(out)


def _forwarded_element(
    element: str,
) -> tuple[IPAddress | None, str | None, str | None] | None:
    """One ``for=...;proto=...;host=...`` element as (client, proto, host); ``None`` when
    malformed. The host is returned as sent (lower-case): the allowed-hosts check judges it.

    A repeated parameter makes the element malformed: which of two ``for`` values would we believe?
    """
    params: dict[str, str] = {}
    for pair in element.split(";"):
        if not pair.strip():
            continue
        key, sep, raw = pair.partition("=")
        key = key.strip().lower()
        value = _unquote(raw) if sep else None
        if value is None or not key or key in params:
            return None
        params[key] = value
    node = params.get("for")
    proto = params.get("proto")
    host = params.get("host")
    client = _parse_node(node) if node is not None else None
    return (
        client,
        (proto.lower() if proto is not None else None),
        (host.strip().lower() if host is not None else None),
    )


#: The token in ``trusted_proxies`` that trusts a peer without an address: a proxy talking to
#: us over a Unix socket (ASGI ``client`` absent, WSGI ``REMOTE_ADDR`` empty).
UNIX_PEER = "unix"
#: The forwarding headers a trusted proxy may set, by the name the operator gives.
FORWARDED_HEADERS = ("x-forwarded-for", "forwarded")


class Forwarded(NamedTuple):
    """A request as the outermost trusted proxy saw it (``TrustedProxies.resolve_forwarded``)."""

    #: The client address; ``""`` when unknown.
    client_ip: str
    #: ``"http"`` or ``"https"``.
    scheme: str
    #: The ``Host`` the client asked for (``X-Forwarded-Host``, or ``host=`` of ``Forwarded``),
    #: lower-case and not yet validated; ``None`` when no trusted proxy named one.
    host: str | None


class TrustedProxies:
    """The proxies whose forwarding header is believed, and the walk that reads it.

    ``header`` names the one header the trusted proxies set: ``"x-forwarded-for"`` (the
    default; with ``X-Forwarded-Proto`` and ``X-Forwarded-Host``) or ``"forwarded"`` (RFC 7239,
    with its ``proto=`` and ``host=`` parameters). Only that one is read;
    the other is whatever the client sent, passed through, and never believed. The proxy must
    overwrite (or append to, for ``X-Forwarded-For``) the header it is named for, never pass a
    client's copy through untouched as the only value.

    ``cidrs``: addresses or networks of the proxies, and the token ``"unix"`` for a proxy that
    connects over a Unix socket (a peer without an address).

    Elements are split on commas without regard to quotes: our own proxies never put a comma
    inside a quoted value, and a client's unbalanced quote must not be able to swallow the
    elements our proxies appended after it.
    """

    __slots__ = ("_networks", "_unix", "header", "host")

    def __init__(
        self, cidrs: tuple[str, ...], header: str = "x-forwarded-for", *, host: bool = False
    ) -> None:
        networks: list[Network] = []
        for cidr in cidrs:
            if cidr == UNIX_PEER:
                continue
            try:
                networks.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                raise ValueError(
                    f"https.trusted_proxies: {cidr!r} is not an address, a CIDR or {UNIX_PEER!r}"
                ) from None
        self._networks = tuple(networks)
        self._unix = UNIX_PEER in cidrs
        if header.lower() not in FORWARDED_HEADERS:
            raise ValueError(
                f"https.forwarded_header: {header!r} is not one of {', '.join(FORWARDED_HEADERS)}"
            )
        #: The forwarding header read from trusted proxies (lower-case).
        self.header = header.lower()
        #: Whether the host they forward is read (``HttpsPolicy.forwarded_host``).
        self.host = host

    @classmethod
    def from_policy(cls, https: HttpsPolicy) -> TrustedProxies:
        """The proxies and the header of ``Policy.https``."""
        return cls(https.trusted_proxies, https.forwarded_header, host=https.forwarded_host)

    def is_trusted(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self._networks)

    def resolve(self, peer_ip: str, scheme: str, headers: HeaderItems) -> tuple[str, str]:
        """The client address and scheme of :meth:`resolve_forwarded`."""
        forwarded = self.resolve_forwarded(peer_ip, scheme, headers)
        return forwarded.client_ip, forwarded.scheme

    def resolve_forwarded(self, peer_ip: str, scheme: str, headers: HeaderItems) -> Forwarded:
        """The client address, scheme and host as the outermost trusted proxy saw them.

        From an untrusted peer (or with no proxies configured) the forwarding headers are ignored
        and the peer is the client. An unreadable hop (``unknown``, an obfuscated name, junk) ends
        the walk and the peer stands in for the client: the header cannot tell us who it was.
        A peer without an address (``""``: a Unix socket) is trusted only when ``"unix"`` is
        among the proxies; otherwise, and for a ``peer_ip`` that is not an address, it comes
        back as ``""``.

        The host is the one the hop that reported the client's scheme reported with it (read
        like the scheme); ``None`` unless ``host`` was asked for, from an untrusted peer, when no
        trusted proxy sent one, and whenever the scheme is not believed either (an unreadable
        hop).
        """
        if not self.trusts_peer(peer_ip):
            peer = _parse_ip(peer_ip.strip()) if isinstance(peer_ip, str) else None
            return Forwarded(("" if peer is None else str(peer)), scheme, None)
        peer_text = str(_parse_ip(peer_ip.strip()) or "")
        try:
            fields = _collect(headers)
        except (TypeError, ValueError, AttributeError):  # not header pairs at all
            return Forwarded(peer_text, scheme, None)
        if self.header == "forwarded":
            found = self._walk_forwarded(fields.get("forwarded", ""), peer_text, scheme)
        else:
            found = self._walk_x_forwarded(fields, peer_text, scheme)
        return found if self.host else found._replace(host=None)

    def trusts_peer(self, peer_ip: str) -> bool:
        """Whether the direct peer is one of the trusted proxies (``""``, a Unix socket, only
        with ``"unix"`` among them): whether its forwarding headers are read at all."""
        if not isinstance(peer_ip, str):
            return False
        text = peer_ip.strip()
        if not text:
            return self._unix
        peer = _parse_ip(text)
        return peer is not None and bool(self._networks) and self.is_trusted(peer)

    def _walk_forwarded(self, header: str, peer_text: str, scheme: str) -> Forwarded:
        unread = Forwarded(peer_text, scheme, None)
        if not header.strip():
            return unread
        elements = header.rsplit(",", _MAX_HOPS)[-_MAX_HOPS:]
        client: IPAddress | None = None
        host: str | None = None
        for raw in reversed(elements):
            parsed = _forwarded_element(raw)
            if parsed is None:
                return unread
            client, proto, hop_host = parsed
            if client is None:
                return unread
            if proto is not None:
                if proto not in _SCHEMES:
                    return unread
                scheme = proto
            if hop_host is not None:
                host = hop_host
            if not self.is_trusted(client):
                return Forwarded(str(client), scheme, host)
        # Every hop was one of ours: the request started inside; the leftmost is the origin.
        return Forwarded((str(client) if client is not None else peer_text), scheme, host)

    def _walk_x_forwarded(self, fields: dict[str, str], peer_text: str, scheme: str) -> Forwarded:
        protos = _values(fields, "x-forwarded-proto")
        hosts = _values(fields, "x-forwarded-host")
        chain = fields.get("x-forwarded-for", "")
        client_text, hops = peer_text, 0
        if chain.strip():
            entries = chain.rsplit(",", _MAX_HOPS)[-_MAX_HOPS:]
            client: IPAddress | None = None
            for hops, raw in enumerate(reversed(entries)):  # noqa: B007 - read after the loop
                client = _parse_node(raw)
                if client is None:
                    return Forwarded(peer_text, scheme, None)
                if not self.is_trusted(client):
                    break
            client_text = str(client) if client is not None else peer_text
        if protos:
            # Each proxy that appends to X-Forwarded-For appends here too, so the entry in the
            # same position from the right is the client's; a proxy that overwrites leaves one.
            proto = protos[-1 - min(hops, len(protos) - 1)]
            if proto not in _SCHEMES:
                return Forwarded(peer_text, scheme, None)
            scheme = proto
        # X-Forwarded-Host is appended to (or overwritten) alongside X-Forwarded-Proto: the
        # entry in the same position is the one the hop that met the client wrote.
        host = hosts[-1 - min(hops, len(hosts) - 1)] if hosts else None
        return Forwarded(client_text, scheme, host)


def _values(fields: dict[str, str], name: str) -> list[str]:
    """The non-empty comma-separated entries of a forwarding header, lower-case."""
    entries = (v.strip().lower() for v in fields.get(name, "").rsplit(",", _MAX_HOPS)[-_MAX_HOPS:])
    return [v for v in entries if v]


def _collect(headers: HeaderItems) -> dict[str, str]:
    """The forwarding headers, repeated fields joined with commas as RFC 9110 allows."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    wanted = {"forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}
    found: dict[str, list[str]] = {}
    for name, value in items:
        key = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        key = key.lower()
        if key in wanted:
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            found.setdefault(key, []).append(text)
    return {k: ",".join(v) for k, v in found.items()}


# --- Hosts and the HTTPS redirect --------------------------------------------------------------


@functools.lru_cache(maxsize=1024)  # pure; a request's Host is looked at several times
def split_host(host: str) -> tuple[str, str] | None:
    """``host[:port]`` from a Host header into (host, port); ``None`` when it is not valid.

    A reg-name of letters, digits, ``-``, ``.``, ``_`` and ``~`` (RFC 3986 without
    percent-encoding: browsers serialize hosts this way, IDNs as punycode, so anything else is a
    forgery or a broken client), an IPv4 address, or a bracketed IPv6 address, then an optional
    decimal port. Used for Host headers and for the host of an Origin.
    """
    host = host.strip().lower()
    if not host or len(host) > 255 + 6 or not host.isascii():
        return None
    parts = _split_v6_literal(host) if host.startswith("[") else _split_reg_name(host)
    if parts is None:
        return None
    name, port = parts
    if port is not None and (not port.isdigit() or len(port) > 5 or int(port) > 65535):
        return None
    return name, port or ""


def _split_v6_literal(host: str) -> tuple[str, str | None] | None:
    """``[v6]`` and ``[v6]:port`` into (``[v6]``, port or ``None`` when there is no colon)."""
    close = host.find("]")
    if close < 0 or not _IPV6_CHARS.issuperset(host[1:close]):
        return None
    name, rest = host[: close + 1], host[close + 1 :]
    if _parse_v6(name[1:-1]) is None or (rest and not rest.startswith(":")):
        return None
    return name, rest[1:] if rest else None


def _split_reg_name(host: str) -> tuple[str, str | None] | None:
    """``name`` and ``name:port`` into (name, port or ``None`` when there is no colon)."""
    name, colon, port = host.partition(":")
    if not name or not _REG_NAME.issuperset(name):
        return None
    return name, port if colon else None


def _parse_v6(text: str) -> ipaddress.IPv6Address | None:
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


#: What ``config.proxy_headers_ignored`` says.
PROXY_HINT = (
    "forwarding headers (X-Forwarded-*, Forwarded) came from a peer that is not in "
    "HttpsPolicy.trusted_proxies and were ignored: the request counts as the peer's own, over "
    "the peer's scheme. Behind a reverse proxy, add its address to trusted_proxies (otherwise "
    "every request looks like plain HTTP and is redirected or served without a session); "
    "without one, a client forged them."
)


def is_valid_host(host: str) -> bool:
    """Whether a Host header value is well formed.

    RFC 9112 asks for a 400 on an invalid Host, and nothing (a redirect, an absolute URL) should be
    built from one; adapters check this once, before anything else reads ``facts.host``.
    """
    return split_host(host) is not None


@functools.lru_cache(maxsize=1024)  # pure; parsing an address costs microseconds
def is_loopback_host(host: str) -> bool:
    """Whether a Host header names this machine: ``localhost``, ``*.localhost``, ``127.0.0.0/8``,
    ``[::1]``, with or without a port. Browsers treat these as secure contexts over plain HTTP
    (and ``*.localhost`` never leaves the machine), so local development needs no certificate."""
    parts = split_host(host)
    if parts is None:
        return False
    name = parts[0].removesuffix(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    ip = _parse_ip(name[1:-1] if name.startswith("[") else name)
    return ip is not None and ip.is_loopback


def https_redirect_target(
    facts: RequestFacts, raw_path_with_query: str, policy: HttpsPolicy
) -> str | None:
    """Where to send a plain-HTTP request (a 308 keeps the method and body), or ``None``.

    ``None`` when the request is already HTTPS, redirects are off, or the host is loopback and
    loopback HTTP is allowed. Also ``None`` for an invalid Host: a redirect must never point at a
    host we could not parse. Adapters reject those with 400 first (:func:`is_valid_host`), so
    that ``None`` here never means "serve over HTTP" for them.

    The port of the Host is kept except ``:80``: a non-default HTTP port says nothing about where
    HTTPS listens, and guessing 443 could send the client somewhere nobody configured.
    """
    if not policy.redirect or facts.scheme == "https":
        return None
    if policy.allow_loopback_http and is_loopback_host(facts.host):
        return None
    parts = split_host(facts.host)
    if parts is None:
        return None
    name, port = parts
    authority = name if port in ("", "80") else f"{name}:{port}"
    path = raw_path_with_query if raw_path_with_query.startswith("/") else "/"
    # Percent-encode whatever could break the Location header or the URL (CR, LF, spaces, quotes).
    path = urllib.parse.quote(path, safe=_PATH_SAFE, errors="surrogatepass")
    return f"https://{authority}{path}"
