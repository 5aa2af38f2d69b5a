"""In-process drivers: call an ASGI or WSGI app directly, carrying cookies like a browser.

No HTTP client sits between the benchmark and the app, so what is measured is the stack itself.
Every request sends the same browser-like headers whatever the stack, and checks the status and
(for session rows) the body, so a stack that silently stopped loading its session fails loudly.
"""

from __future__ import annotations

import io
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

HOST = "app.test"
CLIENT_IP = "127.0.0.1"
UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
BROWSER_HEADERS: tuple[tuple[str, str], ...] = (
    ("host", HOST),
    ("user-agent", UA),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("accept-language", "en-GB,en;q=0.9"),
    ("accept-encoding", "gzip, deflate, br"),
    ("sec-fetch-site", "same-origin"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
)
SECRET = b"bench-secret-key-0123456789abcdef-0123456789"
REDIS_URL = os.environ.get("SESSIONWARDEN_BENCH_REDIS", "redis://127.0.0.1:6379/0")
#: The PostgreSQL server's maintenance database; each benchmark creates a database of its own.
POSTGRES_ADMIN_URL = os.environ.get(
    "SESSIONWARDEN_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
USER = "alice"


class BenchError(Exception):
    """A stack answered with the wrong status or body."""


class NotInstalled(Exception):
    """A peer's packages are missing."""


class Unavailable(Exception):
    """A service the row needs (Redis) is not reachable."""


def unique_prefix(kind: str) -> str:
    return f"swbench:{kind}:{uuid.uuid4().hex[:10]}:"


def redis_ok() -> bool:
    try:
        import redis
    except ImportError:
        return False
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        client.ping()
        client.close()
    except Exception:
        return False
    return True


def postgres_database(kind: str) -> str:
    """Create a database of its own for one benchmark and return its URL (schema created);
    :class:`Unavailable` when PostgreSQL cannot be reached, :class:`NotInstalled` without
    psycopg."""
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
    except ImportError as exc:
        raise NotInstalled(str(exc)) from None
    name = f"swbench_{kind}_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as exc:
        raise Unavailable(f"PostgreSQL at {POSTGRES_ADMIN_URL} unreachable: {exc}") from None
    params = conninfo_to_dict(POSTGRES_ADMIN_URL)
    url = (
        f"postgresql://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:"
        f"{params.get('port', '5432')}/{name}"
    )
    from sessionwarden.stores.postgres import init_schema

    init_schema(url)
    return url


def drop_postgres_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def postgres_server_version() -> str:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=1) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]).split()[0] if row else "?"
    except Exception:
        return "unreachable"


