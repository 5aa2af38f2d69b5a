"""Why was I signed out? and the styled refusal pages, in Chromium against the Starlette demo.

The demo runs in this process (uvicorn on a thread) with a :class:`ManualClock`, so the idle and
absolute timeouts are reached by moving the clock, never by waiting. Each reason is caused the
way it happens to a user, and the sign-in page the browser lands on must say it in the demo's
sentence; one screenshot per reason goes to ``docs/screenshots`` (``SESSIONWARDEN_SCREENSHOTS=1``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sessionwarden import tokens
from sessionwarden.clock import ManualClock
from sessionwarden.core import Engine, run_sync
from sessionwarden.demo.app import create_app
from sessionwarden.demo.ended import SENTENCES
from sessionwarden.demo.shared import demo_policy
from sessionwarden.demo.users import hash_password
from sessionwarden.policy import Policy
from sessionwarden.stores.sqlite import SQLiteStore

from ..demo.conftest import FIREFOX_UA, free_port
from .conftest import SCREENSHOTS

PASSWORD = "correct-horse"
IDLE, ABSOLUTE = 1800.0, 3600.0


@dataclass
class LiveDemo:
    base_url: str
    clock: ManualClock
    policy: Policy
    db: Path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDemo]:
    import uvicorn

    db = tmp_path_factory.mktemp("signed-out") / "demo.db"
    clock = ManualClock()
    policy = demo_policy(b"k" * 32, idle_timeout=IDLE, absolute_timeout=ABSOLUTE)
    users = {"alice": hash_password(PASSWORD)}
    app = create_app(store=f"sqlite:///{db}", policy=policy, users=users, clock=clock)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the in-process demo did not start")
        time.sleep(0.05)
    try:
        yield LiveDemo(f"http://127.0.0.1:{port}", clock, policy, db)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def sign_in(page: Any, live: LiveDemo) -> None:
    page.goto(live.base_url + "/login")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).last.click()
    page.wait_for_url(live.base_url + "/account")
    # Off the account page: its live panel's WebSocket would be the request that finds an
    # expired session (and a WebSocket cannot carry the reason on to the sign-in page).
    page.goto(live.base_url + "/")


def lands_on_sign_in_saying(page: Any, live: LiveDemo, reason: str, shot: str) -> None:
    """The next visit to the account lands on the sign-in page with the reason's sentence."""
    page.goto(live.base_url + "/account")
    page.wait_for_url(live.base_url + "/login")
    note = page.locator("#session-ended")
    assert note.inner_text() == SENTENCES[reason]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"signed-out-{shot}.png"), full_page=True)
    # Shown once: a reload is a plain sign-in page.
    page.reload()
    assert page.locator("#session-ended").count() == 0


def new_page(browser: Any, **options: Any) -> Any:
    context = browser.new_context(viewport={"width": 900, "height": 640}, locale="en-GB", **options)
    return context.new_page()


def test_idle(browser: Any, live: LiveDemo) -> None:
    page = new_page(browser)
    sign_in(page, live)
    live.clock.advance(IDLE + 1)
    lands_on_sign_in_saying(page, live, "idle", "idle")


def test_absolute(browser: Any, live: LiveDemo) -> None:
    page = new_page(browser)
    sign_in(page, live)
    for _ in range(6):  # active all along: only the absolute deadline can end it
        live.clock.advance(IDLE * 0.6)
        page.goto(live.base_url + "/sessions")
        if page.url.endswith("/login"):
            break
    assert page.url.endswith("/login")
    # This visit already learnt it; the sentence is on the page it landed on.
    assert page.locator("#session-ended").inner_text() == SENTENCES["absolute"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "signed-out-absolute.png"), full_page=True)


def test_signed_out_elsewhere(browser: Any, live: LiveDemo) -> None:
    page = new_page(browser)
    sign_in(page, live)
    copy = page.context.cookies()  # the same cookie in a restored tab or a copied profile
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(live.base_url + "/login")
    assert page.locator("#session-ended").count() == 0  # the browser that signed out knows
    page.context.add_cookies(copy)
    lands_on_sign_in_saying(page, live, "signed-out", "signed-out")


def test_revoked_from_another_device(browser: Any, live: LiveDemo) -> None:
    phone = new_page(browser, user_agent=FIREFOX_UA)
    sign_in(phone, live)
    laptop = new_page(browser)
    sign_in(laptop, live)
    laptop.goto(live.base_url + "/sessions")
    laptop.get_by_role("button", name="Sign out all other sessions").click()
    laptop.wait_for_url(live.base_url + "/sessions")
    lands_on_sign_in_saying(phone, live, "revoked-by-user", "revoked-by-user")


def test_revoked_by_an_administrator(browser: Any, live: LiveDemo) -> None:
    page = new_page(browser)
    sign_in(page, live)
    store = SQLiteStore(live.db)  # what `sessionwarden sessions revoke` does
    try:
        assert run_sync(Engine(live.policy, clock=live.clock).revoke_user("alice"), store)
    finally:
        store.close()
    lands_on_sign_in_saying(page, live, "revoked-by-admin", "revoked-by-admin")


def test_revoked_as_suspicious(browser: Any, live: LiveDemo) -> None:
    owner = new_page(browser)
    sign_in(owner, live)
    thief = new_page(browser, user_agent=FIREFOX_UA)
    thief.context.add_cookies(owner.context.cookies())  # a stolen cookie, another browser
    thief.goto(live.base_url + "/account")
    thief.wait_for_url(live.base_url + "/login")
    # The owner's next visit learns why (the thief's request ended the session).
    lands_on_sign_in_saying(owner, live, "revoked-suspicious", "revoked-suspicious")


def test_evicted_by_too_many_devices(browser: Any, live: LiveDemo) -> None:
    first = new_page(browser)
    sign_in(first, live)
    for _ in range(live.policy.max_sessions_per_user or 0):
        live.clock.advance(1)  # the oldest is evicted first: no ties
        sign_in(new_page(browser), live)
    lands_on_sign_in_saying(first, live, "evicted", "evicted")


def test_an_unknown_cookie_learns_nothing(browser: Any, live: LiveDemo) -> None:
    owner = new_page(browser)
    sign_in(owner, live)
    page = new_page(browser)
    for value in (tokens.new_session_id(), "not-an-id"):  # forged: well formed, or not
        forged = [{**c, "value": value} for c in owner.context.cookies()]
        page.context.add_cookies(forged)
        page.goto(live.base_url + "/account")
        page.wait_for_url(live.base_url + "/login")
        assert page.locator("#session-ended").count() == 0
    page.goto(live.base_url + "/account")
    page.wait_for_url(live.base_url + "/login")
    assert page.locator("#session-ended").count() == 0


def test_refusal_page_is_styled(browser: Any, live: LiveDemo) -> None:
    page = new_page(browser)
    page.goto(live.base_url + "/login")
    # A form whose token was tampered with: the guard refuses it before the app runs.
    page.locator("form[action='/login'] input[name=csrf_token]").evaluate("e => e.value = 'x'")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_response(live.base_url + "/login") as info:
        page.get_by_role("button", name="Sign in", exact=True).last.click()
    response = info.value
    assert response.status == 403
    assert response.headers["content-type"].startswith("text/html")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Forbidden"
    assert "did not come from this site" in page.locator("[role=alert]").inner_text()
    header = page.locator(".site-header")
    assert header.evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
    assert "csrf" not in page.content().lower().replace("csrf_token", "")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "refused-403.png"), full_page=True)
