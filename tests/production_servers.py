"""The production servers the tests run the apps of ``tests/server_apps.py`` under: gunicorn
(sync, gthread, ``--preload``, uvicorn's worker class), uvicorn with ``--workers`` and
hypercorn, each over TLS with a self-signed certificate on a free loopback port, stopped by PID.

A :class:`Browser` is one user agent: one cookie jar (the real one of ``http.cookiejar``, which
keeps the ``__Host-id`` cookie and sends it over HTTPS only), one User-Agent, and an ``Origin``
on its posts. By default each request goes over a connection of its own, so that the server's
workers take turns; :meth:`Browser.pinned` keeps one connection (one worker).
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import importlib.util
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import IN_CI
from .live_servers import (
    AGENT,
    ROOT,
    START_TIMEOUT,
    self_signed_certificate,
    server_env,
    stop_process,
    wait_answering,
)
from .server_apps import PID_HEADER

SECRET = "5e" * 32
#: Fresh connections tried before concluding that a worker never answers.
SPREAD_TRIES = 300


def module_or_skip(module: str, what: str) -> None:
    """Skip (or fail under ``CI=true``) when ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        message = f"{what} is not installed (pip install -e '.[test]')"
        if IN_CI:
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(message)


@dataclass
class Served:
    """One server: its URL, its process (the master, or the only one), its log, how many
    worker processes answer requests, and a TLS context trusting its certificate alone."""

    name: str
    base: str
    process: subprocess.Popen[bytes]
    log: Path
    workers: int
    tls: ssl.SSLContext

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def browser(self, agent: str = AGENT) -> Browser:
        return Browser(self, agent)


class Browser:
    def __init__(self, served: Served, agent: str) -> None:
        self.served = served
        self.jar = http.cookiejar.CookieJar()
        self.agent = agent

    def client(self, *, keep_alive: bool = False, http2: bool = False) -> httpx.Client:
        limits = httpx.Limits(max_keepalive_connections=1 if keep_alive else 0)
        return httpx.Client(
            base_url=self.served.base,
            verify=self.served.tls,
            cookies=self.jar,  # a CookieJar is used as it is, shared by this browser's clients
            headers={"user-agent": self.agent},
            limits=limits,
            timeout=httpx.Timeout(20.0),
            http2=http2,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if method == "POST":
            kwargs.setdefault("headers", {}).setdefault("origin", self.served.base)
        with self.client() as client:
            return client.request(method, path, **kwargs)

    def cookie(self) -> str | None:
        for cookie in self.jar:
            if cookie.name == "__Host-id":
                return cookie.value
        return None

    def replay(self, cookie: str) -> httpx.Response:
        """A GET of ``/state`` presenting ``cookie`` (whatever the jar holds), as an attacker
        replaying a copied cookie would."""
        return self.request("GET", "/state", headers={"cookie": f"__Host-id={cookie}"})

    def token(self) -> tuple[str, int]:
        r = self.request("GET", "/token")
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()["token"], worker(r)

    def sign_in(self, user: str = "alice", password: str = "wonderland") -> None:
        token, _ = self.token()
        data = {"user": user, "password": password, "csrf_token": token}
        r = self.request("POST", "/login", data=data)
        assert r.status_code == 303, (r.status_code, r.text)
        assert self.state()["user"] == user

    def put(self, key: str, value: str, token: str | None = None) -> httpx.Response:
        if token is None:
            token, _ = self.token()
        return self.request("POST", "/put", data={"key": key, "value": value, "csrf_token": token})

    def state(self) -> dict[str, Any]:
        r = self.request("GET", "/state")
        assert r.status_code == 200, (r.status_code, r.text)
        found: dict[str, Any] = r.json()
        return found

    def each_worker(
        self, send: Callable[[], httpx.Response] | None = None
    ) -> dict[int, list[httpx.Response]]:
        """``send()`` (a GET of ``/state`` by default) on fresh connections until every
        worker answered at least once; the responses by worker."""
        send = send or (lambda: self.request("GET", "/state"))
        seen: dict[int, list[httpx.Response]] = {}
        for _ in range(SPREAD_TRIES):
            r = send()
            seen.setdefault(worker(r), []).append(r)
            if len(seen) == self.served.workers:
                return seen
        raise AssertionError(f"{len(seen)} of {self.served.workers} workers answered: {seen}")

    def on_another_worker(
        self, than: int, send: Callable[[], httpx.Response] | None = None
    ) -> tuple[httpx.Response, list[httpx.Response]]:
        """``send()`` on fresh connections until a worker other than ``than`` answers; its
        response, and every response of ``than`` before it."""
        send = send or (lambda: self.request("GET", "/state"))
        before: list[httpx.Response] = []
        for _ in range(SPREAD_TRIES):
            r = send()
            if worker(r) != than:
                return r, before
            before.append(r)
        raise AssertionError(f"only worker {than} answered")

    @contextlib.contextmanager
    def pinned(self, not_on: int | None = None) -> Iterator[tuple[httpx.Client, int]]:
        """A client whose one kept-alive connection is served by one worker (not ``not_on``),
        and that worker's PID (servers that keep connections alive: not gunicorn's sync)."""
        for _ in range(SPREAD_TRIES):
            client = self.client(keep_alive=True)
            r = client.get("/state")
            if worker(r) != not_on:
                try:
                    yield client, worker(r)
                finally:
                    client.close()
                return
            client.close()
        raise AssertionError(f"only worker {not_on} answered")


def worker(response: httpx.Response) -> int:
    return int(response.headers[PID_HEADER])


def tls_context(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


@contextlib.contextmanager
def serve(
    name: str,
    command: Sequence[str],
    workdir: Path,
    *,
    store: str,
    workers: int,
    port: int,
    cert: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Served]:
    """Run ``command`` (a server on 127.0.0.1:``port`` over TLS with ``cert``), wait until
    every one of its ``workers`` answered, yield it, then stop it by PID."""
    env = server_env(SESSIONWARDEN_STORE=store, SESSIONWARDEN_SECRET=SECRET, **(extra_env or {}))
    env.pop("GUNICORN_CMD_ARGS", None)
    log = workdir / f"{name}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(list(command), cwd=ROOT, env=env, stdout=out, stderr=out)
    served = Served(name, f"https://127.0.0.1:{port}", process, log, workers, tls_context(cert))
    try:
        wait_answering(process, [served.base + "/state"], name, log, verify=served.tls)
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # every worker up (the others may still be importing the app)
            try:
                served.browser().each_worker()
                break
            except AssertionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
        yield served
    finally:
        stop_process(process)


def certificate(workdir: Path) -> tuple[Path, Path]:
    cert, key, _ = self_signed_certificate(workdir)
    return cert, key


def gunicorn_command(app: str, port: int, cert: Path, key: str | Path, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--certfile",
        str(cert),
        "--keyfile",
        str(key),
        "--log-level",
        "warning",
        "--graceful-timeout",
        "5",
        *options,
        app,
    ]


def errors_in(log: str) -> list[str]:
    """The lines of a server's log that report an error (a traceback, an exception, a 500, a
    locked database)."""
    marks = ("Traceback", "Error", "ERROR", "Exception", "database is locked", "[CRITICAL]")
    return [line for line in log.splitlines() if any(m in line for m in marks)]


def worker_count(process: subprocess.Popen[bytes]) -> int:
    """The master's child processes now (Linux)."""
    path = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    return len(path.read_text().split()) if path.exists() else -1
