"""The bundled client script's idle-timeout warning (``sessionwarden.js``) in Chromium, against a
live server whose clock moves with the page's (Playwright's clock on the page, a
:class:`ManualClock` on the server): nothing waits for a timeout.

The page is signed in and loads the script with its settings (``session-idle-timeout``,
``session-warn-before``, ``session-keepalive-url``, ``session-passive-paths``). A person must be
warned before the server ends the session, whatever the page polls, and "Stay signed in" must
keep the session on the server or say that it is over.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sessionwarden.policy import RememberPolicy

from ..test_standards_lifecycle_live import Live, live_server

IDLE = 600  # seconds; the page warns 60 s before
BANNER = ".sessionwarden-banner"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Live]:
    with live_server("memory://", tmp_path, idle_timeout=IDLE) as served:
        yield served


@pytest.fixture
def signed_in(browser: Any, site: Live) -> Iterator[Any]:
    """A signed-in page with the script, its clock installed (time moves only when told)."""
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.clock.install()
    page.goto(site.base + "/page")
    assert page.evaluate("fetch('/login', {method: 'POST'}).then(r => r.status)") == 200
    page.goto(site.base + "/page")  # the signed-in page (its countdown starts here)
    try:
        yield page
    finally:
        context.close()


def advance(page: Any, site: Live, seconds: float) -> None:
    """Both clocks, the page's timers run."""
    site.clock.advance(seconds)
    page.clock.run_for(int(seconds * 1000))


def user_of(page: Any) -> Any:
    return page.evaluate("fetch('/whoami').then(r => r.json()).then(j => j.user)")


def test_the_page_warns_before_the_idle_timeout_and_staying_signed_in_keeps_the_session(
    signed_in: Any, site: Live
) -> None:
    page, banner = signed_in, signed_in.locator(BANNER)
    advance(page, site, IDLE - 61)
    assert banner.count() == 0 or banner.is_hidden()
    advance(page, site, 2)
    assert banner.is_visible()
    assert "signed out in about 60 seconds" in banner.inner_text()
    page.get_by_role("button", name="Stay signed in").click()
    banner.wait_for(state="hidden")
    advance(page, site, IDLE - 61)  # past the first deadline: the click reached the server
    assert banner.is_hidden()
    assert user_of(page) == "alice"


def test_polling_a_passive_path_does_not_silence_the_warning(signed_in: Any, site: Live) -> None:
    """The server does not count the polls as use (standards item 37), so neither may the
    page: the warning comes, and the session ends at the idle timeout."""
    page, banner = signed_in, signed_in.locator(BANNER)
    for _ in range(IDLE // 60 - 1):
        advance(page, site, 60)
        assert page.evaluate("fetch('/poll').then(r => r.json()).then(j => j.user)") == "alice"
    advance(page, site, 1)
    assert banner.is_visible()
    assert "signed out in about" in banner.inner_text()
    advance(page, site, 60)
    assert "You have been signed out" in banner.inner_text()
    assert user_of(page) is None


def test_staying_signed_in_after_the_session_ended_elsewhere_says_so(
    signed_in: Any, site: Live
) -> None:
    """The session is signed out in another tab while this one shows the warning: "Stay
    signed in" cannot bring it back and must not pretend to."""
    page, banner = signed_in, signed_in.locator(BANNER)
    advance(page, site, IDLE - 59)
    assert banner.is_visible()
    other = page.context.new_page()
    other.goto(site.base + "/page")
    assert other.evaluate("fetch('/logout', {method: 'POST'}).then(r => r.status)") == 200
    page.get_by_role("button", name="Stay signed in").click()
    page.wait_for_function(
        "document.querySelector('.sessionwarden-banner').textContent.includes('signed out')"
    )
    assert banner.is_visible()
    assert page.get_by_role("button", name="Stay signed in").is_hidden()


#: A remembered session's idle timeout: longer than the 2^31 - 1 ms (24.8 days) a browser's
#: ``setTimeout`` can wait in one go.
REMEMBER_IDLE = 30 * 86_400


def test_a_remembered_session_is_warned_at_its_own_idle_timeout(
    browser: Any, tmp_path: Path
) -> None:
    """Signed in with "keep me signed in": the page counts down the remember idle timeout the
    server enforces, not the normal one, and a 30-day wait neither warns at once nor never."""
    remember = RememberPolicy(idle_timeout=REMEMBER_IDLE, absolute_timeout=60 * 86_400)
    with live_server("memory://", tmp_path, idle_timeout=IDLE, remember=remember) as site:
        context = browser.new_context(ignore_https_errors=True)
        try:
            page = context.new_page()
            page.clock.install()
            page.goto(site.base + "/page")
            login = "fetch('/login?remember=1', {method: 'POST'}).then(r => r.status)"
            assert page.evaluate(login) == 200
            page.goto(site.base + "/page")
            banner = page.locator(BANNER)
            advance(page, site, IDLE + 1)  # past the normal idle timeout
            assert banner.count() == 0 or banner.is_hidden()
            assert user_of(page) == "alice"
            page.goto(site.base + "/page")  # the countdown starts again here
            advance(page, site, REMEMBER_IDLE - 61)
            assert banner.count() == 0 or banner.is_hidden()
            advance(page, site, 2)
            assert banner.is_visible()
            assert "signed out in about" in banner.inner_text()
            advance(page, site, 60)
            assert "You have been signed out" in banner.inner_text()
            assert user_of(page) is None
        finally:
            context.close()
