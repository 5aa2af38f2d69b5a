"""A real browser against the demo: Playwright for Python driving Debian's Chromium.

Only the Python package is used; no browser is downloaded. Without ``/usr/bin/chromium`` or
Playwright the tests skip with the reason shown, and fail instead under ``CI=true``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import IN_CI
from ..demo.conftest import DemoServer, run_demo

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# The README's pictures are refreshed only on request (SESSIONWARDEN_SCREENSHOTS=1), so an
# ordinary test run leaves the work tree clean.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("SESSIONWARDEN_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "sessionwarden-screenshots"
)


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: browser tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is missing: pip install playwright")
        raise  # unreachable: the helper above skips or fails
    # Module scope, not session: while Playwright's sync API is running it owns an asyncio
    # loop in this thread, which would break every asyncio test collected after this module.
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """The demo on http://127.0.0.1:PORT (SQLite) with its attacker page on http://localhost:N."""
    workdir = tmp_path_factory.mktemp("browser-demo")
    with run_demo(
        f"sqlite:///{workdir}/demo.db", workdir / "demo.key", workdir, evil=True
    ) as server:
        yield server


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    page = context.new_page()
    page.console_messages_seen = []  # type: ignore[attr-defined]
    page.on("console", lambda msg: page.console_messages_seen.append(msg.text))
    return page
