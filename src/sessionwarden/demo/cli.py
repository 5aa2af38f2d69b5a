"""Command line of the demo: ``sessionwarden demo [options]`` or ``python -m sessionwarden.demo``.

``add_arguments`` and ``run`` are what the main ``sessionwarden`` command wires in; ``main`` is the
stand-alone entry point. :func:`start_up` is the part of ``run`` that does not depend on the web
framework; the Flask twin (:mod:`sessionwarden.demo.flask_main`) runs it too.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO, TypeVar

from ..asgi import ASGIApp
from ..monitor import JsonFormatter
from ..policy import HttpsPolicy, Policy
from ..startup import (
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
    Parser,
    check_store,
    close_all,
    listen,
    parse_store,
    plain_http_warning,
    report,
    sqlite_problem,
)
from ..stores import StoreUnavailable, open_store, parse_store_url
from .shared import EVENT_LOGGER, LOGGER, METRICS_TOKEN_ENV, demo_policy
from .users import hash_password, parse_user_spec, random_password

__all__ = ["DEFAULT_STORE", "Startup", "add_arguments", "load_secret", "main", "run", "start_up"]

_App = TypeVar("_App")

DATA_DIR = "sessionwarden-demo"
DB_NAME = "sessions.db"
DEFAULT_STORE = f"sqlite:///{DATA_DIR}/{DB_NAME}"
KEY_FILE_NAME = "sessionwarden-demo.key"
GITIGNORE = "# Created by the sessionwarden demo: its sessions and secret key.\n*\n"
SECRET_ENV = "SESSIONWARDEN_SECRET"  # noqa: S105 - the variable name, not a secret
SECRET_BYTES = 32
DEMO_USER = "demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to ``parser`` (a sub-command parser or a fresh one)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    parser.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help=f"session store: sqlite:///path.db (default: {DATA_DIR}/{DB_NAME}), "
        "redis://host:port/db[?prefix=...], postgresql://user@host:port/db[?table=...] "
        "or memory://",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DATA_DIR),
        metavar="DIR",
        help="the demo's own directory for its SQLite file and key, created (with a .gitignore) "
        "if missing; its parent must exist (default: %(default)s)",
    )
    parser.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME:PASSWORD",
        help="a demo account (repeatable); without one, a 'demo' user with a random password "
        "is created and printed",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="end sessions after this long without a request (1800)",
    )
    parser.add_argument(
        "--absolute-timeout",
        type=float,
        default=43_200.0,
        metavar="SECONDS",
        help="end sessions this long after they began, whatever the activity (43200)",
    )
    parser.add_argument(
        "--rotate-every",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="issue a new session ID this often; 0 turns periodic rotation off (900)",
    )
    parser.add_argument(
        "--secret-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"key for hashing session IDs, created (32 random bytes, mode 0600) if missing; "
        f"default: {KEY_FILE_NAME} next to the SQLite file (in the data directory for other "
        f"stores), or ${SECRET_ENV} when set",
    )
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        help="a reverse proxy (address or CIDR, repeatable) whose X-Forwarded-For/-Proto and "
        "Forwarded headers are believed: run the demo behind nginx with TLS",
    )
    parser.add_argument(
        "--no-attacks",
        dest="attacks",
        action="store_false",
        help="leave out /attacks and its deliberately unsafe comment sink (for scanners)",
    )
    parser.add_argument(
        "--dbsc",
        action="store_true",
        help="offer Device Bound Session Credentials after sign-in (browsers that support "
        "them bind the session to a key on the device; see docs/dbsc.md)",
    )
    parser.add_argument(
        "--evil-port",
        type=int,
        default=None,
        metavar="N",
        help="also serve a cross-site attacker page on this port (open it as http://localhost:N)",
    )


# --------------------------------------------------------------------------------------------
# The secret key
# --------------------------------------------------------------------------------------------


def prepare_store(store_url: str) -> None:
    """Check the store URL; for PostgreSQL, create the schema when it is missing (the demo
    just works on an empty database; an application runs ``sessionwarden store init``)."""
    spec = parse_store_url(store_url)
    if spec.kind == "postgres":
        from ..stores.postgres import init_schema

        init_schema(spec.url, table=spec.prefix)


def default_secret_path(store_url: str, data_dir: Path = Path(DATA_DIR)) -> Path:
    """Where the key lives by default: next to the SQLite file, else in the data directory."""
    spec = parse_store_url(store_url)
    if spec.kind == "sqlite":
        return Path(spec.path).parent / KEY_FILE_NAME
    return data_dir / KEY_FILE_NAME


def _read_key(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"key file {path}: cannot read it: {exc.strerror or exc}") from None
    if len(data) < SECRET_BYTES:
        raise ValueError(f"{path}: a key file needs at least {SECRET_BYTES} bytes")
    return data


def _create_key(path: Path) -> bytes | None:
    """Write a fresh key to ``path`` atomically; ``None`` when another process got there first.

    The key is written to a private temporary file and then hard-linked into place, which
    fails if the name exists: a concurrent starter never sees a half-written key.
    """
    key = secrets.token_bytes(SECRET_BYTES)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=".sessionwarden-key-", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return key


def load_secret(
    path: Path | None,
    store_url: str,
    *,
    out: TextIO = sys.stdout,
    data_dir: Path = Path(DATA_DIR),
) -> tuple[bytes, str]:
    """The secret key and where it came from: ``--secret-file``, else ``$SESSIONWARDEN_SECRET``,
    else the default key file (created when missing; its directory must exist)."""
    if path is None:
        env = os.environ.get(SECRET_ENV)
        if env:
            raw = env.encode("utf-8")
            if len(raw) < SECRET_BYTES:
                raise ValueError(f"${SECRET_ENV} must hold at least {SECRET_BYTES} bytes")
            return raw, f"${SECRET_ENV}"
        path = default_secret_path(store_url, data_dir)
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077 and path.is_file():
            print(
                f"warning: {path} is readable by others (mode {mode:o}); chmod 600 it",
                file=sys.stderr,
            )
        return _read_key(path), str(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"key file {path}: the directory {parent} does not exist; create it first")
    try:
        key = _create_key(path)
    except OSError as exc:
        raise ValueError(f"key file {path}: cannot create it: {exc.strerror or exc}") from None
    if key is None:  # created concurrently by another demo process
        return _read_key(path), str(path)
    print(f"Created a new secret key in {path} (mode 600).", file=out)
    return key, str(path)


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in (EVENT_LOGGER, LOGGER):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _allowed_hosts(host: str) -> tuple[str, ...]:
    """The demo answers to the host it was started on, and to this machine's loopback names."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - only naming the wildcard, not binding it
        return ()
    return ("localhost", "127.0.0.1", "[::1]", _url_host(host).lower())


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - only naming the wildcard, not binding it
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True, slots=True)
class Startup:
    """What :func:`start_up` settled: the demo's policy, accounts, addresses and sockets."""

    policy: Policy
    users: dict[str, str]
    generated: tuple[str, str] | None  # (name, password) of the account made up for this run
    secret_from: str
    origin: str
    evil_url: str | None
    store: str
    sockets: tuple[socket.socket, ...]  # bound and listening: the demo's, then the attacker's

    def announce(self, args: argparse.Namespace, *, served_by: str = "") -> None:
        """Print where the demo is served, its accounts and the attacker page."""
        print(
            f"sessionwarden demo{served_by} on {self.origin}/  "
            f"(store: {self.store}, key: {self.secret_from})"
        )
        if self.generated is not None:
            print(f"Demo user: {self.generated[0]}   password: {self.generated[1]}")
        else:
            print("Users: " + ", ".join(sorted(self.users)))
        if self.evil_url is not None:
            print(f"Cross-site attacker page on {self.evil_url} (posts to {self.origin}/transfer)")
        if self.policy.dbsc.enabled:
            print(
                f"DBSC: registration offered after sign-in at {self.policy.dbsc.register_path}, "
                f"refresh at {self.policy.dbsc.refresh_path}"
            )
        warning = plain_http_warning(args.host, args.port, self.policy.https.trusted_proxies)
        if warning is not None:
            print(warning, file=sys.stderr)
        sys.stdout.flush()

    def close(self) -> None:
        close_all(self.sockets)


