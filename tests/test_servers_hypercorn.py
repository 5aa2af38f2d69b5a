"""The Starlette example (``examples/starlette_app.py``) served by hypercorn: HTTP/1.1 and
HTTP/2 over TLS (a self-signed certificate), plain HTTP on a second port, and WebSockets, on the
SQLite store, with real cookie jars (``tests/production_servers.py``): the session cookie's
attributes, CSRF, the security headers, the redirect of plain HTTP to HTTPS, the WebSocket
handshake's checks, and the lifespan reaching the app through the middleware at start and stop,
with nothing logged as an error.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Iterator

import httpx
import pytest

from .live_servers import AGENT, free_port
from .production_servers import (
    Browser,
    Served,
    certificate,
    errors_in,
    module_or_skip,
    serve,
    stop_process,
)

APP = "tests.server_apps:starlette_app()"
HOST = "app.test"  # allowed besides loopback, to see the redirect of a non-loopback host


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    module_or_skip("hypercorn", "hypercorn")
    workdir = tmp_path_factory.mktemp("hypercorn")
    cert, key = certificate(workdir)
    port, plain = free_port(), free_port()
    command = [
        *(sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}"),
        *("--insecure-bind", f"127.0.0.1:{plain}", "--certfile", str(cert)),
        *("--keyfile", str(key), "--log-level", "warning", "--graceful-timeout", "5", APP),
    ]
    with serve(
        "hypercorn", command, workdir, store=f"sqlite:///{workdir}/sessions.db", workers=1,
        port=port, cert=cert, extra_env={"SWTEST_HOSTS": HOST},
    ) as server:  # fmt: skip
        server.plain_port = plain  # type: ignore[attr-defined]
        yield server


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
    "cross-origin-opener-policy": "same-origin",
    "strict-transport-security": "max-age=31536000; includeSubDomains",
}


def _signs_in_writes_and_signs_out(browser: Browser, http2: bool) -> None:
    """The whole session over one protocol: the page, sign-in, a write, sign-out."""
    with browser.client(keep_alive=True, http2=http2) as client:
        origin = {"origin": browser.served.base}
        page = client.get("/")
        assert page.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        data = {"user": "alice", "password": "wonderland", "csrf_token": token.group(1)}
        signed_in = client.post("/login", data=data, headers=origin)
        assert signed_in.status_code == 303
        cookie = signed_in.headers["set-cookie"]
        assert cookie.startswith("__Host-id=")
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"secure", "httponly", "path", "samesite"} <= attributes
        assert "domain" not in attributes and "samesite=lax" in cookie.lower()
        assert "Signed in as alice" in client.get("/").text
        token_now = client.get("/token").json()["token"]
        put = {"key": "k", "value": "v", "csrf_token": token_now}
        assert client.post("/put", data=put, headers=origin).status_code == 200
        assert (
            client.post("/put", data={"key": "k", "value": "x"}, headers=origin).status_code == 403
        )
        evil = {"origin": "https://evil.test"}
        assert client.post("/put", data={**put, "value": "x"}, headers=evil).status_code == 403
        assert client.get("/state").json()["data"] == {"k": "v"}
        out = client.post("/logout", data={"csrf_token": token_now}, headers=origin)
        assert out.status_code == 303
        assert client.get("/state").json()["user"] is None


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "h2"])
def test_a_session_over_tls(served: Served, http2: bool) -> None:
    _signs_in_writes_and_signs_out(served.browser(), http2)


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "h2"])
def test_security_headers_and_the_csp_nonce(served: Served, http2: bool) -> None:
    with served.browser().client(http2=http2) as client:
        page = client.get("/")
    for name, value in SECURITY_HEADERS.items():
        assert page.headers.get(name) == value, name
    csp = page.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce is not None and f'<script nonce="{nonce.group(1)}">' in page.text
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp


def test_plain_http_is_redirected_to_https_but_on_loopback(served: Served) -> None:
    plain = f"http://127.0.0.1:{served.plain_port}"  # type: ignore[attr-defined]
    with httpx.Client(headers={"user-agent": AGENT}) as client:
        moved = client.get(plain + "/state?x=1", headers={"host": HOST})
        assert moved.status_code == 308
        assert moved.headers["location"] == f"https://{HOST}/state?x=1"
        assert "set-cookie" not in moved.headers
        assert "strict-transport-security" not in moved.headers  # HSTS over HTTPS only
        local = client.get(plain + "/state")  # a loopback host from a loopback peer: served
        assert local.status_code == 200 and local.json()["user"] is None


def test_a_websocket_handshake_is_checked_and_carries_the_session(served: Served) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    browser = served.browser()
    browser.sign_in()
    cookie = {"cookie": f"__Host-id={browser.cookie()}"}
    url = served.base.replace("https", "wss") + "/ws"

    async def scenario() -> tuple[dict[str, object], int]:
        async with connect(
            url, ssl=served.tls, origin=served.base, additional_headers=cookie,  # type: ignore[arg-type]
            user_agent_header=AGENT, open_timeout=10,
        ) as ws:  # fmt: skip
            greeting = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send("echo")
            assert await asyncio.wait_for(ws.recv(), 10) == "echo"
        try:
            async with connect(
                url, ssl=served.tls, origin="https://evil.test", additional_headers=cookie,  # type: ignore[arg-type]
                user_agent_header=AGENT, open_timeout=10,
            ):  # fmt: skip
                pass
        except InvalidStatus as refused:
            return greeting, refused.response.status_code
        raise AssertionError("a cross-site handshake was accepted")

    greeting, status = asyncio.run(scenario())
    assert greeting["user"] == "alice"
    assert status == 403  # an HTTP refusal (hypercorn supports websocket.http.response)


def test_the_lifespan_reaches_the_app_and_the_server_stops_cleanly(served: Served) -> None:
    assert "lifespan: lifespan.startup.complete" in served.log_text()
    assert errors_in(served.log_text()) == []
    stop_process(served.process)
    assert served.process.returncode == 0, served.log_text()[-3000:]
    log = served.log_text()
    assert "lifespan: lifespan.shutdown.complete" in log
    assert errors_in(log) == []
