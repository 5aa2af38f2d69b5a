"""Lean Redis connections for the one command on every request's path.

Why they exist: a request whose session is not in the local read cache does exactly one
``HGETALL``. Through redis-py that one command costs far more than the network round trip (pool
checkout, per-command locks and tasks, retry wrappers, Python-level reply handling). Here:

* :class:`PipelinedReader` (asyncio): a single connection per event loop carries every
  concurrent request's ``HGETALL`` back to back (RESP replies come in order, so a FIFO of futures
  matches them), parsed by ``hiredis``;
* :class:`BlockingReader` (threads, for the WSGI adapter): one connection per thread, a write
  and a read per command, parsed by ``hiredis``.

Everything else (scripts, writes, scans) still goes through redis-py.

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
from typing import Any, cast
from urllib.parse import unquote, urlsplit

try:
    import hiredis
except ImportError:  # pragma: no cover - the redis extra installs it
    hiredis = None  # type: ignore[assignment]


class RespError(Exception):
    """The connection failed, timed out or Redis answered with an error."""


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


def encode(*args: bytes) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        assert hiredis is not None
        self.reader = hiredis.Reader()
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport but behave like one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
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
            waiter = waiters.popleft()
            if not waiter.done():
                if isinstance(reply, hiredis.ReplyError):
                    code = str(reply).split(" ", 1)[0][:16]
                    waiter.set_exception(RespError(f"error reply {code}"))
                else:
                    waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RespError("connection lost"))

    def fail(self, error: RespError) -> None:
        self.closed = True
        while self.waiters:
            waiter = self.waiters.popleft()
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
        self._init()

    def _init(self) -> None:
        """The subclass's own state."""


class PipelinedReader(_Reader):
    """One pipelined connection per event loop, for ``HGETALL`` only."""

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
        _, proto = await loop.create_connection(_Protocol, *self._address)
        for command in self._setup:
            reply = await self._send(loop, proto, command)
            if reply != b"OK":
                proto.fail(RespError("connection setup refused"))
                raise RespError("connection setup refused")
        return proto

    async def _send(self, loop: asyncio.AbstractEventLoop, proto: _Protocol, data: bytes) -> Any:
        waiter: asyncio.Future[Any] = loop.create_future()
        proto.waiters.append(waiter)
        assert proto.transport is not None
        proto.transport.write(data)
        self.commands_sent += 1
        timer = loop.call_later(self._timeout, _expire, proto, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    async def hgetall(self, key: str) -> list[bytes]:
        loop = asyncio.get_running_loop()
        proto = await self._connection(loop)
        reply = await self._send(loop, proto, encode(b"HGETALL", key.encode()))
        if not isinstance(reply, list):
            raise RespError("unexpected reply type")
        return reply

    def close(self) -> None:
        for proto in self._connections.values():
            if proto.transport is not None:
                proto.transport.close()
        self._connections.clear()


def _expire(proto: _Protocol, waiter: asyncio.Future[Any]) -> None:
    """A reply did not come in time: the connection's replies can no longer be matched to
    their requests, so it is dropped and every request waiting on it fails."""
    if not waiter.done():
        proto.fail(RespError("timeout"))


class _ConnectionLost(RespError):
    """The connection was closed or reset (not a timeout, not an error reply)."""


class _Blocking:
    """One thread's connection."""

    __slots__ = ("pid", "reader", "sock", "used")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = hiredis.Reader()
        self.pid = os.getpid()
        self.used = False  # has answered a command since the setup


class BlockingReader(_Reader):
    """One connection per thread, for ``HGETALL`` only (the synchronous store's reads).

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
            if conn.pid == os.getpid():
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

    def hgetall(self, key: str) -> list[bytes]:
        command = encode(b"HGETALL", key.encode())
        for attempt in (1, 2):
            conn = self._connection()
            try:
                reply = self._call(conn, command)
            except _ConnectionLost:
                if attempt == 2 or not conn.used:
                    raise
                continue  # a reused connection was gone: once more, on a new one
            conn.used = True
            break
        if not isinstance(reply, list):
            raise RespError("unexpected reply type")
        return reply

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conns, self._all = self._all, set()
        for conn in conns:
            if conn.pid == os.getpid():
                conn.sock.close()