def drop_prefix(prefix: str) -> int:
    """Delete every Redis key under ``prefix`` (SCAN + UNLINK in batches)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    pattern = "".join("\\" + c if c in "\\*?[]{}" else c for c in prefix) + "*"
    removed = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            removed += int(client.unlink(*batch))
            batch.clear()
    if batch:
        removed += int(client.unlink(*batch))
    client.close()
    return removed


class CookieJar:
    """Name -> value, updated from Set-Cookie headers (deletions included)."""

    __slots__ = ("_header", "values")

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self._header: str | None = None

    def clear(self) -> None:
        self.values.clear()
        self._header = None

    def update(self, set_cookie: str) -> None:
        first, _, attrs = set_cookie.partition(";")
        name, _, value = first.partition("=")
        name = name.strip()
        lower = attrs.lower()
        if "max-age=0" in lower or "01 jan 1970" in lower or value.strip() in ("", "''", '""'):
            self.values.pop(name, None)
        else:
            self.values[name] = value.strip()
        self._header = None

    def header(self) -> str:
        if self._header is None:
            self._header = "; ".join(f"{k}={v}" for k, v in self.values.items())
        return self._header


# -- ASGI --------------------------------------------------------------------------------------

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


class AsgiClient:
    """Drives an ASGI app in the running event loop."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.jar = CookieJar()
        self._base = [(n.encode(), v.encode()) for n, v in BROWSER_HEADERS]

    async def request(
        self,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        hdrs = list(self._base)
        hdrs.extend((n.encode(), v.encode()) for n, v in headers)
        cookie = self.jar.header()
        if cookie:
            hdrs.append((b"cookie", cookie.encode("latin-1")))
        if body:
            hdrs.append((b"content-length", str(len(body)).encode()))
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "https",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": hdrs,
            "client": (CLIENT_IP, 50000),
            "server": (HOST, 443),
            "state": {},
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        status = 0
        out_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status, out_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                out_headers = list(message.get("headers") or [])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        for name, value in out_headers:
            if name.lower() == b"set-cookie":
                self.jar.update(value.decode("latin-1"))
        return status, b"".join(chunks), out_headers


# -- WSGI --------------------------------------------------------------------------------------

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


class WsgiClient:
    """Drives a WSGI app synchronously."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.jar = CookieJar()
        base: dict[str, Any] = {
            "SERVER_NAME": HOST,
            "SERVER_PORT": "443",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "REMOTE_ADDR": CLIENT_IP,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in BROWSER_HEADERS:
            base["HTTP_" + name.upper().replace("-", "_")] = value
        self._base = base

    def request(
        self,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> tuple[int, bytes, list[tuple[str, str]]]:
        environ = dict(self._base)
        environ["REQUEST_METHOD"] = method
        environ["PATH_INFO"] = path
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body)) if body else ""
        for name, value in headers:
            if name.lower() == "content-type":
                environ["CONTENT_TYPE"] = value
            else:
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        cookie = self.jar.header()
        if cookie:
            environ["HTTP_COOKIE"] = cookie
        status_line = ""
        out_headers: list[tuple[str, str]] = []

        def start_response(
            status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            nonlocal status_line, out_headers
            status_line = status
            out_headers = list(response_headers)
            return lambda data: None

        result = self.app(environ, start_response)
        try:
            payload = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        for name, value in out_headers:
            if name.lower() == "set-cookie":
                self.jar.update(value)
        return int(status_line.split(" ", 1)[0] or 0), payload, out_headers


def expect(status: int, body: bytes, want_status: int, want_body: bytes | None, what: str) -> None:
    if status != want_status or (want_body is not None and body != want_body):
        raise BenchError(
            f"{what}: got {status} {body[:120]!r}, expected {want_status}"
            + ("" if want_body is None else f" {want_body!r}")
        )


# -- rows --------------------------------------------------------------------------------------


class Row:
    """One line of the table: a stack and the request measured on it."""

    name = ""
    #: Name of the row this one is divided by in the "x framework" column.
    base = ""
    #: ``True`` when the row needs the Redis server.
    redis = False

    def setup(self) -> None:
        """Build the stack and reach the steady state (signed in, cookies held)."""

    def run(self, n: int) -> None:
        """Issue ``n`` requests, checking each answer."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections, files and Redis keys."""


class AsyncRow(Row):
    """A row driven on the shared event loop; subclasses define ``asetup``/``one``/``aclose``."""

    loop: Any = None

    def setup(self) -> None:
        self.loop.run_until_complete(self.asetup())

    def run(self, n: int) -> None:
        self.loop.run_until_complete(self._many(n))

    def close(self) -> None:
        self.loop.run_until_complete(self.aclose())

    async def _many(self, n: int) -> None:
        one = self.one
        for _ in range(n):
            await one()

    async def asetup(self) -> None:
        return None

    async def one(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


# -- report ------------------------------------------------------------------------------------

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def write_section(name: str, text: str) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md, leaving the others alone."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    try:
        with open(RESULTS, encoding="utf-8") as f:
            current = f.read()
    except FileNotFoundError:
        current = (
            "# sessionwarden benchmark results\n\n"
            "Written by `bench/run.py`, `bench/http.py` and `bench/scale.py`.\n\n"
        )
    if start in current and end in current:
        head, _, rest = current.partition(start)
        _, _, tail = rest.partition(end)
        current = head + block + tail.lstrip("\n")
    else:
        current = current.rstrip("\n") + "\n\n" + block
    with open(RESULTS, "w", encoding="utf-8") as f:
        f.write(current)


def machine() -> dict[str, str]:
    import platform

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


PACKAGES = (
    "starlette",
    "starsessions",
    "starlette-csrf",
    "secure",
    "flask",
    "werkzeug",
    "flask-session",
    "flask-wtf",
    "flask-login",
    "django",
    "redis",
    "psycopg",
    "psycopg-pool",
    "uvicorn",
    "httptools",
    "uvloop",
)


def versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def redis_server_version() -> str:
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        info = client.info("server")
        client.close()
        return str(info.get("redis_version", "?"))
    except Exception:
        return "unreachable"


def environment_block() -> str:
    import datetime

    m = machine()
    lines = [
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['os']}",
        f"- Python {m['python']}, Redis server {redis_server_version()},"
        f" PostgreSQL server {postgres_server_version()}",
        "- load average when written (1/5/15 min): "
        + " / ".join(f"{x:.2f}" for x in os.getloadavg())
        + " (other jobs share this machine; compare rows of one run, not runs)",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
    ]
    return "\n".join(lines)
