"""The two small pieces of shared state the core keeps across requests.

:class:`OutageGate` remembers whether the store is failing, so an outage is reported once, not on
every request; :class:`UnknownIdThrottle` counts the unknown session IDs each client presents, so
ID guessing is throttled. Both are thread-safe (a WSGI server's threads share them).
"""

from __future__ import annotations

import ipaddress
import threading
from collections import OrderedDict
from dataclasses import dataclass

from .scoring import IP_SCAN_LIMIT, V4_PREFIX, parse_ip, prefix_of

__all__ = ["THROTTLE_WINDOW", "OutageGate", "UnknownIdThrottle"]

#: Unknown-ID throttling keys IPv6 clients by /64: one subscriber owns at least a /64, so a
#: per-address limit would be bypassed by rotating through it.
_V6_CLIENT_PREFIX = 64

# --------------------------------------------------------------------------------------------
# Store outage reporting
# --------------------------------------------------------------------------------------------


class OutageGate:
    """Remembers whether the store is failing, so an outage is reported once, not per request.

    During an outage every request fails the same way; a ``store.unavailable`` event each time
    would flood logs and alerting exactly when an operator needs them readable. Shared between
    the threads of a WSGI server, hence the lock.
    """

    __slots__ = ("_down_since", "_lock", "failing")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None
        #: Whether an outage is in progress. Read without the lock so the healthy path (every
        #: request) costs no lock; it is a hint, :meth:`success` decides under the lock.
        self.failing = False

    def failure(self, now: float) -> bool:
        """Record a failed store call; ``True`` when this starts an outage (emit the event)."""
        with self._lock:
            if self._down_since is not None:
                return False
            self._down_since = now
            self.failing = True
            return True

    def success(self) -> bool:
        """Record a working store call; ``True`` when this ends an outage (emit recovered)."""
        with self._lock:
            if self._down_since is None:
                return False
            self._down_since = None
            self.failing = False
            return True

    @property
    def down_since(self) -> float | None:
        """When the current outage started, ``None`` while the store works."""
        with self._lock:
            return self._down_since


# --------------------------------------------------------------------------------------------
# Unknown-ID throttling
# --------------------------------------------------------------------------------------------

THROTTLE_WINDOW = 60.0


@dataclass(slots=True)
class _Window:
    start: float
    count: int


def _client_key(ip: str) -> str:
    """The unit a limit applies to: an IPv4 address or an IPv6 /64 (see ``_V6_CLIENT_PREFIX``)."""
    addr = parse_ip(ip)
    if addr is None:
        return ip.strip()[:IP_SCAN_LIMIT]
    if isinstance(addr, ipaddress.IPv4Address):
        return str(addr)
    return prefix_of(addr, V4_PREFIX, _V6_CLIENT_PREFIX)


class UnknownIdThrottle:
    """Counts unknown session IDs per client in fixed one-minute windows.

    Why: a client presenting many IDs the store has never issued is guessing (or replaying a
    dump). 256-bit IDs make guessing hopeless anyway; the limit keeps it from also costing a
    store look-up per guess and makes it visible. A fixed window is enough here: its worst case
    (twice the limit across a window boundary) is still negligible against 2**256.

    Memory is bounded: at most ``max_tracked`` clients are remembered; beyond that the client
    whose window started first is forgotten (expired windows go first). Clients with no known
    address (``""``) are not throttled, because they would all share one bucket and one guesser
    would lock everybody out. ``limit_per_minute=0`` disables throttling. Thread-safe.
    """

    __slots__ = ("_limit", "_lock", "_max", "_windows")

    def __init__(self, limit_per_minute: int, *, max_tracked: int = 10_000) -> None:
        if limit_per_minute < 0:
            raise ValueError("limit_per_minute: must be >= 0 (0 disables)")
        if max_tracked < 1:
            raise ValueError("max_tracked: must be >= 1")
        self._limit = limit_per_minute
        self._max = max_tracked
        self._lock = threading.Lock()
        # Ordered by window start (oldest first), so expiry and eviction both pop from the front.
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def _expire(self, now: float) -> None:
        windows = self._windows
        while windows:
            first = next(iter(windows.values()))
            if now - first.start < THROTTLE_WINDOW:
                break
            windows.popitem(last=False)

    def hit(self, ip: str, now: float) -> bool:
        """Count one unknown-ID presentation; ``True`` when the client is over the limit (429)."""
        if self._limit == 0:
            return False
        key = _client_key(ip)
        if not key:
            return False
        with self._lock:
            self._expire(now)
            window = self._windows.get(key)
            if window is None or now - window.start >= THROTTLE_WINDOW:
                window = _Window(now, 0)
                self._windows[key] = window
                self._windows.move_to_end(key)
                while len(self._windows) > self._max:
                    self._windows.popitem(last=False)
            window.count += 1
            return window.count > self._limit

    def blocked(self, ip: str, now: float) -> bool:
        """``True`` while the client's current window is over the limit, without counting."""
        if self._limit == 0:
            return False
        key = _client_key(ip)
        if not key:
            return False
        with self._lock:
            window = self._windows.get(key)
            return (
                window is not None
                and now - window.start < THROTTLE_WINDOW
                and window.count > self._limit
            )

    def __len__(self) -> int:
        """How many clients are tracked (bounded by ``max_tracked``)."""
        with self._lock:
            return len(self._windows)
