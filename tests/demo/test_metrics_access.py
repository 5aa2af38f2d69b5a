"""The demo's ``/metrics`` (both twins): served to a request from this machine, or to another
machine only with ``Authorization: Bearer`` and the configured token; everyone else gets 403
without a single counter, and a proxy on this machine does not make its clients local."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from sessionwarden.demo import create_app, demo_policy
from sessionwarden.demo.flask_app import create_app as create_flask_app
from sessionwarden.demo.users import hash_password

pytest.importorskip("prometheus_client")

TOKEN = "metrics-" + os.urandom(16).hex()
HOST = "demo.test"
SERIES = "sessionwarden_events_total"


def _policy() -> Any:
    return demo_policy(os.urandom(32), allowed_hosts=(HOST,), trusted_proxies=("127.0.0.1",))


def _get(kind: str, peer: str, headers: dict[str, str], token: str | None) -> httpx.Response:
    users = {"alice": hash_password("pw")}
    base = f"https://{HOST}"
    if kind == "asgi":
        app = create_app(store="memory://", policy=_policy(), users=users, metrics_token=token)

        async def fetch() -> httpx.Response:
            transport = httpx.ASGITransport(app=app, client=(peer, 50000))
            async with httpx.AsyncClient(transport=transport, base_url=base) as http:
                return await http.get("/metrics", headers=headers)

        import anyio

        return anyio.run(fetch)
    flask_app = create_flask_app(
        store="memory://", policy=_policy(), users=users, metrics_token=token
    )
    transport = httpx.WSGITransport(app=flask_app, remote_addr=peer)
    with httpx.Client(transport=transport, base_url=base) as http:
        return http.get("/metrics", headers=headers)


KINDS = pytest.mark.parametrize("kind", ["asgi", "wsgi"])


@KINDS
def test_this_machine_reads_metrics(kind: str) -> None:
    response = _get(kind, "127.0.0.1", {}, None)
    assert response.status_code == 200 and SERIES in response.text


@KINDS
@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ({}, None),
        ({}, TOKEN),
        ({"authorization": f"Bearer {TOKEN}"}, None),  # no token configured: nobody else
        ({"authorization": f"Bearer {TOKEN}x"}, TOKEN),
        ({"authorization": f"Basic {TOKEN}"}, TOKEN),
        ({"authorization": "Bearer "}, TOKEN),
    ],
)
def test_another_machine_without_the_token_is_refused(
    kind: str, headers: dict[str, str], token: str | None
) -> None:
    response = _get(kind, "203.0.113.7", headers, token)
    assert response.status_code == 403
    assert SERIES not in response.text and "this machine only" in response.text


@KINDS
def test_another_machine_with_the_token_reads_metrics(kind: str) -> None:
    response = _get(kind, "203.0.113.7", {"authorization": f"Bearer {TOKEN}"}, TOKEN)
    assert response.status_code == 200 and SERIES in response.text


@KINDS
def test_a_local_proxy_does_not_make_its_clients_local(kind: str) -> None:
    forwarded = {"x-forwarded-for": "198.51.100.4", "x-forwarded-proto": "https"}
    assert _get(kind, "127.0.0.1", forwarded, TOKEN).status_code == 403
    with_token = {**forwarded, "authorization": f"Bearer {TOKEN}"}
    assert _get(kind, "127.0.0.1", with_token, TOKEN).status_code == 200


@KINDS
def test_the_demo_receives_csp_reports(kind: str) -> None:
    """The demo's CSP names its report receiver, which turns a report into an event."""
    import json

    from sessionwarden.events import Event

    seen: list[Event] = []

    class Sink:
        def emit(self, event: Event) -> None:
            seen.append(event)

    users = {"alice": hash_password("pw")}
    report = {
        "csp-report": {
            "document-uri": "https://demo.test/attacks",
            "effective-directive": "script-src-elem",
        }
    }
    headers = {"content-type": "application/csp-report"}
    base = f"https://{HOST}"
    if kind == "asgi":
        app = create_app(store="memory://", policy=_policy(), users=users, sink=Sink())

        async def go() -> tuple[httpx.Response, httpx.Response]:
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
            async with httpx.AsyncClient(transport=transport, base_url=base) as http:
                page = await http.get("/login")
                posted = await http.post(
                    "/csp-reports", headers=headers, content=json.dumps(report)
                )
                return page, posted

        import anyio

        page, posted = anyio.run(go)
    else:
        flask_app = create_flask_app(store="memory://", policy=_policy(), users=users, sink=Sink())
        transport = httpx.WSGITransport(app=flask_app, remote_addr="203.0.113.7")
        with httpx.Client(transport=transport, base_url=base) as http:
            page = http.get("/login")
            posted = http.post("/csp-reports", headers=headers, content=json.dumps(report))
    assert "report-uri /csp-reports" in page.headers["content-security-policy"]
    assert posted.status_code == 204
    assert [e.reason for e in seen if e.kind.value == "csp.violation"] == ["script-src-elem"]