def _parse_users(specs: list[str]) -> tuple[dict[str, str], tuple[str, str] | None]:
    users: dict[str, str] = {}
    try:
        for spec in specs:
            name, password = parse_user_spec(spec)
            users[name] = hash_password(password)
    except ValueError as exc:
        raise CliError(EXIT_USAGE, f"--user: {exc}") from None
    if users:
        return users, None
    generated = (DEMO_USER, random_password())
    return {DEMO_USER: hash_password(generated[1])}, generated


def _check_options(args: argparse.Namespace) -> str:
    """Validate what needs no socket and no file; returns the store URL."""
    url: str = args.store or f"sqlite:///{args.data_dir / DB_NAME}"
    parse_store(url)
    for name, port in (("--port", args.port), ("--evil-port", args.evil_port)):
        if port is not None and not 0 < port < 65536:
            raise CliError(EXIT_USAGE, f"{name}: {port} is not a port number (1 to 65535)")
    try:
        HttpsPolicy(trusted_proxies=tuple(args.trusted_proxy))
    except ValueError as exc:
        raise CliError(EXIT_USAGE, f"--trusted-proxy: {exc}") from None
    _policy(args, b"\x00" * SECRET_BYTES)  # the timeouts, before any file is touched
    return url


def _policy(args: argparse.Namespace, secret: bytes) -> Policy:
    try:
        return demo_policy(
            secret,
            idle_timeout=args.idle_timeout,
            absolute_timeout=args.absolute_timeout,
            rotate_every=args.rotate_every,
            dbsc=getattr(args, "dbsc", False),
            trusted_proxies=tuple(args.trusted_proxy),
            allowed_hosts=_allowed_hosts(args.host),
        )
    except ValueError as exc:
        raise CliError(EXIT_USAGE, str(exc)) from None


