"""Behind a Unix-socket proxy requests carry no client address (ASGI ``client=None``, an empty
``REMOTE_ADDR``) and every IP-based defence is silently off. Both adapters warn once per process
(``config.client_address_missing``) when that happens while those defences are on."""

from __future__ import annotations

import io
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from sessionwarden.asgi import SessionWardenMiddleware
from sessionwarden.events import CallbackSink, Event, EventKind
from sessionwarden.guard import ip_defences_blind
from sessionwarden.policy import MonitorPolicy, Policy
from sessionwarden.stores import InlineAsyncStore, MemoryStore
from sessionwarden.wsgi import SessionWardenWSGI

from .conftest import SECRET

ON = Policy(secret_keys=(SECRET,))
OFF = Policy(
    secret_keys=(SECRET,),
    monitor=MonitorPolicy(fingerprint=False, unknown_id_limit_per_minute=0),
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_the_condition() -> None:
    assert ip_defences_blind(ON, "")
    assert not ip_defences_blind(ON, "198.51.100.7")
    assert not ip_defences_blind(OFF, "")


async def _asgi_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _scope(client: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "scheme": "https",
        "path": "/",
        "headers": [(b"host", b"localhost")],
        "client": client,
    }


@pytest.mark.anyio
@pytest.mark.parametrize(("policy", "expected"), [(ON, 1), (OFF, 0)])
async def test_asgi_warns_once_when_client_is_none(policy: Policy, expected: int) -> None:
    events: list[Event] = []
    mw = SessionWardenMiddleware(
        _asgi_app,
        policy=policy,
        store=InlineAsyncStore(MemoryStore()),
        sink=CallbackSink(events.append),
    )

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    await mw(_scope(("198.51.100.7", 1)), receive, send)
    for _ in range(3):
        await mw(_scope(None), receive, send)
    warned = [e for e in events if e.kind == EventKind.CLIENT_ADDRESS_MISSING]
    assert len(warned) == expected
    if warned:
        assert "trusted_proxies" in str(warned[0].detail["hint"])


@pytest.mark.parametrize(("policy", "expected"), [(ON, 1), (OFF, 0)])
def test_wsgi_warns_once_when_remote_addr_is_empty(policy: Policy, expected: int) -> None:
    events: list[Event] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    mw = SessionWardenWSGI(
        app, policy=policy, store=MemoryStore(), sink=CallbackSink(events.append)
    )
    for remote in ("198.51.100.7", "", "", ""):
        environ: dict[str, Any] = {}
        setup_testing_defaults(environ)
        environ.update(
            {"REMOTE_ADDR": remote, "HTTP_HOST": "localhost", "wsgi.input": io.BytesIO()}
        )
        b"".join(mw(environ, lambda *a: lambda d: None))
    assert sum(e.kind == EventKind.CLIENT_ADDRESS_MISSING for e in events) == expected
