"""A local read cache for the Redis stores, kept exact by Redis' own invalidation messages.

A steady-state request reads its session and changes nothing. Without a cache, every such read is
a network round trip, by far the largest cost of a request. With Redis' server-assisted
client-side caching (``CLIENT TRACKING``, Redis 6 or later) a process may keep what it read,
because Redis tells it when any client changes a key:

* Each store opens one extra connection per process, the *feed*, which only subscribes to
  ``__redis__:invalidate``. Each of the store's lean connections (the ones that read and run the
  write scripts, :mod:`.resp`) registers itself with
  ``CLIENT TRACKING ON REDIRECT <feed id> NOLOOP`` before its first command. Redis then
  remembers every key such a connection reads (also inside a script) and sends the feed the
  name of the key when any *other* client modifies it (write, delete, expiry, eviction), once
  per read; and a flush notice on ``FLUSHDB``/``FLUSHALL``. Redis keeps this state per key (at
  most ``tracking-table-max-keys``; beyond that it announces keys as changed to forget them,
  which only costs misses).
* ``NOLOOP``: what a lean connection writes itself is not announced back to this process, so a
  write keeps its own result: the update script ends by reading the hash it wrote and answers
  with it (so the key stays tracked), and the store keeps that record
  (:meth:`ReadCache.written`); the next read of that session in this process costs no round
  trip. Every other write of this process evicts the keys it touched as soon as it returns
  (read your writes). Other processes read this process's writes: the store returns from a
  write only once Redis has sent the notices it caused (a ``PING`` after the script; see
  ``READ_ONLY_SCRIPTS`` in :mod:`.redis`). Writes from two lean connections of one process
  (two threads, two event loops) still announce each other's, since ``NOLOOP`` only silences
  the writing connection.
  (Broadcast mode, ``BCAST``, would need no per-key state in Redis, but Redis 7.0 attributes a
  script's writes to the script, not to the connection that ran it, so ``NOLOOP`` would not
  silence them.)
* Nothing is served from the cache unless a lean connection is registered with the feed that
  is connected now, and when any registered connection fails or closes, everything kept goes
  (Redis stops announcing the keys that connection read). An asyncio connection learns of its
  end at once (the event loop reports it); a synchronous store's per-thread connection learns
  of it when it is next used, so if Redis drops one (``CLIENT KILL`` of normal clients; the
  ``timeout`` setting only drops connections idle far longer than an entry lives) while the
  feed stays up, what that thread read may be served without its notices until then, and never
  past ``ttl``.
* **A cache hit first drains the feed** (a non-blocking read of the socket) unless it was
  drained less than :data:`DRAIN_INTERVAL` (1 ms) ago: the read is a system call, a few
  microseconds, and under load hits come far more often than once a millisecond. A change Redis
  has announced to this host is therefore applied at most 1 ms after its notice arrived: a
  revocation made by another process reaches this one within the network delay between Redis
  and this host plus that millisecond.
* **Tickets.** A read or write whose reply may be kept takes a ticket for its key
  (:meth:`ReadCache.begin`) before it is sent and ends it after (:meth:`~ReadCache.complete`,
  :meth:`~ReadCache.written`, also when it failed or was cancelled). Operations on one key under
  way at once share a ticket, which counts them and is deleted when the last ends (so made-up
  session IDs leave nothing behind). A change of the key announced by the feed, or made by this
  process without keeping its result (:meth:`~ReadCache.evict`), *retires* the ticket: no reply
  of an operation issued before it is kept, and later operations take a new one. A reply under a
  ticket still current is kept, and replaces what an earlier one kept. That is exact because of
  the order replies are applied in:

  - On one connection (the async store's one pipelined connection per event loop, the
    synchronous store's one per thread: a ticket's *lane*), replies arrive in the order Redis
    executed the commands, and each is applied as it arrives, so the reply applied last is the
    newest state.
  - Across connections arrival order is not execution order. A reply kept from one connection
    may predate a change by *another client* executed after it; Redis announces that change,
    since the reading connection tracks the key (``NOLOOP`` silences only the writer's own), so
    it is covered by the bound above: when its notice is applied the entry goes. A change made by
    *this process* on another connection is not left to its notice (the acknowledged write must
    be seen at once): a write whose ticket was shared with another lane retires it when it
    keeps its reply, so no reply that may predate the write is kept after it. A failed or
    cancelled write (which may still run) retires its ticket whatever its lane.
* A write that keeps its result takes a ticket too: if a notice for the key arrives between
  sending the write and applying its reply (another client wrote it meanwhile), nothing is kept.
* Fail safe: while the feed is not connected nothing is cached or served from the cache. When it
  breaks (closed, reset, protocol error), the whole cache is dropped; it reconnects in a
  background thread, never blocking a request. A feed that goes silent (a network failure
  without a reset) is caught by a heartbeat: when a cache hit finds the feed quiet for
  :data:`HEARTBEAT` seconds it sends a ``PING``; if no answer comes within the store's timeout
  the feed counts as broken. Every entry also lives at most ``ttl`` seconds. So in the worst
  case (a silent network failure) a value is served at most ``min(ttl, HEARTBEAT + timeout)``
  seconds after the change.
* Fork safe: a child process drops the parent's feed and cache and opens its own.

Only session hashes (``<prefix>s:<key>``) are cached; entries hold decoded records, and every hit
returns the kept record itself: callers never change a record (the core copies first, a session
copies the lists and dicts it hands to the application), so none is copied per hit.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from ..records import Lookup, SessionRecord
from .resp import RespError, encode

try:
    import hiredis
except ImportError:  # pragma: no cover - the redis extra installs it
    hiredis = None  # type: ignore[assignment]

__all__ = ["DRAIN_INTERVAL", "HEARTBEAT", "MISS", "CacheStats", "InvalidationFeed", "ReadCache"]

#: Seconds of silence on the feed after which a cache hit sends a PING.
HEARTBEAT: Final = 1.0
#: Seconds a cache hit may go without reading the feed's socket: a change announced to this
#: process is applied at most this long after its notice arrived (reads that fill the cache and
#: :meth:`ReadCache.barrier` always read it).
DRAIN_INTERVAL: Final = 0.001
#: Seconds between attempts to reconnect a broken feed.
RECONNECT_DELAY: Final = 1.0
_CHANNEL: Final = b"__redis__:invalidate"


#: Forks this process has been through (a counter instead of ``os.getpid()``, a system call,
#: on every cache hit).
_forks = 0
#: Every read cache of this process (a lock held by another thread at fork time would stay held
#: in the child forever, so each gets a new one there).
_live_caches: weakref.WeakSet[ReadCache] = weakref.WeakSet()


def _count_fork() -> None:
    global _forks
    _forks += 1
    for cache in list(_live_caches):
        cache._after_fork()


os.register_at_fork(after_in_child=_count_fork)


class _Miss:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"


#: What :meth:`ReadCache.lookup` returns when it has nothing to serve.
MISS: Final = _Miss()


def _fresh(value: Lookup) -> Lookup:
    """A copy the caller may change (aliases and tombstones are immutable)."""
    return value.copy() if isinstance(value, SessionRecord) else value


class InvalidationFeed:
    """The feed connection: Redis' invalidation messages for the keys the registered connections
    read (``key_prefix`` names the session hashes among them).

    Not thread-safe by itself: :class:`ReadCache` calls it under its lock.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        *,
        key_prefix: str,
        timeout: float,
        on_keys: Callable[[list[bytes] | None], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if hiredis is None:  # pragma: no cover - the redis extra installs it
            raise RuntimeError("the read cache needs the hiredis package")
        self._address = (host, port)
        self._auth = (
            None
            if password is None
            else [b"AUTH", *([username.encode()] if username else []), password.encode()]
        )
        self._key_prefix = key_prefix.encode()
        self._timeout = timeout
        self._on_keys = on_keys
        self._now = monotonic
        self._sock: socket.socket | None = None
        self._poller: Any = None
        self._reader: Any = None
        self._forks = _forks
        self._connecting = False
        self._next_attempt = 0.0
        self._last_heard = 0.0
        self._ping_sent: float | None = None
        self._drained = float("-inf")  # when the socket was last read for notices
        self._closed = False
        self._wake = threading.Condition(threading.Lock())
        #: Times the feed connected, and its Redis client ID (tests and diagnostics).
        self.connects = 0
        self.client_id: int | None = None

    # -- state --------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._sock is not None and self._forks == _forks

    def ready(self, *, drain: bool = False) -> bool:
        """Apply the announced changes; ``True`` when the feed is connected and trusted.

        The socket is read at most once per :data:`DRAIN_INTERVAL` (a read is a system call,
        the largest cost of a cache hit otherwise); ``drain=True`` reads it now whatever the
        interval.
        """
        if self._forks != _forks:
            self._forget_after_fork()
        sock = self._sock
        if sock is None:
            self._maybe_reconnect()
            return False
        now = self._now()
        if not drain and now - self._drained < DRAIN_INTERVAL:
            if self._ping_sent is None and now - self._last_heard < HEARTBEAT:
                return True  # (the common case of _heartbeat, inline)
            return self._heartbeat(sock, now)
        self._drained = now
        poller = self._poller
        if poller is not None and not poller.poll(0):
            return self._heartbeat(sock, now)  # nothing arrived (a poll is ~4x cheaper than recv)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    self._break()
                    return False
                self._reader.feed(data)
                self._last_heard = self._now()
                self._ping_sent = None
                if not self._dispatch():
                    return False
        except BlockingIOError:
            pass
        except OSError:
            self._break()
            return False
        return self._heartbeat(sock, self._now())

    def _dispatch(self) -> bool:
        reader = self._reader
        while True:
            try:
                reply = reader.gets()
            except Exception:  # a protocol error: nothing after it can be trusted
                self._break()
                return False
            if reply is False:
                return True
            if isinstance(reply, hiredis.ReplyError):
                self._break()
                return False
            self._apply(reply)

    def _apply(self, reply: Any) -> bool:
        """Act on one message from the feed; ``True`` when it was the answer to a PING (a
        proof of life and nothing else)."""
        if isinstance(reply, list) and len(reply) == 3 and reply[:2] == [b"message", _CHANNEL]:
            payload = reply[2]
            self._on_keys(list(payload) if isinstance(payload, list) else None)
            return False
        return True

    def _heartbeat(self, sock: socket.socket, now: float) -> bool:
        if self._ping_sent is not None:
            if now - self._ping_sent > self._timeout:
                self._break()
                return False
            return True
        if now - self._last_heard >= HEARTBEAT:
            try:
                sock.send(encode(b"PING"))
            except OSError:
                self._break()
                return False
            self._ping_sent = now
        return True

    def _break(self) -> None:
        """Drop the connection and everything cached under it."""
        sock, self._sock = self._sock, None
        self._poller = None
        self._reader = None
        self._ping_sent = None
        if sock is not None:
            sock.close()
        self._on_keys(None)
        self._next_attempt = self._now() + RECONNECT_DELAY

    def _forget_after_fork(self) -> None:
        # The parent's socket is shared with the parent: close our copy only (never shutdown).
        sock, self._sock = self._sock, None
        self._poller = None
        if sock is not None:
            sock.close()
        self._reader = None
        self._ping_sent = None
        self._connecting = False
        self._next_attempt = 0.0
        self._forks = _forks
        self._wake = threading.Condition(threading.Lock())
        self._on_keys(None)

    # -- connecting (in a background thread, never on a request's path) -------------------------

    def _maybe_reconnect(self) -> None:
        if self._closed or self._connecting or self._now() < self._next_attempt:
            return
        self._connecting = True
        threading.Thread(target=self._connect, name="sessionwarden-feed", daemon=True).start()

    def _connect(self) -> None:
        sock: socket.socket | None = None
        try:
            sock = socket.create_connection(self._address, timeout=self._timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = hiredis.Reader()
            if self._auth is not None:
                _expect(sock, reader, self._auth, b"OK")
            client_id = _call(sock, reader, [b"CLIENT", b"ID"])
            if not isinstance(client_id, int):
                raise RespError("unexpected reply type")
            reply = _call(sock, reader, [b"SUBSCRIBE", _CHANNEL])
            if not (isinstance(reply, list) and reply[:1] == [b"subscribe"]):
                raise RespError("subscribe refused")
            sock.setblocking(False)
        except (OSError, RespError):
            if sock is not None:
                sock.close()
            with self._wake:
                self._connecting = False
                self._next_attempt = self._now() + RECONNECT_DELAY
                self._wake.notify_all()
            return
        with self._wake:
            self._connecting = False
            if self._closed or self._forks != _forks:
                sock.close()
            else:
                self._reader = reader
                self._poller = _poller_for(sock)
                self.client_id = client_id
                self._last_heard = self._now()
                self._ping_sent = None
                self._sock = sock  # last: ready() reads the socket without this lock
                self.connects += 1
            self._wake.notify_all()

    def wait_connected(self, timeout: float) -> bool:
        """Start connecting if needed and wait up to ``timeout`` seconds for the feed."""
        deadline = time.monotonic() + timeout
        with self._wake:
            if self._sock is None and not self._connecting:
                self._next_attempt = 0.0  # at once, whatever the last failure
            while self._sock is None:
                self._maybe_reconnect()  # no sooner than RECONNECT_DELAY after a failure
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, RECONNECT_DELAY))
        return True

    def barrier(self) -> None:
        """Block until every change Redis made before this call has been applied here (a PING
        on the feed: its answer follows every message queued before it)."""
        sock, reader = self._sock, self._reader
        if sock is None:
            return
        sock.setblocking(True)
        sock.settimeout(self._timeout)
        try:
            sock.sendall(encode(b"PING"))
            while True:
                reply = reader.gets()
                if reply is False:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("closed")
                    reader.feed(data)
                    continue
                if self._apply(reply):
                    break  # the pong
            self._last_heard = self._now()
            self._ping_sent = None
        except OSError:
            self._break()
            return
        sock.setblocking(False)

    def close(self) -> None:
        self._closed = True
        sock, self._sock = self._sock, None
        self._poller = None
        if sock is not None and self._forks == _forks:
            sock.close()


