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

from .cli import add_arguments, start_up
from .flask_app import create_app, create_evil_app, start_purging, warden_of

__all__ = ["main", "run"]


def _stop_on_sigterm() -> None:
    """SIGTERM ends the server like Ctrl-C does, so the store is closed on the way out."""

    def handler(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def run(args: argparse.Namespace) -> int:
    """Serve the Flask demo until interrupted. Returns the process exit status."""
    started = start_up(args, create_app)
    if isinstance(started, int):
        return started
    startup, app = started
    origin = startup.origin
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

        startup.announce(args, served_by=" (Flask)")

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
