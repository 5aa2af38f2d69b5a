"""JSON endpoints accept only JSON bodies: a cross-site form (urlencoded, multipart or
``text/plain``, no preflight) must not reach a JSON API. One line per endpoint in Starlette
(``@json_only``), Flask (``@json_only``) and FastAPI (``dependencies=[JsonOnly]``), and the demo's
``/api/*`` POSTs use it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionwarden.content import is_json_content_type
from sessionwarden.integrations import fastapi as sw_fastapi
from sessionwarden.integrations import flask as sw_flask
from sessionwarden.integrations.starlette import json_only

REFUSED = [
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/plain",
    "text/plain; charset=utf-8",
    "application/jsonp",
    "",
]
ACCEPTED = [
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/problem+json",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_what_counts_as_json() -> None:
    for value in ACCEPTED:
        assert is_json_content_type(value), value
    for value in [*REFUSED, "application/+json", "text/json+x", None]:
        assert not is_json_content_type(value), value


def _starlette() -> Starlette:
    @json_only
    async def api(request: Request) -> Response:
        return JSONResponse({"ran": True})

    return Starlette(routes=[Route("/api", api, methods=["GET", "POST", "TRACE"])])


def _flask() -> Flask:
    app = Flask(__name__)

    @app.route("/api", methods=["GET", "POST", "TRACE"])
    @sw_flask.json_only
    def api() -> dict[str, Any]:
        return {"ran": True}

    return app


def _fastapi() -> FastAPI:
    app = FastAPI()

    @app.api_route("/api", methods=["GET", "POST", "TRACE"], dependencies=[sw_fastapi.JsonOnly])
    def api() -> dict[str, Any]:
        return {"ran": True}

    return app


@pytest.mark.anyio
@pytest.mark.parametrize(
    "make", [_starlette, _fastapi, _flask], ids=["starlette", "fastapi", "flask"]
)
async def test_json_only_endpoints_refuse_form_content_types(make: Any) -> None:
    app = make()
    if isinstance(app, Flask):
        transport: Any = httpx.WSGITransport(app=app)
        client: Any = httpx.Client(transport=transport, base_url="http://localhost")
    else:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        )

    async def post(content_type: str) -> httpx.Response:
        headers = {"content-type": content_type} if content_type else {}
        r = client.post("/api", content=b'{"to": "mallory"}', headers=headers)
        return await r if not isinstance(r, httpx.Response) else r

    for ct in REFUSED:
        r = await post(ct)
        assert r.status_code == 415, (ct, r.text)
        assert "ran" not in r.text
    for ct in ACCEPTED:
        r = await post(ct)
        assert r.status_code == 200 and r.json() == {"ran": True}, ct
    r = client.get("/api")
    r = await r if not isinstance(r, httpx.Response) else r
    assert r.status_code == 200  # GET, HEAD and OPTIONS are not checked
    # TRACE is checked like a POST (as by the CSRF check): no JSON body, no view
    r = client.request("TRACE", "/api")
    r = await r if not isinstance(r, httpx.Response) else r
    assert r.status_code == 415 and "ran" not in r.text
    if isinstance(client, httpx.AsyncClient):
        await client.aclose()
    else:
        client.close()


@pytest.mark.anyio
@pytest.mark.parametrize("flavour", ["starlette", "flask"])
async def test_demo_api_transfer_refuses_a_text_plain_json_body(flavour: str) -> None:
    """The shape of a cross-site ``<form enctype="text/plain">`` whose body is JSON."""
    from sessionwarden.demo.shared import demo_policy
    from sessionwarden.stores import MemoryStore

    from .conftest import SECRET

    policy = demo_policy(SECRET)
    if flavour == "starlette":
        from sessionwarden.demo.app import create_app

        app: Any = create_app(store="memory://", policy=policy, users={})
        client: Any = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://localhost"
        )
    else:
        from sessionwarden.demo.flask_app import create_app as create_flask

        app = create_flask(store=MemoryStore(), policy=policy, users={})
        client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="https://localhost")

    async def call(method: str, path: str, **kw: Any) -> httpx.Response:
        r = client.request(method, path, **kw)
        return await r if not isinstance(r, httpx.Response) else r

    token = (await call("GET", "/api/csrf")).json()["csrf_token"]
    body = b'{"to": "mallory", "amount": 1000}'
    r = await call(
        "POST",
        "/api/transfer",
        content=body,
        headers={"content-type": "text/plain", "x-csrf-token": token},
    )
    assert r.status_code == 415, r.text
    r = await call(
        "POST",
        "/api/transfer",
        content=body,
        headers={"content-type": "application/json", "x-csrf-token": token},
    )
    assert r.status_code == 401  # JSON reaches the endpoint (which wants a signed-in user)
    if isinstance(client, httpx.AsyncClient):
        await client.aclose()
    else:
        client.close()


@pytest.mark.anyio
@pytest.mark.parametrize("make", [_starlette, _fastapi], ids=["starlette", "fastapi"])
@pytest.mark.parametrize(
    "fields",
    [
        ["application/json", "text/plain"],
        ["text/plain", "application/json"],
        ["application/json", "application/json"],
    ],
)
async def test_a_repeated_content_type_is_refused(make: Any, fields: list[str]) -> None:
    """Two ``Content-Type`` fields, in either order, even the same JSON type twice: the body's
    type is ambiguous (Starlette's ``headers.get`` reads the first, another parser the last),
    so the endpoint answers 415 and the view does not run."""
    transport = httpx.ASGITransport(app=make())
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        headers = [("content-type", value) for value in fields]
        r = await client.post("/api", content=b'{"to": "mallory"}', headers=headers)
    assert r.status_code == 415 and "ran" not in r.text


def test_single_content_type() -> None:
    from sessionwarden.content import single_content_type

    assert single_content_type(["application/json"]) == "application/json"
    assert single_content_type([]) is None
    assert single_content_type(["application/json", "application/json"]) is None
