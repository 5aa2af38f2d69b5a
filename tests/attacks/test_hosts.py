"""Host header attacks: a request for a host the operator did not name is refused with 400 and
its Host is never reflected (no redirect to it, no absolute URL); with nothing configured only
loopback hosts are served. And the loopback exemption from the HTTPS redirect holds only for a
request whose peer is this machine itself, not one a proxy forwarded."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sessionwarden.asgi import SessionWardenMiddleware
from sessionwarden.events import CallbackSink, Event, EventKind
from sessionwarden.policy import HttpsPolicy, Policy
from sessionwarden.stores import InlineAsyncStore, MemoryStore

from ..conftest import SECRET

pytestmark = pytest.mark.anyio


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"served"})


def _app(policy: Policy, events: list[Event] | None = None) -> SessionWardenMiddleware:
    sink = CallbackSink(events.append) if events is not None else None
    return SessionWardenMiddleware(
        _ok, policy=policy, store=InlineAsyncStore(MemoryStore()), sink=sink
    )


async def _get(
    app: SessionWardenMiddleware,
    url: str,
    *,
    peer: str = "198.51.100.7",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(peer, 50000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, follow_redirects=False) as client:
        return await client.get(url, headers=headers or {})


@pytest.mark.parametrize("scheme", ["https", "http"])
async def test_unknown_host_gets_400_and_is_never_reflected(scheme: str) -> None:
    events: list[Event] = []
    app = _app(Policy(secret_keys=(SECRET,), allowed_hosts=("app.example",)), events)
    for _ in range(3):
        r = await _get(app, f"{scheme}://evil.example/reset?next=/x")
        assert r.status_code == 400
        assert "location" not in r.headers
        assert "evil" not in r.text and "allowed_hosts" in r.text
    refused = [e for e in events if e.kind == EventKind.HOST_REFUSED]
    assert len(refused) == 1 and "allowed_hosts" in str(refused[0].detail["hint"])
    # the named host is served, whatever its port; plain HTTP to it is redirected to it
    assert (await _get(app, "https://app.example/")).status_code == 200
    assert (await _get(app, "https://app.example:8443/")).status_code == 200
    r = await _get(app, "http://app.example/a")
    assert r.status_code == 308 and r.headers["location"] == "https://app.example/a"


async def test_nothing_configured_serves_loopback_hosts_only() -> None:
    app = _app(Policy(secret_keys=(SECRET,)))
    for url in ("https://localhost/", "https://127.0.0.1:8000/", "https://[::1]/"):
        assert (await _get(app, url)).status_code == 200, url
    for url in ("https://app.example/", "https://localhost.evil.example/", "http://10.0.0.1/"):
        r = await _get(app, url)
        assert r.status_code == 400 and "location" not in r.headers, url
        assert "Policy.allowed_hosts" in r.text


async def test_domain_entry_covers_the_domain_and_its_subdomains_only() -> None:
    app = _app(Policy(secret_keys=(SECRET,), allowed_hosts=(".example.com",)))
    for host in ("example.com", "a.example.com", "a.b.example.com"):
        assert (await _get(app, f"https://{host}/")).status_code == 200, host
    for host in ("badexample.com", "example.com.evil.test", "example.co"):
        assert (await _get(app, f"https://{host}/")).status_code == 400, host


@pytest.mark.parametrize("hosts", [("app example",), ("",), ("app..example",), "app.example"])
def test_allowed_hosts_are_validated(hosts: Any) -> None:
    with pytest.raises(ValueError, match="allowed_hosts"):
        Policy(secret_keys=(SECRET,), allowed_hosts=hosts)


# -- the loopback exemption -------------------------------------------------------------------


async def test_plain_http_to_loopback_is_served_only_to_a_local_peer() -> None:
    app = _app(Policy(secret_keys=(SECRET,)))
    assert (await _get(app, "http://localhost/", peer="127.0.0.1")).status_code == 200
    assert (await _get(app, "http://127.0.0.1:8000/", peer="::1")).status_code == 200
    # the same Host from another machine (a port forward, a DNS rebinding) is redirected
    r = await _get(app, "http://localhost/x", peer="198.51.100.7")
    assert r.status_code == 308 and r.headers["location"] == "https://localhost/x"


@pytest.mark.parametrize("proxy", ["10.0.0.2", "127.0.0.1"])
async def test_forwarded_plain_http_is_redirected_whatever_its_host(proxy: str) -> None:
    policy = Policy(secret_keys=(SECRET,), https=HttpsPolicy(trusted_proxies=(proxy,)))
    app = _app(policy)
    r = await _get(
        app,
        "http://localhost/x",
        peer=proxy,
        headers={"x-forwarded-for": "198.51.100.7", "x-forwarded-proto": "http"},
    )
    assert r.status_code == 308 and r.headers["location"] == "https://localhost/x"
    # forwarded over HTTPS by the proxy: served
    r = await _get(
        app,
        "http://localhost/x",
        peer=proxy,
        headers={"x-forwarded-for": "198.51.100.7", "x-forwarded-proto": "https"},
    )
    assert r.status_code == 200
