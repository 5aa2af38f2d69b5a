"""Every example in examples/ (and so in the docs) is imported and driven: sign in, use a
protected page, meet the re-authentication guard, sign out. If an example rots, this fails."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from sessionwarden.clock import ManualClock
from sessionwarden.policy import Policy
from sessionwarden.stores import InlineAsyncStore, MemoryStore

from .conftest import SECRET

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DOCS = EXAMPLES.parent / "docs"
BASE = "https://app.test"
#: The examples' policy, answering to the test hosts (by default only loopback hosts are served).
POLICY = Policy(secret_keys=(SECRET,), allowed_hosts=("app.test", "127.0.0.1"))
JSON = {"accept": "application/json"}
TOKEN_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def load(name: str) -> ModuleType:
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"sessionwarden_example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def form_token(html: str) -> str:
    found = TOKEN_FIELD.search(html)
    assert found is not None, html
    return found.group(1)


@pytest.mark.parametrize("name", ["flask_app", "fastapi_app", "starlette_app"])
def test_examples_are_short_and_shown_in_the_docs(name: str) -> None:
    source = (EXAMPLES / f"{name}.py").read_text(encoding="utf-8")
    assert len(source.splitlines()) < 80
    doc = {"flask_app": "flask.md", "fastapi_app": "fastapi.md", "starlette_app": "asgi.md"}[name]
    text = (DOCS / doc).read_text(encoding="utf-8")
    # the docs include the example verbatim, so they cannot drift from the tested code
    assert source.strip() in text, f"docs/{doc} does not contain examples/{name}.py verbatim"


def test_flask_example() -> None:
    clock = ManualClock()
    app = load("flask_app").create_app(store=MemoryStore(), clock=clock, policy=POLICY)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as c:
        r = c.get("/")
        assert r.status_code == 200 and "Not signed in" in r.text
        nonce = re.search(r'<script nonce="([^"]+)">', r.text)
        assert (
            nonce is not None
            and f"'nonce-{nonce.group(1)}'" in r.headers["content-security-policy"]
        )
        token = form_token(r.text)
        r = c.post("/login", data={"user": "alice", "password": "nope", "csrf_token": token})
        assert r.status_code == 401
        assert c.post("/login", data={"user": "alice", "password": "wonderland"}).status_code == 403
        r = c.post("/login", data={"user": "alice", "password": "wonderland", "csrf_token": token})
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert r.headers["set-cookie"].startswith("__Host-id=")
        page = c.get("/")
        assert "Signed in as alice" in page.text and r.headers["cache-control"] == "no-store"
        devices = c.get("/devices").json()
        assert len(devices) == 1 and devices[0]["current"] is True
        token = form_token(page.text)
        r = c.post("/email", data={"email": "a@example.test", "csrf_token": token})
        assert r.status_code == 200 and r.json() == {"email": "a@example.test"}
        clock.advance(301)
        r = c.post("/email", data={"email": "b@example.test", "csrf_token": token})
        assert r.status_code == 303 and r.headers["location"] == "/"
        r = c.post("/email", data={"email": "b@example.test", "csrf_token": token}, headers=JSON)
        assert r.status_code == 401 and r.json()["error"] == "reauthentication-required"
        before = c.cookies["__Host-id"]
        r = c.post("/reauth", data={"password": "wonderland", "csrf_token": token})
        assert r.status_code == 303 and c.cookies["__Host-id"] != before
        r = c.post("/email", data={"email": "b@example.test", "csrf_token": token})
        assert r.status_code == 200
        r = c.post("/logout", data={"csrf_token": token})
        assert r.status_code == 303 and "clear-site-data" in r.headers
        r = c.get("/devices")  # login_required: to the sign-in page, with where to return
        assert r.status_code == 303 and r.headers["location"] == "/?next=%2Fdevices"
        assert c.get("/devices", headers=JSON).status_code == 401


@pytest.mark.anyio
async def test_fastapi_example() -> None:
    clock = ManualClock()
    app = load("fastapi_app").create_app(
        store=InlineAsyncStore(MemoryStore()), clock=clock, policy=POLICY
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        assert (await c.get("/me")).status_code == 401
        token = (await c.get("/csrf")).json()["csrf_token"]
        h = {"x-csrf-token": token}
        assert (
            await c.post("/login", json={"user": "alice", "password": "wonderland"})
        ).status_code == 403
        r = await c.post("/login", json={"user": "alice", "password": "nope"}, headers=h)
        assert r.status_code == 401
        r = await c.post("/login", json={"user": "alice", "password": "wonderland"}, headers=h)
        assert r.status_code == 200 and r.json() == {"user": "alice"}
        assert (await c.get("/me")).json() == {"user": "alice"}
        h = {"x-csrf-token": (await c.get("/csrf")).json()["csrf_token"]}
        r = await c.post("/email", json={"address": "a@example.test"}, headers=h)
        assert r.status_code == 200 and r.json() == {"email": "a@example.test"}
        clock.advance(301)
        r = await c.post("/email", json={"address": "b@example.test"}, headers=h)
        assert r.status_code == 401 and r.json() == {"detail": "reauthentication-required"}
        before = c.cookies["__Host-id"]
        r = await c.post("/reauth", json={"password": "wonderland"}, headers=h)
        assert r.status_code == 200 and c.cookies["__Host-id"] != before
        r = await c.post("/email", json={"address": "b@example.test"}, headers=h)
        assert r.status_code == 200
        devices = (await c.get("/devices")).json()
        assert len(devices) == 1 and devices[0]["user"] == "alice"
        r = await c.post("/logout", headers=h)
        assert r.status_code == 200 and "clear-site-data" in r.headers
        assert (await c.get("/me")).status_code == 401


@pytest.mark.anyio
async def test_starlette_example() -> None:
    clock = ManualClock()
    app = load("starlette_app").create_app(store="memory://", clock=clock, policy=POLICY)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        r = await c.get("/")
        assert "Not signed in" in r.text
        nonce = re.search(r'<script nonce="([^"]+)">', r.text)
        assert (
            nonce is not None
            and f"'nonce-{nonce.group(1)}'" in r.headers["content-security-policy"]
        )
        token = form_token(r.text)
        r = await c.post("/login", data={"user": "alice", "password": "wonderland"})
        assert r.status_code == 403
        r = await c.post("/login", data={"user": "alice", "password": "x", "csrf_token": token})
        assert r.status_code == 401
        r = await c.post(
            "/login", data={"user": "alice", "password": "wonderland", "csrf_token": token}
        )
        assert r.status_code == 303
        assert "Signed in as alice" in (await c.get("/")).text
        assert (await c.get("/settings")).text == "settings of alice"
        clock.advance(301)
        r = await c.get("/settings")
        assert r.status_code == 303 and r.headers["location"] == "/"
        r = await c.get("/settings", headers=JSON)
        assert r.status_code == 401 and r.json()["error"] == "reauthentication-required"
        r = await c.post("/logout", data={"csrf_token": form_token((await c.get("/")).text)})
        assert r.status_code == 303 and "clear-site-data" in r.headers
        assert "Not signed in" in (await c.get("/")).text


def test_plain_http_to_the_examples_is_redirected() -> None:
    app = load("flask_app").create_app(policy=POLICY)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://app.test") as c:
        r = c.get("/?a=1")
        assert r.status_code == 308 and r.headers["location"] == "https://app.test/?a=1"
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://127.0.0.1") as c:
        assert c.get("/").status_code == 200  # local development over plain HTTP
