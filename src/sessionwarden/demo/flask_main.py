"""``python -m sessionwarden.demo.flask_main [options]``: the demo on Flask.

The options are those of ``python -m sessionwarden.demo`` (the same parser); the app is
:func:`sessionwarden.demo.flask_app.create_app`, served by Werkzeug's threaded WSGI server. That
server is meant for development, which is what a demo on a loopback address is.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from werkzeug.serving import BaseWSGIServer, make_server

from ..stores import parse_store_url
from .cli import DEMO_USER, _configure_logging, _url_host, add_arguments, load_secret
from .flask_app import create_app, create_evil_app, start_purging, warden_of
from .shared import demo_policy
from .users import hash_password, parse_user_spec, random_password

__all__ = ["main", "run"]


def _stop_on_sigterm() -> None:
    """SIGTERM ends the server like Ctrl-C does, so the store is closed on the way out."""

    def handler(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def run(args: argparse.Namespace) -> int:
    """Serve the Flask demo until interrupted. Returns the process exit status."""
    try:
        parse_store_url(args.store)
    except ValueError as exc:
        print(f"--store: {exc}", file=sys.stderr)
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
    store = warden_of(app).middleware(app).store

    servers: list[BaseWSGIServer] = []
    running: list[BaseWSGIServer] = []  # served on a thread of their own: shut down at the end
    try:
        try:
            server = make_server(args.host, args.port, app, threaded=True)
            servers.append(server)
            if args.evil_port is not None:
                evil = make_server(
                    args.host, args.evil_port, create_evil_app(origin), threaded=True
                )
                servers.append(evil)
        except OSError as exc:
            print(f"error: cannot listen: {exc}", file=sys.stderr)
            return 1

        print(f"sessionwarden demo (Flask) on {origin}/  (store: {args.store}, key: {secret_from})")
        if generated is not None:
            print(f"Demo user: {generated[0]}   password: {generated[1]}")
        else:
            print("Users: " + ", ".join(sorted(users)))
        if evil_url is not None:
            print(f"Cross-site attacker page on {evil_url} (posts to {origin}/transfer)")
        if args.host not in ("127.0.0.1", "::1", "localhost"):
            print(
                "note: the session cookie is Secure; over plain HTTP browsers accept it only "
                "from loopback addresses, and other hosts are redirected to HTTPS.",
                file=sys.stderr,
            )
        sys.stdout.flush()

        for extra in servers[1:]:
            threading.Thread(target=extra.serve_forever, name="evil-origin", daemon=True).start()
            running.append(extra)
        stop_purging = start_purging(app)
        _stop_on_sigterm()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            stop_purging()
        return 0
    finally:
        for srv in running:
            srv.shutdown()
        for srv in servers:
            srv.server_close()
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sessionwarden.demo.flask_main",
        description="Serve the sessionwarden demo on Flask: the same bank as "
        "'sessionwarden demo', through the Flask extension.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
