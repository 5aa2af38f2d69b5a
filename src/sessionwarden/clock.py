"""Time, injected.

Every rule that depends on time (idle and absolute timeouts, touch coalescing, rotation, grace
windows, tombstone lifetimes) reads it from a :class:`Clock`, so tests move time instead of
sleeping and a worker's clock can be stepped on purpose to prove the rules hold.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Anything with a ``now()`` returning POSIX seconds as a float."""

    def now(self) -> float: ...


class SystemClock:
    """Wall-clock time (``time.time``): the default outside tests."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to; for tests and simulations."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move forward (or, with a negative value, backward: a clock step)."""
        self._now += seconds

    def set(self, when: float) -> None:
        self._now = float(when)
