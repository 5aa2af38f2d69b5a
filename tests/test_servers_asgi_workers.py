"""The Starlette example (``examples/starlette_app.py``, through the ASGI middleware) served by
several worker processes sharing one store: uvicorn with ``--workers 2`` (each worker a new
interpreter that imports the app), and gunicorn with uvicorn's worker class, 2 workers and
``--preload`` (the app, and so the store, made in the master before it forks). Each on the
SQLite store and on the Redis store (a key prefix of its own), over TLS, with real cookie jars.
The checks shared with the gunicorn/Flask set-ups are in ``tests/server_checks.py``; here too:
a WebSocket held by one worker is closed when its session is ended through another
(``docs/websockets.md``, "Every process").
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import drop_prefix, redis_or_skip, unique_prefix
from .live_servers import AGENT, free_port
from .production_servers import (
    Served,
    certificate,
    gunicorn_command,
    module_or_skip,
    serve,
    worker,
    worker_count,
)
from .server_checks import *  # noqa: F403 (the shared checks are this module's tests too)
from .server_checks import stops_cleanly

APP = "tests.server_apps:starlette_app"


def uvicorn_worker_class() -> str:
    """uvicorn's gunicorn worker class: ``uvicorn.workers`` in the uvicorn versions that still
    have it, else the ``uvicorn-worker`` package."""
    module_or_skip("gunicorn", "gunicorn")
    if importlib.util.find_spec("uvicorn.workers") is not None:
        return "uvicorn.workers.UvicornWorker"
    module_or_skip("uvicorn_worker", "uvicorn's gunicorn worker class (uvicorn-worker)")
    return "uvicorn_worker.UvicornWorker"


def _command(setup: str, port: int, cert: Path, key: Path) -> list[str]:
    if setup == "gunicorn-uvicorn":
        options = ("--preload", "--workers", "2", "--worker-class", uvicorn_worker_class())
        return gunicorn_command(APP + "()", port, cert, key, *options)
    module_or_skip("uvicorn", "uvicorn")
    return [
        *(sys.executable, "-m", "uvicorn", "--factory", APP, "--workers", "2"),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        *("--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--ws", "websockets"),
    ]


@pytest.fixture(
    scope="module",
    params=[
        pytest.param((setup, store), id=f"{setup}-{store}", marks=marks)
        for setup in ("uvicorn-workers", "gunicorn-uvicorn")
        for store, marks in (("sqlite", []), ("redis", [pytest.mark.redis]))
    ],
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    setup, kind = request.param
    workdir = tmp_path_factory.mktemp(setup)
    cert, key = certificate(workdir)
    port = free_port()
    command = _command(setup, port, cert, key)
    prefix = unique_prefix() if kind == "redis" else None
    store = f"{redis_or_skip()}?prefix={prefix}" if prefix else f"sqlite:///{workdir}/sessions.db"
    try:
        with serve(setup, command, workdir, store=store, workers=2, port=port, cert=cert) as s:
            yield s
    finally:
        if prefix is not None:
            drop_prefix(prefix)


def test_a_websocket_on_one_worker_is_closed_by_a_revocation_on_another(served: Served) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    browser = served.browser()
    browser.sign_in()
    token, _ = browser.token()
    cookie = browser.cookie()

    async def scenario() -> tuple[int, str]:
        async with connect(
            served.base.replace("https", "wss") + "/ws",
            ssl=served.tls,
            origin=served.base,  # type: ignore[arg-type]
            additional_headers={"cookie": f"__Host-id={cookie}"},
            user_agent_header=AGENT,
            open_timeout=10,
        ) as ws:
            greeting = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert greeting["user"] == "alice"
            holder = greeting["pid"]
            with browser.pinned(not_on=holder) as (client, _):
                data, origin = {"csrf_token": token}, {"origin": served.base}
                r = client.post("/revoke-all", data=data, headers=origin)
                assert r.status_code == 200 and r.json()["ended"] >= 1
                assert worker(r) != holder
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed as closed:
                assert closed.rcvd is not None
                return closed.rcvd.code, closed.rcvd.reason
        raise AssertionError("unreachable")

    assert asyncio.run(scenario()) == (1008, "session ended")


def test_the_server_logged_no_error_and_stops_cleanly(served: Served) -> None:
    if served.name.startswith("gunicorn"):
        assert worker_count(served.process) == served.workers  # none died and was replaced
    stops_cleanly(served)