def _poller_for(sock: socket.socket) -> Any:
    """A poll object watching ``sock`` (``None`` where the platform has no ``poll``)."""
    if not hasattr(select, "poll"):  # pragma: no cover - Windows
        return None
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return poller


def _call(sock: socket.socket, reader: Any, args: list[bytes]) -> Any:
    sock.sendall(encode(*args))
    while True:
        reply = reader.gets()
        if reply is not False:
            if isinstance(reply, hiredis.ReplyError):
                raise RespError("error reply " + str(reply).split(" ", 1)[0][:16])
            return reply
        data = sock.recv(65536)
        if not data:
            raise RespError("connection lost")
        reader.feed(data)


def _expect(sock: socket.socket, reader: Any, args: list[bytes], want: bytes) -> None:
    if _call(sock, reader, args) != want:
        raise RespError("connection setup refused")


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A read cache's counters since it was made (for metrics: ``PrometheusSink.watch``)."""

    hits: int
    misses: int
    entries: int
    #: Whether the notice connection is up (while it is down nothing is served from the cache).
    connected: bool
    #: Times the notice connection was (re)established.
    connects: int
    #: Keys with a read or write under way (tickets, see :meth:`ReadCache.begin`).
    pending: int = 0


_MIXED: Final = object()


class _Pending:
    """A ticket: the operations on one key under way since its last change (announced, or made
    by this process), and the lane they go over (:data:`_MIXED` when more than one)."""

    __slots__ = ("count", "lane")

    def __init__(self, lane: Hashable | None) -> None:
        self.count = 0
        self.lane: object = _MIXED if lane is None else lane


