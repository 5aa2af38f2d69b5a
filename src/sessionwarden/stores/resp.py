"""Lean Redis connections for the one command on every request's path.

Why they exist: a request whose session is not in the local read cache does exactly one
``HGETALL``. Through redis-py that one command costs far more than the network round trip (pool
checkout, per-command locks and tasks, retry wrappers, Python-level reply handling). Here:

* :class:`PipelinedReader` (asyncio): a single connection per event loop carries every
  concurrent request's ``HGETALL`` back to back (RESP replies come in order, so a FIFO of futures
  matches them), read into a buffer of its own (asyncio's buffered protocol) and parsed by
  ``hiredis``;
* :class:`BlockingReader` (threads, for the WSGI adapter): one connection per thread, a write
  and a read per command, parsed by ``hiredis``.

The same connections carry the store's scripts (``EVALSHA``), so a request that changes a
session costs one lean round trip too. When the store keeps a local read cache, each of these
connections registers itself for Redis' invalidation notices with ``NOLOOP`` (see
:class:`Tracker` and :mod:`.tracking`): what it writes itself is not announced back, and the
store keeps the record its write returned. Scans and maintenance still go through redis-py.

Failure is never silent: a timeout, a reset or an error reply fails the waiting request (and, for
timeouts and resets, drops the connection so replies cannot be matched to the wrong request); the
store turns that into :class:`~sessionwarden.stores.base.StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections import deque
from typing import Any, Final, Protocol, cast
from urllib.parse import unquote, urlsplit

try:
    import hiredis
except ImportError:  # pragma: no cover - the redis extra installs it
    hiredis = None  # type: ignore[assignment]


class RespError(Exception):
    """The connection failed, timed out or Redis answered with an error."""


class Tracker(Protocol):
    """What registers a lean connection for invalidation notices (the read cache).

    Before its next command a connection asks :meth:`wanted`; when that names a feed other
    than the one it registered with, it sends :meth:`commands` first (pipelined) and reports
    :meth:`registered` once Redis accepted them. A connection that fails or closes reports
    :meth:`unregistered`: Redis stopped sending its notices with it.
    """

    def wanted(self) -> int | None:
        """The client ID notices must be redirected to, or ``None`` (do not register)."""
        ...

    def commands(self, feed_id: int) -> list[bytes]:
        """The commands (each answered ``+OK``) that register a connection with ``feed_id``."""
        ...

    def registered(self, conn: object, feed_id: int) -> None: ...

    def unregistered(self, conn: object) -> None: ...


def fast_path_target(url: str) -> tuple[str, int, int, str | None, str | None] | None:
    """``(host, port, db, username, password)`` for a plain ``redis://`` URL, else ``None``
    (TLS, Unix sockets and unusual options keep using redis-py only)."""
    if hiredis is None:
        return None
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.query or not parts.hostname:
        return None
    try:
        port = parts.port or 6379
    except ValueError:
        return None
    db_text = parts.path.lstrip("/") or "0"
    if not db_text.isdigit():
        return None
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, int(db_text), user, password


def encode(*args: bytes | str | int) -> bytes:
    """One command in RESP (an array of bulk strings), framed by ``hiredis.pack_command`` in C:
    text is sent as UTF-8, an integer as its decimal digits; any other type (``bool`` too) is
    refused with :class:`TypeError`."""
    # (hiredis' stub types the argument as a one-item tuple; it takes any number of items)
    return cast(bytes, hiredis.pack_command(args))  # type: ignore[arg-type]


class _ConnectionLost(RespError):
    """The connection was closed or reset (not a timeout, not an error reply)."""


#: Bytes an asyncio connection reads at most at once, into a buffer of its own.
READ_BUFFER: Final = 65536


class _Protocol(asyncio.BufferedProtocol):
    """One pipelined connection: a FIFO of the futures waiting for replies, each with the loop
    time by which its reply is due (the same timeout for all, so the oldest is due first), and
    one watchdog timer for the oldest instead of a timer per command.

    Replies are read into one buffer kept for the connection's life (the buffered protocol):
    with a plain protocol the event loop allocates a fresh 256 KiB buffer for every read, which
    the C library maps and unmaps from the kernel each time, several system calls and a page
    fault per reply. What arrived is handed to hiredis as a copy, so the buffer is reused at
    once."""

    def __init__(self, timeout: float) -> None:
        assert hiredis is not None
        self.reader = hiredis.Reader()
        self.waiters: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.timeout = timeout
        self.watchdog: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray(READ_BUFFER)
        self.view = memoryview(self.buffer)
        self.closed = False
        #: The feed this connection's notices go to (see :class:`Tracker`), once accepted.
        self.tracking: int | None = None
        self.tracker: Tracker | None = None
        self.used = False  # has answered a command since the setup

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport but behave like one.
        self.transport = cast(asyncio.Transport, transport)

    def submit(self, loop: asyncio.AbstractEventLoop, data: bytes) -> asyncio.Future[Any]:
        """Send one encoded command; the future its reply (or failure) will be set on."""
        waiter: asyncio.Future[Any] = loop.create_future()
        due = loop.time() + self.timeout
        self.waiters.append((waiter, due))
        if self.watchdog is None:
            self.watchdog = loop.call_at(due, self.check, loop)
        assert self.transport is not None
        self.transport.write(data)
        return waiter

    def check(self, loop: asyncio.AbstractEventLoop) -> None:
        """The watchdog: when the oldest reply is overdue, the connection's replies can no
        longer be matched to their requests, so it is dropped and every request waiting on it
        fails; otherwise wait for the next one due."""
        self.watchdog = None
        if not self.waiters or self.closed:
            return
        due = self.waiters[0][1]
        if due <= loop.time():
            self.fail(RespError("timeout"))
        else:
            self.watchdog = loop.call_at(due, self.check, loop)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        self.reader.feed(bytes(self.view[:nbytes]))
        waiters = self.waiters
        while True:
            try:
                reply = self.reader.gets()
            except Exception as exc:  # a protocol error: nothing after it can be trusted
                self.fail(RespError(f"protocol error: {type(exc).__name__}"))
                return
            if reply is False:
                return
            if not waiters:
                self.fail(RespError("unexpected reply"))
                return
            waiter = waiters.popleft()[0]
            if not waiter.done():
                if isinstance(reply, hiredis.ReplyError):
                    code = str(reply).split(" ", 1)[0][:16]
                    waiter.set_exception(RespError(f"error reply {code}"))
                else:
                    waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(_ConnectionLost("connection lost"))

    def fail(self, error: RespError) -> None:
        self.closed = True
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        tracker, self.tracker = self.tracker, None
        if tracker is not None:
            tracker.unregistered(self)
        while self.waiters:
            waiter = self.waiters.popleft()[0]
            if not waiter.done():
                waiter.set_exception(error)
        if self.transport is not None:
            self.transport.close()


def _setup_commands(db: int, username: str | None, password: str | None) -> list[bytes]:
    """What a new connection sends first (each answered ``+OK``): AUTH, then SELECT."""
    setup: list[bytes] = []
    if password is not None:
        auth = [b"AUTH"] + ([username.encode()] if username else []) + [password.encode()]
        setup.append(encode(*auth))
    if db:
        setup.append(encode(b"SELECT", str(db).encode()))
    return setup


class _Reader:
    """Where a lean reader connects and what it says first: built from
    :func:`fast_path_target`'s tuple (``Reader(*target, timeout=...)``)."""

    def __init__(
        self,
        host: str,
        port: int,
        db: int,
        username: str | None,
        password: str | None,
        *,
        timeout: float,
    ) -> None:
        self._address = (host, port)
        self._timeout = timeout
        self._setup = _setup_commands(db, username, password)
        #: Commands written, for tests that count round trips.
        self.commands_sent = 0
        #: Registers each connection for invalidation notices (set by the store).
        self.tracker: Tracker | None = None
        self._init()

    def _init(self) -> None:
        """The subclass's own state."""