def _data_dir_needed(args: argparse.Namespace, url: str) -> bool:
    if args.store is None:
        return True
    return (
        args.secret_file is None
        and not os.environ.get(SECRET_ENV)
        and (parse_store(url).kind != "sqlite")
    )


def _make_data_dir(path: Path) -> bool:
    """Create the demo's data directory (not its parents) with a ``.gitignore`` that covers it;
    returns whether it was created now."""
    if path.is_dir():
        return False
    try:
        path.mkdir(mode=0o700)
        (path / ".gitignore").write_text(GITIGNORE)
    except FileNotFoundError:
        raise CliError(
            EXIT_USAGE,
            f"--data-dir {path}: its parent directory does not exist; create it first",
        ) from None
    except OSError as exc:
        raise CliError(EXIT_USAGE, f"--data-dir {path}: {exc.strerror or exc}") from None
    return True


def _check_store(url: str) -> None:
    """Open the store once and check it, so a bad URL fails now, naming the cause."""
    spec = parse_store(url)
    try:
        prepare_store(url)
    except ImportError as exc:
        raise CliError(
            EXIT_USAGE, f"the store needs {exc.name}: pip install 'sessionwarden[postgres]'"
        ) from None
    except StoreUnavailable as exc:
        raise CliError(EXIT_UNAVAILABLE, f"store unavailable: {exc}") from None
    if spec.kind == "sqlite":
        problem = sqlite_problem(spec.path, must_exist=False)
        if problem is not None:
            raise CliError(EXIT_UNAVAILABLE, f"store unavailable: {problem}")
    try:
        store = open_store(url)
    except StoreUnavailable as exc:
        where = f"{spec.path}: " if spec.kind == "sqlite" else ""
        raise CliError(EXIT_UNAVAILABLE, f"store unavailable: {where}{exc}") from None
    except ImportError as exc:
        raise CliError(
            EXIT_USAGE, f"the store needs {exc.name}: pip install 'sessionwarden[demo]'"
        ) from None
    try:
        check_store(store, url)
    finally:
        with contextlib.suppress(StoreUnavailable):
            store.close()


