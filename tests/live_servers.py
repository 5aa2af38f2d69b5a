"""Several uvicorn processes sharing one store, and a measure of how soon a session ended in one
closes the connections another holds open (``tests/test_live_processes.py`` and
``bench/live_close.py``).

The app (``uvicorn --factory tests.live_servers:app``) reads its store URL and secret from the
environment. Its routes are plain ``GET`` requests to keep the harness small: ``/login?user=``,
``/revoke?user=`` (every session of the user, as "sign out everywhere" does), ``/ws`` (greets
with ``{"user": ...}``, then echoes) and ``/events`` (an endless event stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
COOKIE = "__Host-id"
START_TIMEOUT = 30.0
#: One browser for every request of a session (another one would be an anomaly, and refused).
AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


# -- the app -----------------------------------------------------------------------------------


def app() -> Any:
    """The app behind :class:`~sessionwarden.asgi.SessionWardenMiddleware`."""
    from sessionwarden.asgi import SessionWardenMiddleware
    from sessionwarden.policy import Policy

    policy = Policy(secret_keys=(os.environ["SWLIVE_SECRET"].encode(),))
    return SessionWardenMiddleware(_routes(), policy=policy, store=os.environ["SWLIVE_STORE"])


def failing() -> Any:
    """A bare ASGI app (no framework, so no error middleware of its own) behind the middleware:
    ``/boom`` raises before starting its response, ``/late`` after sending its first part."""
    from sessionwarden.asgi import SessionWardenMiddleware
    from sessionwarden.policy import Policy

    async def raw(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/late":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("internal detail: db password rejected")

    policy = Policy(secret_keys=(os.environ["SWLIVE_SECRET"].encode(),))
    return SessionWardenMiddleware(raw, policy=policy, store=os.environ["SWLIVE_STORE"])


def bare() -> Any:
    """The same app without the middleware (its WebSocket greets with no user)."""
    return _routes()


def _routes() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    from sessionwarden.asgi import get_middleware, get_session

    async def login(request: Request) -> Response:
        get_session(request).login(request.query_params["user"])
        return PlainTextResponse("ok")

    async def revoke(request: Request) -> Response:
        ended = await get_middleware(request).revoke_user(request.query_params["user"])
        return PlainTextResponse(str(len(ended)))

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        session = websocket.scope.get("session")
        await websocket.send_json({"user": session.user_id if session is not None else None})
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.send_text(await websocket.receive_text())

    async def events(request: Request) -> Response:
        async def forever() -> AsyncIterator[bytes]:
            while True:
                yield b"data: tick\n\n"
                await asyncio.sleep(0.05)

        return StreamingResponse(forever(), media_type="text/event-stream")

    routes = [
        Route("/login", login),
        Route("/revoke", revoke),
        Route("/events", events),
        WebSocketRoute("/ws", ws),
    ]
    return Starlette(routes=routes)


# -- the processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def servers(store: str, count: int, log_dir: Path, factory: str = "app") -> Iterator[list[Server]]:
    """``count`` uvicorn processes on free loopback ports, all on ``store``; stopped by PID.
    ``factory``: ``app`` (with the middleware), ``bare`` or ``failing``."""
    env = server_env(SWLIVE_STORE=store, SWLIVE_SECRET="live-test-secret-" + "x" * 32)
    started: list[Server] = []
    try:
        for _ in range(count):
            port = free_port()
            cmd = [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                f"tests.live_servers:{factory}",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--ws",
                "websockets",
            ]
            log = (log_dir / f"live-{port}.log").open("wb")
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
            started.append(Server(port, proc))
        for server in started:
            _wait_up(server)
        yield started
    finally:
        for server in started:
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        for server in started:
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(timeout=10)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (unless it has exited), then SIGKILL if it is not gone within 10 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def server_env(**extra: str) -> dict[str, str]:
    """The environment of a test server's process: this checkout's ``src`` and its tests
    importable ahead of anything installed, and ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def wait_answering(
    proc: subprocess.Popen[bytes],
    urls: Iterable[str],
    name: str,
    log: Path | None = None,
    verify: Any = True,
) -> None:
    """Wait until every one of ``urls`` answers (any answer, a 404 too: the server is up);
    ``RuntimeError`` (with the tail of ``log``) when the process exits first or
    :data:`START_TIMEOUT` passes."""
    deadline = time.monotonic() + START_TIMEOUT
    pending = list(urls)

    def failed(what: str) -> RuntimeError:
        tail = log.read_text(errors="replace")[-2000:] if log is not None else ""
        return RuntimeError(f"{name} {what}: {tail}")

    while pending:
        if proc.poll() is not None:
            raise failed(f"exited with {proc.returncode}")
        for url in list(pending):
            try:
                httpx.get(url, verify=verify, timeout=1)
                pending.remove(url)
            except httpx.HTTPError:
                pass
        if not pending:
            return
        if time.monotonic() > deadline:
            raise failed("did not start")
        time.sleep(0.1)


