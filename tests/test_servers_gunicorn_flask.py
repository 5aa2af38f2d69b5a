"""The Flask example (``examples/flask_app.py``, through the WSGI integration) under gunicorn,
its worker processes sharing one store: 3 sync workers; 2 gthread workers of 8 threads; and
``--preload`` with 3 gthread workers of 4 threads, where the app, and so the store, is made in
the master before it forks (a SQLite connection, a Redis socket or the Redis read cache's notice
connection made there must not be used by the workers). Each on the SQLite store and on the
Redis store (a key prefix of its own), over TLS, with real cookie jars. The checks are in
``tests/server_checks.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .conftest import drop_prefix, redis_or_skip, unique_prefix
from .live_servers import free_port
from .production_servers import (
    Served,
    certificate,
    gunicorn_command,
    module_or_skip,
    serve,
    worker_count,
)
from .server_checks import *  # noqa: F403 (the shared checks are this module's tests too)
from .server_checks import stops_cleanly

APP = "tests.server_apps:flask_app()"
SETUPS = {
    "sync": (3, ("--workers", "3")),
    "gthread": (2, ("--workers", "2", "--worker-class", "gthread", "--threads", "8")),
    "preload": (
        3,
        ("--preload", "--workers", "3", "--worker-class", "gthread", "--threads", "4"),
    ),
}


@pytest.fixture(
    scope="module",
    params=[
        pytest.param((setup, store), id=f"{setup}-{store}", marks=marks)
        for setup in SETUPS
        for store, marks in (("sqlite", []), ("redis", [pytest.mark.redis]))
    ],
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    module_or_skip("gunicorn", "gunicorn")
    setup, kind = request.param
    workers, options = SETUPS[setup]
    workdir = tmp_path_factory.mktemp(f"gunicorn-{setup}")
    cert, key = certificate(workdir)
    port = free_port()
    prefix = unique_prefix() if kind == "redis" else None
    store = f"{redis_or_skip()}?prefix={prefix}" if prefix else f"sqlite:///{workdir}/sessions.db"
    command = gunicorn_command(APP, port, cert, key, *options)
    try:
        with serve(
            f"gunicorn-{setup}", command, workdir, store=store, workers=workers, port=port,
            cert=cert,
        ) as server:  # fmt: skip
            yield server
    finally:
        if prefix is not None:
            drop_prefix(prefix)


def test_the_server_kept_its_workers_logged_no_error_and_stops_cleanly(served: Served) -> None:
    assert worker_count(served.process) == served.workers  # none died and was replaced
    stops_cleanly(served)
