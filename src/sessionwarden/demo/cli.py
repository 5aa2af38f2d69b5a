"""Command line of the demo: ``sessionwarden demo [options]`` or ``python -m sessionwarden.demo``.

``add_arguments`` and ``run`` are what the main ``sessionwarden`` command wires in; ``main`` is the
stand-alone entry point. :func:`start_up` is the part of ``run`` that does not depend on the web
framework; the Flask twin (:mod:`sessionwarden.demo.flask_main`) runs it too.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import secrets
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO, TypeVar

from ..asgi import ASGIApp
from ..monitor import JsonFormatter
from ..policy import Policy
from ..stores import StoreUnavailable, parse_store_url
from .shared import EVENT_LOGGER, LOGGER, demo_policy
from .users import hash_password, parse_user_spec, random_password

__all__ = ["DEFAULT_STORE", "Startup", "add_arguments", "load_secret", "main", "run", "start_up"]

_App = TypeVar("_App")

DEFAULT_STORE = "sqlite:///sessionwarden-demo.db"
KEY_FILE_NAME = "sessionwarden-demo.key"
SECRET_ENV = "SESSIONWARDEN_SECRET"  # noqa: S105 - the variable name, not a secret
SECRET_BYTES = 32
DEMO_USER = "demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to ``parser`` (a sub-command parser or a fresh one)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    parser.add_argument(
        "--store",
        default=DEFAULT_STORE,
        metavar="URL",
        help="session store: sqlite:///path.db (default: %(default)s), "
        "redis://host:port/db[?prefix=...], postgresql://user@host:port/db[?table=...] or memory://",
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
        f"default: {KEY_FILE_NAME} next to the SQLite file, or ${SECRET_ENV} when set",
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


def default_secret_path(store_url: str) -> Path:
    spec = parse_store_url(store_url)
    if spec.kind == "sqlite":
        return Path(spec.path).parent / KEY_FILE_NAME
    return Path(KEY_FILE_NAME)


def _read_key(path: Path) -> bytes:
    data = path.read_bytes()
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
    path: Path | None, store_url: str, *, out: TextIO = sys.stdout
) -> tuple[bytes, str]:
    """The secret key and where it came from: ``--secret-file``, else ``$SESSIONWARDEN_SECRET``,
    else the default key file (created when missing)."""
    if path is None:
        env = os.environ.get(SECRET_ENV)
        if env:
            raw = env.encode("utf-8")
            if len(raw) < SECRET_BYTES:
                raise ValueError(f"${SECRET_ENV} must hold at least {SECRET_BYTES} bytes")
            return raw, f"${SECRET_ENV}"
        path = default_secret_path(store_url)
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            print(
                f"warning: {path} is readable by others (mode {mode:o}); chmod 600 it",
                file=sys.stderr,
            )
        return _read_key(path), str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = _create_key(path)
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


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - only naming the wildcard, not binding it
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True, slots=True)
class Startup:
    """What :func:`start_up` settled: the demo's policy, accounts and addresses."""

    policy: Policy
    users: dict[str, str]
    generated: tuple[str, str] | None  # (name, password) of the account made up for this run
    secret_from: str
    origin: str
    evil_url: str | None

    def announce(self, args: argparse.Namespace, *, served_by: str = "") -> None:
        """Print where the demo is served, its accounts and the attacker page."""
        print(
            f"sessionwarden demo{served_by} on {self.origin}/  "
            f"(store: {args.store}, key: {self.secret_from})"
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
        if args.host not in ("127.0.0.1", "::1", "localhost"):
            print(
                "note: the session cookie is Secure; over plain HTTP browsers accept it only from "
                "loopback addresses, and other hosts are redirected to HTTPS.",
                file=sys.stderr,
            )
        sys.stdout.flush()


def start_up(
    args: argparse.Namespace, create_app: Callable[..., _App]
) -> tuple[Startup, _App] | int:
    """Everything before serving, whatever the web framework: check the options, hash the
    passwords (or make up a ``demo`` account), load the secret key, send the logs to stderr and
    build the app with ``create_app(store=..., policy=..., users=..., evil_url=...)``.

    Returns what was settled and the app, or the exit status after an error was printed.
    """
    try:
        prepare_store(args.store)
    except ValueError as exc:
        print(f"--store: {exc}", file=sys.stderr)
        return 2
    except (StoreUnavailable, ImportError) as exc:
        print(f"error: cannot open the store: {exc}", file=sys.stderr)
        return 2
    for port in (args.port, args.evil_port):
        if port is not None and not 0 < port < 65536:
            print(f"invalid port {port}", file=sys.stderr)
            return 2

    users: dict[str, str] = {}
    generated: tuple[str, str] | None = None
    try:
        for spec in args.user:
            name, password = parse_user_spec(spec)
            users[name] = hash_password(password)
    except ValueError as exc:
        print(f"--user: {exc}", file=sys.stderr)
        return 2
    if not users:
        generated = (DEMO_USER, random_password())
        users[DEMO_USER] = hash_password(generated[1])

    try:
        secret, secret_from = load_secret(args.secret_file, args.store)
        policy = demo_policy(
            secret,
            idle_timeout=args.idle_timeout,
            absolute_timeout=args.absolute_timeout,
            rotate_every=args.rotate_every,
            dbsc=getattr(args, "dbsc", False),
        )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    host = _url_host(args.host)
    origin = f"http://{host}:{args.port}"
    evil_url = None
    if args.evil_port is not None:
        evil_host = "127.0.0.1" if host == "localhost" else "localhost"
        evil_url = f"http://{evil_host}:{args.evil_port}/"
    _configure_logging()
    try:
        app = create_app(store=args.store, policy=policy, users=users, evil_url=evil_url)
    except (OSError, ValueError, ImportError) as exc:
        print(f"error: cannot open the store: {exc}", file=sys.stderr)
        return 2
    return Startup(policy, users, generated, secret_from, origin, evil_url), app


def run(args: argparse.Namespace) -> int:
    """Serve the demo until interrupted. Returns the process exit status."""
    try:
        import uvicorn

        from .app import create_app, create_evil_app
    except ImportError as exc:
        print(
            f"The demo needs {exc.name or 'uvicorn'}: pip install 'sessionwarden[demo]'",
            file=sys.stderr,
        )
        return 1
    started = start_up(args, create_app)
    if isinstance(started, int):
        return started
    startup, app = started
    startup.announce(args)
    origin = startup.origin

    def serve(
        asgi: ASGIApp, port: int, log_level: str, lifespan: Literal["on", "off"]
    ) -> uvicorn.Server:
        config = uvicorn.Config(
            asgi,
            host=args.host,
            port=port,
            log_level=log_level,
            lifespan=lifespan,
            # The middleware resolves clients through its own trusted-proxy list; uvicorn must
            # not rewrite the peer address from X-Forwarded-For.
            proxy_headers=False,
            server_header=False,
        )
        return uvicorn.Server(config)

    evil_server = None
    if args.evil_port is not None:
        evil_server = serve(create_evil_app(origin), args.evil_port, "warning", "off")
        threading.Thread(target=evil_server.run, name="evil-origin", daemon=True).start()

    server = serve(app, args.port, "info", "on")
    try:
        server.run()
    except OSError as exc:  # pragma: no cover - uvicorn usually reports bind errors itself
        print(f"error: {os.strerror(exc.errno or errno.EIO)}", file=sys.stderr)
        return 1
    finally:
        if evil_server is not None:
            evil_server.should_exit = True
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sessionwarden demo",
        description="Serve the sessionwarden demo: a small bank showing every defence at work.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
