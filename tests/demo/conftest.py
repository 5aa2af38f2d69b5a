"""The demo served for real: ``python -m sessionwarden.demo`` in a subprocess on 127.0.0.1.

``server`` is parametrised over the SQLite, Redis and PostgreSQL stores (Redis with a key prefix of
its own, deleted afterwards; PostgreSQL with a table of its own in the run's database, which the
demo creates itself; each skipped when its server is absent, failed under ``CI=true``; and, for
the Starlette demo, the Redis Cluster and Sentinel set-ups the run starts), and over
the two apps:
the Starlette demo and its Flask twin (``python -m sessionwarden.demo.flask_main``, the ``flask-``
parameters), which must pass the very same assertions. ``Client`` keeps the
session cookie itself: it is ``__Host-id`` and ``Secure``, which ``http.cookiejar`` refuses to send
over plain HTTP, so it is read from ``Set-Cookie`` and sent back as a ``Cookie`` header.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import (
    REDIS_URL,
    drop_prefix,
    postgres_database,
    redis_or_skip,
    unique_prefix,
    unique_table,
)

SRC = Path(__file__).resolve().parents[2] / "src"
COOKIE = "__Host-id"
USERS = {"alice": "correct-horse", "bob": "battery-staple", "carol": "tr0ub4dor&3"}
DEFAULT_UA = "python-httpx/0.28 (sessionwarden demo tests)"
FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
START_TIMEOUT = 30.0
STARLETTE_DEMO = "sessionwarden.demo"
FLASK_DEMO = "sessionwarden.demo.flask_main"

_META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
_FORM_TOKEN = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]+)">')


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DemoServer:
    base_url: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    store: str
    evil_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def events(self) -> list[str]:
        """The JSON event lines the server wrote to stderr so far."""
        return [
            line
            for line in self.stderr.read_text(errors="replace").splitlines()
            if line.startswith('{"event"')
        ]


@contextlib.contextmanager
def run_demo(
    store: str,
    secret_file: Path,
    workdir: Path,
    *,
    extra_args: Sequence[str] = (),
    evil: bool = False,
    module: str = STARLETTE_DEMO,
) -> Iterator[DemoServer]:
    """Start the demo (``module``: the Starlette one or the Flask one), wait until it answers,
    yield it, and always stop it."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        module,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--store",
        store,
        "--secret-file",
        str(secret_file),
    ]
    for name, password in USERS.items():
        args += ["--user", f"{name}:{password}"]
    evil_port = free_port() if evil else None
    if evil_port is not None:
        args += ["--evil-port", str(evil_port)]
    args += list(extra_args)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env.pop("SESSIONWARDEN_SECRET", None)
    workdir.mkdir(parents=True, exist_ok=True)
    out_path = workdir / f"demo-{port}.out"
    err_path = workdir / f"demo-{port}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(args, cwd=workdir, env=env, stdout=out, stderr=err)
    server = DemoServer(
        base_url=f"http://127.0.0.1:{port}",
        process=proc,
        stdout=out_path,
        stderr=err_path,
        store=store,
        evil_url=f"http://localhost:{evil_port}/" if evil_port is not None else None,
    )
    try:
        _wait_until_up(server, evil_port)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _wait_until_up(server: DemoServer, evil_port: int | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    urls = [server.base_url + "/static/demo.css"]
    if evil_port is not None:
        urls.append(f"http://127.0.0.1:{evil_port}/")
    while True:
        if server.process.poll() is not None:
            pytest.fail(f"the demo exited with {server.process.returncode}:\n{server.output()}")
        try:
            if all(httpx.get(u, timeout=1).status_code == 200 for u in urls):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the demo did not start within {START_TIMEOUT} s:\n{server.output()}")
        time.sleep(0.1)


@pytest.fixture(
    scope="module",
    params=[
        "sqlite",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
        "flask-sqlite",
        pytest.param("flask-redis", marks=pytest.mark.redis),
        pytest.param("flask-postgres", marks=pytest.mark.postgres),
        pytest.param("redis-cluster", marks=pytest.mark.cluster),
        pytest.param("redis-sentinel", marks=pytest.mark.cluster),
    ],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Base URL of a demo process on 127.0.0.1, over the SQLite or the Redis store; the
    ``flask-`` parameters serve the Flask app instead of the Starlette one."""
    param: str = request.param
    workdir = tmp_path_factory.mktemp(f"demo-{param}")
    module = FLASK_DEMO if param.startswith("flask-") else STARLETTE_DEMO
    if param.removeprefix("flask-") == "sqlite":
        with run_demo(
            f"sqlite:///{workdir}/demo.db", workdir / "demo.key", workdir, module=module
        ) as srv:
            yield srv.base_url
        return
    if param.removeprefix("flask-") == "postgres":
        # A table the demo has to create itself (as on an empty database).
        store = f"{postgres_database()}?table={unique_table()}"
        with run_demo(store, workdir / "demo.key", workdir, module=module) as srv:
            yield srv.base_url
        return
    if param in ("redis-cluster", "redis-sentinel"):
        yield from _distributed(param, request, workdir)
        return
    redis_or_skip()
    prefix = unique_prefix()
    try:
        with run_demo(
            f"{REDIS_URL}?prefix={prefix}", workdir / "demo.key", workdir, module=module
        ) as srv:
            yield srv.base_url
    finally:
        drop_prefix(prefix)


def _distributed(param: str, request: pytest.FixtureRequest, workdir: Path) -> Iterator[str]:
    """The Starlette demo on the Redis Cluster or the Sentinel set-up this run started."""
    prefix = unique_prefix()
    if param == "redis-cluster":
        servers = request.getfixturevalue("redis_cluster")
        url = f"redis+cluster://{servers.seed_list}/?prefix={prefix}"
    else:
        servers = request.getfixturevalue("redis_sentinel")
        url = f"redis+sentinel://{servers.sentinel_list}/{servers.name}?prefix={prefix}"
    try:
        with run_demo(url, workdir / "demo.key", workdir) as srv:
            yield srv.base_url
    finally:
        servers.drop_prefix(prefix)


# --------------------------------------------------------------------------------------------
# A client that keeps the session cookie by hand
# --------------------------------------------------------------------------------------------


def set_cookie_value(response: httpx.Response) -> tuple[bool, str | None]:
    """``(present, value)`` of the session cookie in the response; ``value`` is ``None`` when
    the response expires it."""
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name.strip() != COOKIE:
            continue
        value = rest.split(";", 1)[0]
        attrs = header.lower()
        if "max-age=0" in attrs or not value:
            return True, None
        return True, value
    return False, None


class Client:
    """One browser: a user agent and a cookie jar holding the session cookie."""

    def __init__(self, base_url: str, *, user_agent: str = DEFAULT_UA) -> None:
        self.base_url = base_url
        self.user_agent = user_agent
        self.cookie: str | None = None
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=15)

    def close(self) -> None:
        self.http.close()

    def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        hdrs = {"user-agent": self.user_agent}
        if self.cookie is not None:
            hdrs["cookie"] = f"{COOKIE}={self.cookie}"
        hdrs.update(headers or {})
        self.http.cookies.clear()
        response = self.http.request(method, path, headers=hdrs, **kw)
        self.http.cookies.clear()
        present, value = set_cookie_value(response)
        if present:
            self.cookie = value
        return response

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def token(self, path: str = "/login") -> str:
        """A CSRF token from a page's meta tag (creating a session when there is none)."""
        response = self.get(path)
        assert response.status_code == 200, (path, response.status_code)
        return page_token(response.text)

    def login(self, user: str = "alice", password: str | None = None) -> httpx.Response:
        token = self.token("/login")
        response = self.post(
            "/login",
            data={
                "username": user,
                "password": USERS[user] if password is None else password,
                "csrf_token": token,
            },
        )
        return response

    def signed_in(self, user: str = "alice") -> Client:
        response = self.login(user)
        assert response.status_code == 303, response.text
        return self

    def api_user(self) -> str | None:
        response = self.get("/api/me", headers={"accept": "application/json"})
        if response.status_code == 401:
            return None
        assert response.status_code == 200
        user = response.json()["user"]
        assert isinstance(user, str)
        return user


def page_token(html: str) -> str:
    match = _META_TOKEN.search(html)
    assert match, "no csrf-token meta tag"
    return match.group(1)


def form_token(html: str) -> str:
    match = _FORM_TOKEN.search(html)
    assert match, "no csrf_token form field"
    return match.group(1)


@pytest.fixture
def client(server: str) -> Iterator[Client]:
    c = Client(server)
    yield c
    c.close()


@pytest.fixture
def make_client(server: str) -> Iterator[Any]:
    made: list[Client] = []

    def make(user_agent: str = DEFAULT_UA) -> Client:
        c = Client(server, user_agent=user_agent)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
