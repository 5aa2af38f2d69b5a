"""The demo's rough edges a first-time user met, in Chromium: hints that match the running
server, a failed sign-in that keeps the user name, an XSS panel without a broken image, and the
account page at a phone's width (390 px)."""

from __future__ import annotations

from typing import Any

import pytest

from ..demo.conftest import DemoServer
from .conftest import SCREENSHOTS
from .test_browser import sign_in

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


def test_failed_sign_in_keeps_the_user_name(page: Any, demo: DemoServer) -> None:
    page.goto(demo.base_url + "/login")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill("not-her-password")
    page.get_by_role("button", name="Sign in", exact=True).last.click()
    page.wait_for_selector("#login-error")
    assert page.get_by_label("User name").input_value() == "alice"
    assert page.get_by_label("Password").input_value() == ""
    assert page.evaluate("document.activeElement.id") == "password"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "login-failed.png"), full_page=True)


def test_hints_match_the_running_server(page: Any, demo: DemoServer) -> None:
    page.goto(demo.base_url + "/attacks")
    replay = page.locator("#replay-command").inner_text()
    assert replay.endswith(f"{demo.base_url}/api/me"), replay
    port = demo.base_url.rsplit(":", 1)[1]
    idle = page.locator("#idle").inner_text()
    # --idle-timeout 90 warns 30 s ahead (a third of it); the page says so for this server
    assert f"sessionwarden demo --port {port} --idle-timeout 90" in idle
    assert "shows 30 s before the deadline" in idle
    sign_in(page, demo)
    page.goto(demo.base_url + "/sessions")
    hint = page.locator("#last-seen-hint").inner_text()
    assert "last request the server recorded" in hint and "at most every" in hint


def test_xss_panel_shows_no_broken_image(page: Any, demo: DemoServer) -> None:
    page.goto(demo.base_url + "/attacks")
    default = page.get_by_label("Comment").input_value()
    assert "<img hidden" in default  # the suggested payload hides its image
    page.get_by_role("button", name="Post comment").click()
    page.wait_for_url(demo.base_url + "/attacks#xss")
    page.wait_for_load_state("load")
    page.wait_for_function("document.querySelectorAll('#csp-log li:not(.empty)').length >= 1")
    broken = page.evaluate(
        "Array.from(document.images).filter("
        "i => i.getClientRects().length > 0 && i.complete && i.naturalWidth === 0).length"
    )
    assert broken == 0
    assert page.evaluate("window.__xss") is None
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#xss").screenshot(path=str(SCREENSHOTS / "attacks-xss.png"))
    page.get_by_role("button", name="Clear comments").click()


def test_account_and_sessions_fit_a_phone(browser: Any, demo: DemoServer) -> None:
    context = browser.new_context(viewport=PHONE, locale="en-GB", is_mobile=True)
    try:
        page = context.new_page()
        sign_in(page, demo, "carol")
        page.get_by_label("Recipient").fill("dave")
        page.get_by_label("Amount").fill("5")
        page.get_by_role("button", name="Send").click()
        page.wait_for_url(demo.base_url + "/transfer/sent")
        page.goto(demo.base_url + "/account")
        rows = page.locator("#activity-table tbody tr")
        assert rows.count() >= 1
        # Nothing makes the page wider than the phone: no sideways scrolling.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        # Each activity row is a card whose cells are labelled and fully inside the screen.
        box = rows.first.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        label = page.evaluate(
            "getComputedStyle(document.querySelector('#activity-table td'), '::before').content"
        )
        assert "When" in label
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "account-390.png"), full_page=True)
        page.goto(demo.base_url + "/sessions")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    finally:
        context.close()
