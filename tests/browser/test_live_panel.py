"""The demo's live panel in Chromium: a WebSocket that closes when its session ends elsewhere."""

from __future__ import annotations

from typing import Any

import pytest

from ..demo.conftest import DemoServer
from .test_browser import sign_in

pytestmark = pytest.mark.browser


def test_the_live_panel_closes_when_the_session_is_revoked_elsewhere(
    page: Any, browser: Any, demo: DemoServer
) -> None:
    from playwright.sync_api import expect

    sign_in(page, demo, "carol")
    expect(page.locator("#live-status")).to_have_text("connected as carol", timeout=10_000)
    expect(page.locator("#live-panel")).to_have_attribute("data-state", "open")

    # Carol signs in on a second browser and signs every other session out from there.
    other = browser.new_context()
    try:
        other_page = other.new_page()
        sign_in(other_page, demo, "carol")
        other_page.goto(demo.base_url + "/sessions")
        other_page.get_by_role("button", name="Sign out all other sessions").click()
        other_page.wait_for_url(demo.base_url + "/sessions")
        # The first browser's panel closes by itself, without a reload.
        expect(page.locator("#live-status")).to_have_text(
            "connection closed: session ended", timeout=10_000
        )
        expect(page.locator("#live-panel")).to_have_attribute("data-state", "closed")
        assert page.locator("#account-user").inner_text() == "carol"  # never reloaded
        # The second browser's own panel is open.
        other_page.goto(demo.base_url + "/account")
        expect(other_page.locator("#live-status")).to_have_text(
            "connected as carol", timeout=10_000
        )
    finally:
        other.close()
