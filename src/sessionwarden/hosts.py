"""Which ``Host`` values an application answers to (:attr:`Policy.allowed_hosts`).

A request for a host the operator did not name gets 400 before anything reads its Host: a
redirect, an absolute URL or a password-reset link built from an attacker's Host would point at
the attacker. With nothing configured only loopback hosts are served, so a development server
reachable from a network does not answer to any name a client makes up.
"""

from __future__ import annotations

import functools

from .proxy import is_loopback_host, split_host

__all__ = ["HOW_TO_ALLOW", "HostCheck"]

#: What the 400 and the start-up event say.
HOW_TO_ALLOW = (
    "this host is not in Policy.allowed_hosts; add it (e.g. "
    "Policy(..., allowed_hosts=('app.example.com',)), '.example.com' for a domain and its "
    "subdomains). With nothing configured only loopback hosts are served."
)


class HostCheck:
    """The policy's allowed hosts, matched against a request's Host (port ignored)."""

    __slots__ = ("_any", "_domains", "_exact", "allowed")

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self._any = "*" in allowed
        self._exact = frozenset(h for h in allowed if not h.startswith(".") and h != "*")
        self._domains = tuple(h for h in allowed if h.startswith("."))
        self.allowed = functools.lru_cache(maxsize=256)(self._allowed)

    def _allowed(self, host: str) -> bool:
        parts = split_host(host)
        if parts is None:
            return False
        if self._any:
            return True
        name = parts[0].rstrip(".")
        if not self._exact and not self._domains:
            return is_loopback_host(host)
        if name in self._exact:
            return True
        return any(name == d[1:] or name.endswith(d) for d in self._domains)