def _wait_up(server: Server) -> None:
    wait_answering(server.process, [server.http + "/absent"], f"uvicorn on {server.port}")


# -- one measurement -------------------------------------------------------------------------------


async def _sign_in(client: httpx.AsyncClient, server: Server, user: str) -> str:
    r = await client.get(server.http + "/login", params={"user": user})
    r.raise_for_status()
    for header in r.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name == COOKIE:
            return rest.split(";", 1)[0]
    raise AssertionError("no session cookie")


async def websocket_close(
    client: httpx.AsyncClient, holder: Server, revoker: Server, user: str
) -> tuple[float, int]:
    """Open a WebSocket on ``holder``, end its session through ``revoker``; the seconds from
    the revocation's request to the close arriving, and the close code."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    cookie = await _sign_in(client, holder, user)
    async with connect(
        f"ws://127.0.0.1:{holder.port}/ws",
        origin=holder.http,  # type: ignore[arg-type]
        additional_headers={"cookie": f"{COOKIE}={cookie}"},
        user_agent_header=AGENT,
        open_timeout=10,
    ) as ws:
        greeting = await asyncio.wait_for(ws.recv(), 10)
        assert user in str(greeting), greeting
        started = time.monotonic()
        r = await client.get(revoker.http + "/revoke", params={"user": user})
        assert r.text == "1", r.text
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as closed:
            elapsed = time.monotonic() - started
            code = closed.rcvd.code if closed.rcvd is not None else -1
            return elapsed, code
    raise AssertionError("unreachable")


async def event_stream_end(
    client: httpx.AsyncClient, holder: Server, revoker: Server, user: str
) -> tuple[float, int]:
    """Open an event stream on ``holder``, end its session through ``revoker``; the seconds
    until the stream ended, and the number of events received."""
    cookie = await _sign_in(client, holder, user)
    events = 0
    started = 0.0
    headers = {"cookie": f"{COOKIE}={cookie}"}
    async with client.stream("GET", holder.http + "/events", headers=headers) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_bytes():
            events += chunk.count(b"data:")
            if started == 0.0:
                started = time.monotonic()
                r = await client.get(revoker.http + "/revoke", params={"user": user})
                assert r.text == "1", r.text
    return time.monotonic() - started, events


async def measure(store_servers: list[Server], kind: str, runs: int) -> list[float]:
    """``runs`` closes, the holder and the revoker being different processes."""
    holder, revoker = store_servers[0], store_servers[1]
    latencies: list[float] = []
    timeout = httpx.Timeout(10, read=30)
    async with httpx.AsyncClient(timeout=timeout, headers={"user-agent": AGENT}) as client:
        for n in range(runs):
            user = f"user-{os.getpid()}-{n}-{time.monotonic_ns()}"
            if kind == "websocket":
                elapsed, code = await websocket_close(client, holder, revoker, user)
                assert code == 1008, code
            else:
                elapsed, _ = await event_stream_end(client, holder, revoker, user)
            latencies.append(elapsed)
    return latencies


async def echo_rate(server: Server, messages: int, cookie: str | None = None) -> float:
    """Messages per second echoed over one open WebSocket: ``messages`` sent by one task while
    another receives them (the server echoes each)."""
    from websockets.asyncio.client import connect

    headers = {"cookie": f"{COOKIE}={cookie}"} if cookie else {}
    async with connect(
        f"ws://127.0.0.1:{server.port}/ws",
        origin=server.http,  # type: ignore[arg-type]
        additional_headers=headers,
        user_agent_header=AGENT,
        compression=None,
    ) as ws:
        await ws.recv()  # the greeting
        payload = "x" * 64

        async def send_all() -> None:
            for _ in range(messages):
                await ws.send(payload)

        started = time.perf_counter()
        sender = asyncio.create_task(send_all())
        for _ in range(messages):
            await ws.recv()
        await sender
        return messages / (time.perf_counter() - started)


async def signed_in_cookie(server: Server, user: str) -> str:
    async with httpx.AsyncClient(headers={"user-agent": AGENT}) as client:
        return await _sign_in(client, server, user)


def self_signed_certificate(directory: Path, dns_name: str | None = None) -> tuple[Path, Path, str]:
    """A self-signed certificate for 127.0.0.1 (and ``dns_name``) as PEM files in ``directory``
    (``cert.pem``, ``key.pem``), and its SPKI pin (base64 SHA-256 of the public key, as
    Chromium's ``--ignore-certificate-errors-spki-list`` takes it). A client trusts exactly this
    certificate by loading ``cert.pem`` as its only CA."""
    import base64
    import datetime
    import hashlib
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name or "127.0.0.1")])
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if dns_name is not None:
        names.insert(0, x509.DNSName(dns_name))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return cert_path, key_path, base64.b64encode(hashlib.sha256(spki).digest()).decode()