class ReadCache:
    """Decoded session lookups by Redis key, served only while the feed vouches for them.

    ``ttl`` bounds how long one entry lives; ``size`` how many are kept (the oldest go first).
    Safe to share between threads and event loops.
    """

    def __init__(
        self,
        feed: Callable[[Callable[[list[bytes] | None], None]], InvalidationFeed],
        *,
        ttl: float,
        size: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or size <= 0:
            raise ValueError("ttl and size must be positive")
        self._ttl = ttl
        self._size = size
        self._now = monotonic
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Lookup]] = {}
        self._pending: dict[str, _Pending] = {}
        #: Lean connections registered for notices, and the feed ID each redirects to.
        self._writers: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()
        #: The feed ID at least one registered connection redirects to (else ``None``).
        self._live_for: int | None = None
        self.feed = feed(self._invalidated)
        _live_caches.add(self)
        #: Lookups answered from the cache and lookups that were not (tests, metrics).
        self.hits = 0
        self.misses = 0

    def _after_fork(self) -> None:
        # A lock held by another thread at fork time would stay held in the child forever.
        self._lock = threading.Lock()
        self._writers = weakref.WeakKeyDictionary()  # the parent's connections
        self._live_for = None
        self._pending = {}  # the parent's threads' operations never end here

    # -- registration of the lean connections (resp.Tracker) -----------------------------------

    def wanted(self) -> int | None:
        """The feed's client ID while it is connected: where notices must be redirected."""
        feed = self.feed
        return feed.client_id if feed.connected else None

    def commands(self, feed_id: int) -> list[bytes]:
        """Registration of a lean connection: any earlier one off, then ``NOLOOP`` tracking."""
        return [
            encode(b"CLIENT", b"TRACKING", b"OFF"),
            encode(
                b"CLIENT", b"TRACKING", b"ON", b"REDIRECT", str(feed_id).encode(), b"NOLOOP",
            ),
        ]  # fmt: skip

    def registered(self, conn: object, feed_id: int) -> None:
        with self._lock:
            self._writers[conn] = feed_id
            if feed_id == self.feed.client_id:
                self._live_for = feed_id

    def unregistered(self, conn: object) -> None:
        """``conn`` no longer carries a registration: Redis no longer announces changes of
        what it read, so everything kept goes."""
        with self._lock:
            self._writers.pop(conn, None)
            current = self.feed.client_id
            if current is None or current not in self._writers.values():
                self._live_for = None
            self._entries.clear()
            self._pending.clear()

    def _trusted(self) -> bool:
        """Under the lock: the feed applied what arrived and notices are flowing to it."""
        return self.feed.ready() and self._live_for == self.feed.client_id

    def _invalidated(self, keys: list[bytes] | None) -> None:
        # Called by the feed, always under self._lock (ready(), barrier(), close paths).
        if keys is None:
            self._entries.clear()
            self._pending.clear()
            return
        entries, pending = self._entries, self._pending
        for raw in keys:
            name = raw.decode("utf-8", "replace")
            entries.pop(name, None)
            pending.pop(name, None)

    def lookup(self, name: str) -> Lookup | _Miss:
        """The cached lookup for Redis key ``name`` (the kept object itself), or :data:`MISS`."""
        with self._lock:
            if not self._trusted():  # first: what it applies may remove the entry
                self.misses += 1
                return MISS
            entry = self._entries.get(name)
            if entry is None or entry[0] <= self._now():
                self.misses += 1
                return MISS
            self.hits += 1
        return entry[1]  # shared: callers never change a record (see SessionStore.get)

    def stats(self) -> CacheStats:
        return CacheStats(
            hits=self.hits,
            misses=self.misses,
            entries=len(self._entries),
            connected=self.feed.connected,
            connects=self.feed.connects,
            pending=len(self._pending),
        )

    def begin(self, name: str, lane: Hashable | None = None) -> _Pending | None:
        """A ticket for an operation on ``name`` about to be sent (``None``: do not cache what
        it returns). Every ticket must be ended by :meth:`complete` or :meth:`written`, also when
        the operation fails.

        ``lane`` names the connection the operation goes over (the event loop of the async
        store's pipelined connection, the thread of the synchronous store's): replies on one
        lane are applied in the order Redis executed their commands. ``None``: unknown."""
        with self._lock:
            if not self.feed.connected or self._live_for != self.feed.client_id:
                return None
            ticket = self._pending.get(name)
            if ticket is None:
                ticket = self._pending[name] = _Pending(lane)
            elif lane is None or ticket.lane != lane:
                ticket.lane = _MIXED
            ticket.count += 1
            return ticket

    def _end(self, name: str, ticket: _Pending) -> bool:
        """Under the lock: one operation of ``ticket`` is over; ``True`` when no change of
        ``name`` was announced (or made by this process) since the ticket was issued."""
        ticket.count -= 1
        if self._pending.get(name) is not ticket:
            return False  # retired: a change since it was issued
        if ticket.count == 0:
            del self._pending[name]
        return True

    def complete(self, name: str, ticket: _Pending | None, value: Lookup) -> None:
        """After a read of ``name`` (``value`` ``None`` when it failed or found nothing): keep
        ``value`` unless a change was announced since :meth:`begin`."""
        if ticket is None:
            return
        with self._lock:
            self.feed.ready(drain=True)  # apply what arrived while the read was on the wire
            if not self._end(name, ticket) or value is None:
                return  # unknown keys are not kept (an attacker could fill the cache)
            entries = self._entries
            if len(entries) >= self._size and name not in entries:
                del entries[next(iter(entries))]
            entries[name] = (self._now() + self._ttl, _fresh(value))

    def written(self, name: str, ticket: _Pending | None, value: Lookup) -> None:
        """After this process wrote ``name`` over a registered connection (whose own writes
        are not announced back), also when the write failed (``value`` ``None``): keep
        ``value``, what the write left, unless another change of ``name`` was announced since
        :meth:`begin`; otherwise forget the key. Replies still to come of other lanes may
        hold what preceded this write, so unless every operation under way on the key is on
        this write's lane (and the write succeeded), their tickets are retired. ``value`` is
        kept as is: the store decoded it from the write's reply and hands it to nobody else."""
        with self._lock:
            self._entries.pop(name, None)
            if ticket is None:
                self._pending.pop(name, None)
                return
            self.feed.ready(drain=True)  # apply what arrived while the write was on the wire
            current = self._end(name, ticket)
            if not current or value is None or ticket.lane is _MIXED:
                # Retire what was issued before: replies of other lanes, or (a failed or
                # cancelled write may still run) of this one, may hold what preceded it.
                self._pending.pop(name, None)
            if not current or value is None or not self._trusted():
                return
            if len(self._entries) >= self._size:
                del self._entries[next(iter(self._entries))]
            self._entries[name] = (self._now() + self._ttl, value)

    def evict(self, names: Iterable[str]) -> None:
        """Forget ``names`` (after this process wrote them)."""
        with self._lock:
            for name in names:
                self._entries.pop(name, None)
                self._pending.pop(name, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._pending.clear()

    def barrier(self) -> None:
        """Apply every change Redis made before this call (one round trip on the feed)."""
        with self._lock:
            self.feed.barrier()

    def close(self) -> None:
        with self._lock:
            self.feed.close()
            self._entries.clear()
            self._pending.clear()
