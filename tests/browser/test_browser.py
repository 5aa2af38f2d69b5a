"""The demo in Chromium: what a victim's browser actually does with each defence."""

from __future__ import annotations

from typing import Any

import pytest

from ..demo.conftest import USERS, DemoServer
from .conftest import SCREENSHOTS

pytestmark = pytest.mark.browser

XSS = (
    '<b>Nice bank!</b> <script>window.__xss = 1; document.title = "pwned"</script>'
    '<img hidden src="x" onerror="window.__xss = 2">'
)


def sign_in(page: Any, demo: DemoServer, user: str = "alice") -> None:
    page.goto(demo.base_url + "/login")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(USERS[user])
    page.get_by_role("button", name="Sign in", exact=True).last.click()
    page.wait_for_url(demo.base_url + "/account")


def test_session_cookie_is_invisible_to_scripts(page: Any, context: Any, demo: DemoServer) -> None:
    sign_in(page, demo)
    cookies = {c["name"]: c for c in context.cookies(demo.base_url)}
    assert "__Host-id" in cookies, "the browser did not keep the session cookie"
    assert cookies["__Host-id"]["httpOnly"] is True
    assert cookies["__Host-id"]["secure"] is True
    assert cookies["__Host-id"]["sameSite"] == "Lax"
    assert "__Host-id" not in page.evaluate("document.cookie")
    page.goto(demo.base_url + "/attacks#replay")
    assert page.locator("#doc-cookie").inner_text() == '""'


def test_injected_script_is_blocked_by_csp_and_reported(page: Any, demo: DemoServer) -> None:
    page.goto(demo.base_url + "/attacks")
    page.get_by_label("Comment").fill(XSS)
    page.get_by_role("button", name="Post comment").click()
    page.wait_for_url(demo.base_url + "/attacks#xss")
    page.wait_for_load_state("load")
    # The payload really is in the page, unsanitised ...
    assert page.locator("#raw-comments script").count() == 1
    assert page.locator("#raw-comments img[onerror]").count() == 1
    # ... yet nothing in it ran.
    page.wait_for_function("document.querySelectorAll('#csp-log li:not(.empty)').length >= 2")
    assert page.evaluate("window.__xss") is None
    assert page.title() != "pwned"
    assert page.locator("#xss-status").inner_text().startswith("No")
    log = page.locator("#csp-log li").all_inner_texts()
    assert any("script-src" in line for line in log), log
    assert int(page.locator("#csp-count").inner_text()) >= 2
    # The sanitised copy kept the formatting and dropped the rest.
    assert page.locator("#sanitized-comments b").count() == 1
    assert page.locator("#sanitized-comments script, #sanitized-comments img").count() == 0
    # Chromium also says so on the console.
    console = " ".join(page.console_messages_seen)
    assert "Content Security Policy" in console, console
    # The idle countdown runs from the meta tags.
    assert page.locator("#idle-countdown").inner_text().count(":") == 1


def test_cross_site_form_is_refused(page: Any, demo: DemoServer) -> None:
    assert demo.evil_url is not None and demo.evil_url.startswith("http://localhost:")
    sign_in(page, demo)
    with page.expect_response(lambda r: r.url == demo.base_url + "/transfer") as info:
        # "commit": the page submits itself 0.6 s after it starts, which may be before its
        # load event on a busy machine; waiting for load would then race the navigation.
        page.goto(demo.evil_url, wait_until="commit")
    response = info.value
    assert response.status == 403
    assert response.request.method == "POST"
    page.wait_for_url(demo.base_url + "/transfer")
    assert "Cross-site request refused" in page.locator("body").inner_text()
    page.goto(demo.base_url + "/account")
    assert page.locator("#account-user").inner_text() == "alice"  # still signed in
    assert "mallory" not in page.content()


def test_sign_in_transfer_sign_out_with_clicks(page: Any, browser: Any, demo: DemoServer) -> None:
    # A second device signed in too, so the sessions page has something to show.
    other = browser.new_context(
        user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    )
    other_page = other.new_page()
    sign_in(other_page, demo, "bob")

    sign_in(page, demo, "bob")
    assert page.locator("#account-user").inner_text() == "bob"
    page.get_by_label("Recipient").fill("carol")
    page.get_by_label("Amount").fill("42.50")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(demo.base_url + "/transfer/sent")
    assert "42.50 sent to carol" in page.locator("#transfer-confirmation").inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "transfer-sent.png"), full_page=True)
    # Reloading the confirmation sends nothing again (post/redirect/get, one-time confirmation).
    page.reload()
    page.wait_for_url(demo.base_url + "/account")
    rows = page.locator("#transfers tbody tr").all_inner_texts()
    assert sum("carol" in row for row in rows) == 1
    page.goto(demo.base_url + "/transfer/sent")  # the confirmation is gone once shown
    page.wait_for_url(demo.base_url + "/account")
    page.wait_for_url(demo.base_url + "/account")
    page.get_by_label("Recipient").fill("dave")
    page.get_by_label("Amount").fill("8")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(demo.base_url + "/transfer/sent")
    page.get_by_role("link", name="Back to your account").click()
    page.wait_for_url(demo.base_url + "/account")
    rows = page.locator("#transfers tbody tr").all_inner_texts()
    assert "dave" in rows[0] and "carol" in rows[1]

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "account.png"), full_page=True)
    page.get_by_role("link", name="Sessions").click()
    page.wait_for_url(demo.base_url + "/sessions")
    assert page.locator("#sessions-table tbody tr").count() >= 2
    assert page.locator("#sessions-table tr.current").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "sessions.png"), full_page=True)

    page.get_by_role("link", name="Account").click()
    page.wait_for_url(demo.base_url + "/account")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(demo.base_url + "/login")
    assert page.locator("#account-user").count() == 0

    # Back: the account page was never cached (no-store), so it is asked for again and the
    # server, seeing no session, sends the sign-in page instead.
    page.go_back()
    page.wait_for_load_state("load")
    content = page.content()
    assert "42.50" not in content and "carol" not in content
    assert page.locator("#account-user").count() == 0
    assert page.url == demo.base_url + "/login"

    # The other device is unaffected by this sign-out.
    other_page.reload()
    assert other_page.url == demo.base_url + "/account"
    other.close()
