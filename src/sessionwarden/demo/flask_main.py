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

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from ..startup import CliError, Parser, report
from .cli import add_arguments, start_up
from .flask_app import create_app, create_evil_app, start_purging, warden_of

__all__ = ["main", "run"]


class _Handler(WSGIRequestHandler):
    """Werkzeug's request handler without its ``Server: Werkzeug/x Python/y`` header: no
    software versions for an attacker to look up (the Starlette demo sends no Server header)."""

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() != "server":
            super().send_header(keyword, value)


def _stop_on_sigterm() -> None:
    """SIGTERM ends the server like Ctrl-C does, so the store is closed on the way out."""

    def handler(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def run(args: argparse.Namespace) -> int:
    """Serve the Flask demo until interrupted. Returns the process exit status."""
    try:
        startup, app = start_up(args, create_app)
    except CliError as exc:
        return report(exc)
    store = warden_of(app).middleware(app).store
    servers: list[BaseWSGIServer] = []
    try:
        # The sockets are bound already (start_up): the servers only take them over.
        fd = startup.sockets[0].fileno()
        server = make_server(
            args.host, args.port, app, threaded=True, fd=fd, request_handler=_Handler
        )
        servers.append(server)
        if args.evil_port is not None:
            evil_app = create_evil_app(startup.origin)
            evil = make_server(
                args.host,
                args.evil_port,
                evil_app,
                threaded=True,
                fd=startup.sockets[1].fileno(),
                request_handler=_Handler,
            )
            servers.append(evil)
            threading.Thread(target=evil.serve_forever, name="evil-origin", daemon=True).start()

        startup.announce(args, served_by=" (Flask)")
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
        for srv in servers[1:]:
            srv.shutdown()
        for srv in servers:
            srv.server_close()
        startup.close()
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="python -m sessionwarden.demo.flask_main",
        description="Serve the sessionwarden demo on Flask: the same bank as "
        "'sessionwarden demo', through the Flask extension.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
