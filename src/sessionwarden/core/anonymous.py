"""A per-client bound on stored anonymous sessions that hold nothing but a CSRF secret.

Every cookieless view of a login page asks for a CSRF token, which needs a stored anonymous
session. Without a bound, a client looping on that page adds a row (a key) per request. The
ledger remembers, per client address (an IPv6 client by its /64, which one host usually owns
whole), the most recent token-only sessions it created in this process; beyond the cap, the
oldest are handed back for deletion. A session that has since gained data or a user is never
deleted (the engine checks before it deletes). Memory is bounded too: the least recently seen
clients are forgotten beyond ``max_clients``.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import OrderedDict, deque

__all__ = ["AnonymousLedger", "client_bucket"]


def client_bucket(client_ip: str) -> str:
    """The address a client is counted under: IPv4 as is, IPv6 by its /64."""
    if ":" not in client_ip:
        return client_ip
    try:
        net = ipaddress.IPv6Network(f"{client_ip}/64", strict=False)
    except ValueError:
        return client_ip
    return str(net.network_address)


class AnonymousLedger:
    """The token-only anonymous sessions each client created recently (thread-safe)."""

    __slots__ = ("_clients", "_lock", "cap", "max_clients")

    def __init__(self, cap: int, max_clients: int = 4096) -> None:
        self.cap = cap
        self.max_clients = max_clients
        self._clients: OrderedDict[str, deque[str]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, client_ip: str, key: str) -> list[str]:
        """Record a new token-only session of ``client_ip``; returns the keys over the cap
        (oldest first), which the caller deletes if they are still token-only."""
        if self.cap <= 0:
            return []
        bucket = client_bucket(client_ip)
        with self._lock:
            keys = self._clients.get(bucket)
            if keys is None:
                keys = self._clients[bucket] = deque()
                if len(self._clients) > self.max_clients:
                    self._clients.popitem(last=False)
            else:
                self._clients.move_to_end(bucket)
            keys.append(key)
            evicted: list[str] = []
            while len(keys) > self.cap:
                evicted.append(keys.popleft())
            return evicted
