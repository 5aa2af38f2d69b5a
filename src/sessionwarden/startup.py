"""Start-up checks shared by the ``sessionwarden`` command and the demo.

Every failure is one line on stderr in one form, ``sessionwarden: error: ...``, with an exit
status: 0 done, 1 nothing matched, 2 usage error (bad arguments, bad store URL, demo not
installed), 3 store unavailable (unreachable, no such database, unusable file), 4 cannot listen
(the port is in use or not allowed). The checks run before anything is printed or created, so a
failed start leaves nothing behind.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import socket
import sys
import time
from collections.abc import Iterable
from typing import Any, NoReturn, TextIO

from .stores import StoreUnavailable, StoreURL, parse_store_url

__all__ = [
    "ERROR_PREFIX",
    "EXIT_CANNOT_LISTEN",
    "EXIT_NO_MATCH",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "CliError",
    "Parser",
    "check_store",
    "close_all",
    "is_loopback",
    "listen",
    "parse_store",
    "plain_http_warning",
    "report",
    "sqlite_problem",
]

ERROR_PREFIX = "sessionwarden: error: "

EXIT_OK = 0
EXIT_NO_MATCH = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_CANNOT_LISTEN = 4

#: Seconds the start-up check keeps asking a store whose answers time out.
_CHECK_PATIENCE = 15.0


class CliError(Exception):
    """A failure reported as one line on stderr with an exit status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _one_line(message: str) -> str:
    text = " ".join(message.split())
    return "".join(c if c.isprintable() else "?" for c in text)


def report(exc: CliError, out: TextIO | None = None) -> int:
    """Print ``exc`` in the one error form; returns its exit status."""
    print(ERROR_PREFIX + _one_line(exc.message), file=out or sys.stderr)
    return exc.status


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors take the one error form, one line pointing to
    ``--help`` (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        print(ERROR_PREFIX + _one_line(f"{message} (see: {self.prog} --help)"), file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


# -- store URLs and paths -------------------------------------------------------------------------


def parse_store(url: str) -> StoreURL:
    """:func:`~sessionwarden.stores.parse_store_url`, failing with :class:`CliError` (2) and,
    for a bare file path, the URL that was probably meant."""
    try:
        return parse_store_url(url)
    except ValueError as exc:
        message = str(exc)
        if url and "://" not in url and url.isprintable():
            message += f"; did you mean `sqlite:///{url}`?"
        raise CliError(EXIT_USAGE, message) from None


def sqlite_problem(path: str, *, must_exist: bool) -> str | None:
    """Why the SQLite file ``path`` cannot be the store (``None`` when it can). Its directory
    must exist already: a mistyped path is reported, never created."""
    if os.path.isdir(path):
        return f"{path} is a directory, not a SQLite file"
    if os.path.exists(path):
        if not os.access(path, os.R_OK | os.W_OK):
            return f"{path} is not readable and writable by this user"
        return None
    if must_exist:
        return f"no SQLite file at {path}"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(parent):
        return f"the directory of {path} does not exist ({parent}); create it first"
    if not os.path.isdir(parent):
        return f"{parent} (the directory of {path}) is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create {path}: the directory {parent} is not writable by this user"
    return None


def check_store(store: Any, url: str = "") -> None:
    """Run ``store.check()`` (a synchronous store), turning :class:`StoreUnavailable` into
    :class:`CliError` (3) naming the cause. ``url`` (the store's) only adds a hint: a TLS
    handshake with a server that does not speak TLS is a timeout like any other."""
    check = getattr(store, "check", None)
    if not callable(check):
        return
    deadline = time.monotonic() + _CHECK_PATIENCE
    while True:
        try:
            check()
            return
        except StoreUnavailable as exc:
            # A busy server may miss a short read deadline now and then: ask again for a while.
            # A refusal or an error answer is final at once.
            timeout = "timeout" in str(exc).lower()
            if time.monotonic() > deadline or not timeout:
                hint = _TLS_HINT if timeout and url.lower().startswith("rediss") else ""
                raise CliError(EXIT_UNAVAILABLE, f"store unavailable: {exc}{hint}") from None


_TLS_HINT = " (the URL asks for TLS: does the server speak TLS on that port?)"


# -- listening ------------------------------------------------------------------------------------


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, or :class:`CliError` (4) saying why."""
    if not 0 < port < 65536:
        raise CliError(EXIT_USAGE, f"--port: {port} is not a port number (1 to 65535)")
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CliError(EXIT_CANNOT_LISTEN, f"cannot listen on {host}:{port}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        why = exc.strerror or str(exc)
        hint = ""
        if exc.errno == 98:  # EADDRINUSE
            why = "the address is already in use"
            hint = " (another server, perhaps another demo, is running there; pick --port)"
        raise CliError(EXIT_CANNOT_LISTEN, f"cannot listen on {host}:{port}: {why}{hint}") from None
    sock.set_inheritable(True)
    return sock


def close_all(sockets: Iterable[socket.socket]) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()


# -- plain HTTP on a network address ----------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plain_http_warning(host: str, port: int, trusted_proxies: Iterable[str]) -> str | None:
    """The start-up warning for plain HTTP on a non-loopback address without a trusted proxy;
    ``None`` when there is nothing to warn about."""
    if is_loopback(host) or tuple(trusted_proxies):
        return None
    return (
        f"warning: serving plain HTTP on {host}:{port}. Requests from other machines will be "
        "redirected to HTTPS (308) and the Secure session cookie is never set over plain HTTP; "
        "only loopback peers may use http://. Put a TLS-terminating proxy in front and pass its "
        "address with --trusted-proxy ADDR (HttpsPolicy.trusted_proxies in an app), or serve on "
        "127.0.0.1."
    )