class PipelinedReader(_Reader):
    """One pipelined connection per event loop: reads (``HGETALL``) and scripts."""

    def _init(self) -> None:
        self._connections: dict[asyncio.AbstractEventLoop, _Protocol] = {}
        self._connecting: dict[asyncio.AbstractEventLoop, asyncio.Future[_Protocol]] = {}

    async def _connection(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        proto = self._connections.get(loop)
        if proto is not None and not proto.closed:
            return proto
        pending = self._connecting.get(loop)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Protocol] = loop.create_future()
        self._connecting[loop] = future
        try:
            proto = await asyncio.wait_for(self._open(loop), self._timeout)
        except BaseException as exc:
            error = RespError(f"connect failed: {type(exc).__name__}")
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise error from None
        finally:
            self._connecting.pop(loop, None)
        self._connections[loop] = proto
        future.set_result(proto)
        return proto

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        timeout = self._timeout
        _, proto = await loop.create_connection(lambda: _Protocol(timeout), *self._address)
        for command in self._setup:
            reply = await self._submit(loop, proto, command)
            if reply != b"OK":
                proto.fail(RespError("connection setup refused"))
                raise RespError("connection setup refused")
        return proto

    def _submit(
        self, loop: asyncio.AbstractEventLoop, proto: _Protocol, data: bytes
    ) -> asyncio.Future[Any]:
        self.commands_sent += 1
        return proto.submit(loop, data)

    def _register(
        self, loop: asyncio.AbstractEventLoop, proto: _Protocol
    ) -> tuple[int, list[asyncio.Future[Any]]] | None:
        """Queue the tracker's registration in front of the next command, when it is due."""
        tracker = self.tracker
        if tracker is None:
            return None
        want = tracker.wanted()
        if want is None or proto.tracking == want:
            return None
        proto.tracking = want  # no other command of this loop queues it again
        return want, [self._submit(loop, proto, c) for c in tracker.commands(want)]

    async def call(self, *args: bytes | str | int) -> Any:
        """One command on this loop's connection; its reply as ``hiredis`` parses it.

        A reused connection found gone is replaced and the command sent once more (as
        redis-py retries a connection error once); a timeout is not retried."""
        loop = asyncio.get_running_loop()
        command = encode(*args)
        for attempt in (1, 2):
            proto = self._connections.get(loop)
            if proto is None or proto.closed:
                proto = await self._connection(loop)
            registration = self._register(loop, proto)
            try:
                reply = await self._submit(loop, proto, command)
            except _ConnectionLost:
                if attempt == 2 or not proto.used:
                    raise
                continue  # a reused connection was gone: once more, on a new one
            finally:
                if registration is not None:
                    self._registered(proto, *registration)
            proto.used = True
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def _registered(self, proto: _Protocol, want: int, acks: list[asyncio.Future[Any]]) -> None:
        tracker = self.tracker
        # every ack's outcome is looked at (an exception never retrieved would be reported)
        ok = [a.done() and not a.cancelled() and a.exception() is None for a in acks]
        if all(ok) and all(a.result() == b"OK" for a in acks) and not proto.closed:
            if tracker is not None and proto.tracking == want:
                proto.tracker = tracker
                tracker.registered(proto, want)
        elif proto.tracking == want:
            proto.tracking = None

    async def hgetall(self, key: str) -> list[bytes]:
        reply = await self.call(b"HGETALL", key.encode())
        if not isinstance(reply, list):
            raise RespError("unexpected reply type")
        return reply

    def close(self) -> None:
        for proto in self._connections.values():
            proto.fail(RespError("closed"))
        self._connections.clear()


