"""FastAPI's documentation pages under sessionwarden's strict CSP, in Chromium: the example app
(``examples/fastapi_app.py``, which calls ``serve_docs``) served by uvicorn for real.

Swagger UI must render the operations and ReDoc its menu, with no script blocked by the policy
and nothing fetched from another origin; every other route keeps the very same policy.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..demo.conftest import free_port
from .conftest import SCREENSHOTS

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
NONCE = re.compile(r"'nonce-[^']+'")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    log = tmp_path_factory.mktemp("fastapi-docs") / "uvicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "examples.fastapi_app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(base + "/openapi.json", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _watch(page: Any, base: str) -> tuple[list[str], list[str]]:
    """Console errors (a CSP violation is one) and requests for code, styles or data to any
    other origin. (ReDoc's footer shows its maker's logo from their site: that image is
    refused by the policy, and is not code.)"""
    errors: list[str] = []
    foreign: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on(
        "request",
        lambda r: (
            foreign.append(r.url)
            if r.resource_type in ("script", "stylesheet", "fetch", "xhr", "font")
            and not r.url.startswith((base, "data:", "blob:"))
            else None
        ),
    )
    return errors, foreign


def test_swagger_ui_renders_the_operations(page: Any, api: str) -> None:
    errors, foreign = _watch(page, api)
    response = page.goto(api + "/docs")
    assert response.status == 200
    page.wait_for_selector(".opblock", timeout=20_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/login", "/me", "/email", "/logout"} <= {p.strip() for p in paths}
    # an operation opens, showing its parameters and responses
    page.locator(".opblock-summary", has_text="/me").first.click()
    page.wait_for_selector(".opblock.is-open .responses-wrapper", timeout=10_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "fastapi-docs.png"), full_page=False)
    # No script or style is blocked. (Swagger UI's stylesheet draws a few icons from data: URLs,
    # which the default img-src refuses: those icons are missing, nothing else.)
    blocked = [e for e in errors if "Content Security Policy" in e and "image" not in e]
    assert blocked == []
    assert foreign == []


def test_redoc_renders_the_menu(page: Any, api: str) -> None:
    errors, foreign = _watch(page, api)
    assert page.goto(api + "/redoc").status == 200
    page.wait_for_selector("text=Download OpenAPI specification", timeout=30_000)
    page.wait_for_selector("[data-item-id]", timeout=10_000)  # the menu of operations
    for path in ("/login", "/devices", "/logout"):
        assert page.get_by_text(path, exact=True).count() >= 1, path
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "fastapi-redoc.png"), full_page=False)
    assert [e for e in errors if "Error" in e and "Content Security Policy" not in e] == []
    assert foreign == []


def test_the_docs_pages_get_the_default_policy(api: str) -> None:
    """No relaxed policy for the docs: the default one, with a nonce, as any HTML page."""
    docs = httpx.get(api + "/docs")
    policy = NONCE.sub("'nonce-N'", docs.headers["content-security-policy"])
    redoc = httpx.get(api + "/redoc").headers["content-security-policy"]
    assert NONCE.sub("'nonce-N'", redoc) == policy
    assert "script-src 'nonce-N' 'strict-dynamic'" in policy
    assert "unsafe" not in policy and "http" not in policy
    assert "cdn" not in docs.text
    nonce = NONCE.search(docs.headers["content-security-policy"])
    assert nonce is not None
    value = nonce.group(0)[len("'nonce-") : -1]
    scripts = re.findall(r"<script[^>]*>", docs.text)
    assert scripts and all(f'nonce="{value}"' in tag for tag in scripts)
