"""A sign-out that leaves a message for the next page, in Chromium (both adapters): the form
post's response sets the new anonymous session's cookie beside ``Clear-Site-Data: "storage"``,
and the browser keeps that cookie (``"cookies"`` there, applied after ``Set-Cookie``, would
erase it) while it clears the page's storage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from ..peers_live import PeerApp, serve

COOKIE = "__Host-id"

_POST_FORM = """([action, token]) => {
    const form = document.createElement("form");
    form.method = "post";
    form.action = action;
    const field = document.createElement("input");
    field.name = "csrf_token";
    field.value = token;
    form.appendChild(field);
    document.body.appendChild(form);
    form.submit();
}"""


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PeerApp]:
    workdir = tmp_path_factory.mktemp(f"logout-message-{request.param}")
    with serve(request.param, workdir, tls=False) as started:
        yield started


def _json(page: Any) -> Any:
    return json.loads(page.inner_text("body"))


def _token(page: Any, app: PeerApp) -> str:
    page.goto(app.base + "/token")
    return str(_json(page)["csrf_token"])


def _session_cookie(context: Any) -> str | None:
    found = [c["value"] for c in context.cookies() if c["name"] == COOKIE]
    return found[0] if found else None


def test_the_browser_keeps_the_new_session_that_carries_the_message(
    page: Any, context: Any, app: PeerApp
) -> None:
    token = _token(page, app)
    with page.expect_navigation(url=app.base + "/login?user=alice"):
        page.evaluate(_POST_FORM, ["/login?user=alice", token])
    assert _json(page) == {"ok": True}
    signed_in = _session_cookie(context)
    assert signed_in
    token = _token(page, app)
    page.evaluate("localStorage.setItem('draft', 'alice-only')")
    with page.expect_navigation(url=app.base + "/show"):
        page.evaluate(_POST_FORM, ["/logout?flash=signed-out", token])
    assert _json(page) == {"flash": "signed-out"}
    fresh = _session_cookie(context)
    assert fresh and fresh != signed_in
    page.goto(app.base + "/whoami")
    assert _json(page) == {"user": None, "data": {}}
    assert _session_cookie(context) == fresh
    assert page.evaluate("localStorage.getItem('draft')") is None
