"""Open connections whose session may end while they are open: WebSockets and event streams.

A WebSocket or a ``text/event-stream`` response can stay open for hours, long after its session
was revoked, logged out or timed out, unless something ends it. :class:`Watcher` does: one per
middleware (an application has one per process), holding the open connections by the store key
of their session, and one asyncio task that, every ``check_interval`` seconds while any is open,
asks the store whether each watched session is still live (:func:`~sessionwarden.core.live.
check_live`, the same rules that load a session) and closes the connections of every session
that is not. The check goes through the store, so a revocation made by any process reaches the
connections of every process:

* **Redis**: the read goes to the store's tracked read cache first (``CLIENT TRACKING``,
  :mod:`sessionwarden.stores.tracking`): a session nobody changed is answered from memory, and
  a change any client made (a revocation, a logout, a rotation) has already evicted the entry,
  so the next check reads Redis once and sees it. Healthy sessions cost no round trip.
* **SQLite**: the read is answered from the store's read cache while ``PRAGMA data_version``
  says no connection committed since; otherwise one indexed read.
* **Memory**: a dictionary lookup (one process only).

A session a risk decision flagged to step up (``MonitorPolicy`` action ``"step_up"``) is not
served over its open connections either: every HTTP request of it is refused until the user
signs in again, so the check closes them as it does those of an ended session (reason
``step-up-required``; a WebSocket gets the close reason ``reauthentication required``).

Idle and absolute timeouts are found by the same check (the record's deadlines against the
clock), so no timer per connection is needed; a session the check finds expired is ended as a
request would end it (the expiry's tombstone, the ``session.expired.*`` event). Nothing runs
per message: the connection's own ``send`` and ``receive`` are the server's, untouched.

A check that fails because the store is unreachable closes nothing (a revocation cannot be
written while the store is down either); the sessions are checked again at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .core import Engine, Steps
from .core.live import Liveness, check_live
from .events import EventKind
from .facts import RequestFacts
from .stores import StoreUnavailable

T = TypeVar("T")

#: Runs a core operation against the store (the middleware's :meth:`run`).
Runner = Callable[[Steps[T]], Awaitable[T]]

__all__ = ["Connection", "SessionEnded", "Watcher"]


class SessionEnded(OSError):
    """Raised by ``send`` of an event stream whose session ended (an :class:`OSError`, like a
    disconnected client's, so frameworks stop the stream the same way)."""


class Connection:
    """One open WebSocket or event stream, and how to end it."""

    __slots__ = ("close", "facts", "kind", "lineage", "user_id")

    def __init__(
        self,
        kind: str,
        facts: RequestFacts,
        user_id: str | None,
        close: Callable[[str], Awaitable[None]],
        *,
        lineage: str = "",
    ) -> None:
        self.kind = kind  # "websocket" or "event-stream"
        self.facts = facts
        self.user_id = user_id
        #: The session's lineage (its events' correlation value), the same through rotations.
        self.lineage = lineage
        #: Ends the connection; receives the reason the session ended.
        self.close = close


class Watcher:
    """The open connections of one middleware by session key, and the task that checks them."""

    def __init__(self, engine: Engine, run: Runner[Liveness], interval: float) -> None:
        self.engine = engine
        self._run = run
        self.interval = interval
        self._by_key: dict[str, set[Connection]] = {}
        self._key_of: dict[Connection, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        #: Connections closed because their session ended (tests, metrics).
        self.closed = 0

    def __len__(self) -> int:
        return len(self._key_of)

    def watch(self, key: str, conn: Connection) -> None:
        """Watch ``conn``, open on the session at store key ``key``."""
        self._key_of[conn] = key
        self._by_key.setdefault(key, set()).add(conn)
        task = self._task
        loop = asyncio.get_running_loop()
        if task is None or task.done() or task.get_loop() is not loop:
            self._task = loop.create_task(self._check_forever(), name="sessionwarden-watcher")

    def unwatch(self, conn: Connection) -> None:
        """Stop watching ``conn`` (it closed)."""
        key = self._key_of.pop(conn, None)
        if key is None:
            return
        conns = self._by_key.get(key)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_key[key]

    async def _check_forever(self) -> None:
        while self._key_of:
            await asyncio.sleep(self.interval)
            await self.check()

    async def check(self) -> int:
        """Check every watched session once; close the connections of those that ended.
        Returns how many connections it closed."""
        now = self.engine.clock.now()
        closed = 0
        for key in list(self._by_key):
            try:
                live = await self._run(check_live(self.engine, key, now))
            except StoreUnavailable:
                continue  # checked again at the next interval
            if live.key is None:
                closed += self._end(key, live.reason, now)
            elif live.key != key:
                self._move(key, live.key)
        return closed

    def _move(self, old: str, new: str) -> None:
        """The session was rotated (its old key reaches the new for the grace window)."""
        for conn in self._by_key.pop(old, set()):
            self._key_of[conn] = new
            self._by_key.setdefault(new, set()).add(conn)

    def _end(self, key: str, reason: str, now: float) -> int:
        conns = self._by_key.pop(key, set())
        for conn in conns:
            del self._key_of[conn]
            self.engine.emit(
                EventKind.CONNECTION_CLOSED,
                conn.facts,
                now,
                key=key,
                lineage=conn.lineage,
                user_id=conn.user_id,
                reason=reason,
                detail={"connection": conn.kind},
            )
            # Each close in its own task: a client slow to answer a closing handshake must not
            # delay the others.
            task = asyncio.get_running_loop().create_task(_quietly(conn.close(reason)))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self.closed += len(conns)
        return len(conns)

    async def aclose(self) -> None:
        """Stop the task (the application is shutting down)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _quietly(closing: Awaitable[None]) -> None:
    """A close that fails (the peer went away first) has nothing left to close."""
    with contextlib.suppress(Exception):
        await closing