def _remove_data_dir(path: Path) -> None:
    """Undo :func:`_make_data_dir` after a failed start: only what the demo put there."""
    for name in (".gitignore", KEY_FILE_NAME, DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
        with contextlib.suppress(OSError):
            (path / name).unlink()
    with contextlib.suppress(OSError):
        path.rmdir()


def start_up(args: argparse.Namespace, create_app: Callable[..., _App]) -> tuple[Startup, _App]:
    """Everything before serving, whatever the web framework, in an order that leaves nothing
    behind when it fails: check the options, bind the ports, check the store, load the secret
    key, hash the passwords (or make up a ``demo`` account), send the logs to stderr and build
    the app with ``create_app(store=..., policy=..., users=..., evil_url=..., attacks=...,
    metrics_token=...)`` (``$SESSIONWARDEN_METRICS_TOKEN``).

    Raises :class:`~sessionwarden.startup.CliError` (printed by the caller) on any failure.
    """
    url = _check_options(args)
    sockets: list[socket.socket] = []
    created = False
    try:
        for port in (args.port, args.evil_port):
            if port is not None:
                sockets.append(listen(args.host, port))
        if _data_dir_needed(args, url):
            created = _make_data_dir(args.data_dir)
        _check_store(url)
        users, generated = _parse_users(args.user)
        try:
            secret, secret_from = load_secret(args.secret_file, url, data_dir=args.data_dir)
        except (OSError, ValueError) as exc:
            raise CliError(EXIT_USAGE, str(exc)) from None
        policy = _policy(args, secret)

        host = _url_host(args.host)
        origin = f"http://{host}:{args.port}"
        evil_url = None
        if args.evil_port is not None:
            evil_host = "127.0.0.1" if host == "localhost" else "localhost"
            evil_url = f"http://{evil_host}:{args.evil_port}/"
        _configure_logging()
        try:
            app = create_app(
                store=url,
                policy=policy,
                users=users,
                evil_url=evil_url,
                attacks=args.attacks,
                metrics_token=os.environ.get(METRICS_TOKEN_ENV) or None,
            )
        except (OSError, ValueError, ImportError, StoreUnavailable) as exc:
            raise CliError(EXIT_UNAVAILABLE, f"cannot open the store: {exc}") from None
    except BaseException:
        close_all(sockets)
        if created:
            _remove_data_dir(args.data_dir)
        raise
    startup = Startup(policy, users, generated, secret_from, origin, evil_url, url, tuple(sockets))
    return startup, app


def run(args: argparse.Namespace) -> int:
    """Serve the demo until interrupted. Returns the process exit status."""
    try:
        import uvicorn

        from .app import create_app, create_evil_app
    except ImportError as exc:
        return report(
            CliError(
                EXIT_USAGE,
                f"the demo needs {exc.name or 'uvicorn'}: pip install 'sessionwarden[demo]'",
            )
        )
    try:
        startup, app = start_up(args, create_app)
    except CliError as exc:
        return report(exc)
    startup.announce(args)

    def serve(asgi: ASGIApp, log_level: str, lifespan: Literal["on", "off"]) -> uvicorn.Server:
        config = uvicorn.Config(
            asgi,
            log_level=log_level,
            lifespan=lifespan,
            # The middleware resolves clients through its own trusted-proxy list; uvicorn must
            # not rewrite the peer address from X-Forwarded-For.
            proxy_headers=False,
            server_header=False,
        )
        return uvicorn.Server(config)

    evil_server = None
    try:
        if args.evil_port is not None:
            evil_server = serve(create_evil_app(startup.origin), "warning", "off")
            evil_socket = startup.sockets[1]
            threading.Thread(
                target=evil_server.run,
                kwargs={"sockets": [evil_socket]},
                name="evil-origin",
                daemon=True,
            ).start()
        server = serve(app, "info", "on")
        server.run(sockets=[startup.sockets[0]])
    finally:
        if evil_server is not None:
            evil_server.should_exit = True
        startup.close()
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="sessionwarden demo",
        description="Serve the sessionwarden demo: a small bank showing every defence at work.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