#: Forks this process has been through (a counter, instead of ``os.getpid()``, a system call,
#: on every command of a thread's connection).
_forks = 0


def _count_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)


class _Blocking:
    """One thread's connection."""

    __slots__ = ("__weakref__", "forks", "reader", "sock", "tracking", "used")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = hiredis.Reader()
        self.forks = _forks  # made in this process, not inherited from a parent
        self.used = False  # has answered a command since the setup
        self.tracking: int | None = None  # the feed its notices go to (see Tracker)


class BlockingReader(_Reader):
    """One connection per thread: reads (``HGETALL``) and scripts of the synchronous store.

    A timeout, a reset or a protocol error closes that thread's connection (a late reply could
    otherwise be taken for the next command's) and raises :class:`RespError`; the next command
    connects afresh. A connection found closed when reused (the server restarted, or dropped it
    as idle) is replaced and the read sent once more, as redis-py retries a connection error
    once; a timeout is not retried. A forked child never uses its parent's connections.
    """

    def _init(self) -> None:
        self._local = threading.local()
        self._all: set[_Blocking] = set()  # every thread's, for close()
        self._lock = threading.Lock()
        self._closed = False

    def _connection(self) -> _Blocking:
        conn: _Blocking | None = getattr(self._local, "conn", None)
        if conn is not None:
            if conn.forks == _forks:
                return conn
            self._drop(conn)  # the parent's, inherited by this forked child: close our copy
        if self._closed:
            raise RespError("closed")
        try:
            sock = socket.create_connection(self._address, timeout=self._timeout)
        except OSError as exc:
            raise RespError(f"connect failed: {type(exc).__name__}") from None
        conn = _Blocking(sock)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for command in self._setup:
                if self._call(conn, command) != b"OK":
                    raise RespError("connection setup refused")
        except BaseException:
            sock.close()
            raise
        self._local.conn = conn
        with self._lock:
            self._all.add(conn)
        return conn

    def _call(self, conn: _Blocking, command: bytes) -> Any:
        try:
            conn.sock.sendall(command)
            self.commands_sent += 1
            while True:
                reply = conn.reader.gets()
                if reply is not False:
                    break
                data = conn.sock.recv(65536)
                if not data:
                    raise _ConnectionLost("connection lost")
                conn.reader.feed(data)
        except (OSError, RespError, hiredis.ProtocolError) as exc:
            self._drop(conn)
            if isinstance(exc, RespError):
                raise
            if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                raise _ConnectionLost(type(exc).__name__) from None
            raise RespError(type(exc).__name__) from None
        if isinstance(reply, hiredis.ReplyError):
            raise RespError("error reply " + str(reply).split(" ", 1)[0][:16])
        return reply

    def _drop(self, conn: _Blocking) -> None:
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._lock:
            self._all.discard(conn)
        conn.sock.close()
        if conn.tracking is not None and self.tracker is not None:
            conn.tracking = None
            self.tracker.unregistered(conn)

    def _register(self, conn: _Blocking) -> None:
        """Register ``conn`` with the tracker's feed, when that is due."""
        tracker = self.tracker
        want = tracker.wanted() if tracker is not None else None
        if tracker is None or want is None or conn.tracking == want:
            return
        for command in tracker.commands(want):
            if self._call(conn, command) != b"OK":
                raise RespError("tracking refused")
        conn.tracking = want
        tracker.registered(conn, want)

    def call(self, *args: bytes | str | int) -> Any:
        """One command on this thread's connection; its reply as ``hiredis`` parses it.

        A reused connection found gone is replaced and the command sent once more (as
        redis-py retries a connection error once); a timeout is not retried."""
        command = encode(*args)
        for attempt in (1, 2):
            conn = self._connection()
            try:
                self._register(conn)
                reply = self._call(conn, command)
            except _ConnectionLost:
                if attempt == 2 or not conn.used:
                    raise
                continue  # a reused connection was gone: once more, on a new one
            conn.used = True
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def hgetall(self, key: str) -> list[bytes]:
        reply = self.call(b"HGETALL", key.encode())
        if not isinstance(reply, list):
            raise RespError("unexpected reply type")
        return reply

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conns, self._all = self._all, set()
        for conn in conns:
            if conn.forks == _forks:
                conn.sock.close()
            if conn.tracking is not None and self.tracker is not None:
                conn.tracking = None
                self.tracker.unregistered(conn)
