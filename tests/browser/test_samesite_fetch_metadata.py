"""What Chromium itself sends to the demo from another site, and what the demo makes of it
(standards A2.13, A2.17, A10.54, A10.60): the demo on ``http://127.0.0.1:P`` and an attacker's
pages on ``http://localhost:Q`` (another site: a host name and an address never share a
registrable domain), served by a small server of the test's own so that they hold exactly
what the test writes. Evidence comes from both ends: the headers Chromium put on each
request (``Cookie``, ``Sec-Fetch-*``, ``Origin``) and the status the server answered.
"""

from __future__ import annotations

import html
import http.server
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ..demo.conftest import DemoServer
from .test_browser import sign_in

pytestmark = pytest.mark.browser

COOKIE = "__Host-id"


class Attacker:
    """Another site: ``http://localhost:Q``, a plain HTTP server in a thread answering each
    path with the page a test put there."""

    def __init__(self) -> None:
        pages = self.pages = {}  # type: dict[str, str]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page(self, path: str, body: str) -> str:
        self.pages[path] = f"<!doctype html>{body}"
        return self.origin + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def attacker() -> Iterator[Attacker]:
    site = Attacker()
    yield site
    site.close()


def _answers(demo: DemoServer, request_line: str) -> list[int]:
    """The statuses the demo answered to ``request_line`` so far, from its access log."""
    found = re.findall(rf'"{re.escape(request_line)} HTTP/1.1" ([0-9]{{3}})', demo.output())
    return [int(status) for status in found]


def _wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the server never logged it"
        time.sleep(0.02)


def _requests_to(context: Any, url: str) -> list[Any]:
    seen: list[Any] = []
    context.on("request", lambda r: seen.append(r) if r.url == url else None)
    return seen


def test_cross_site_subresources_carry_no_session_cookie(
    page: Any, context: Any, demo: DemoServer, attacker: Attacker
) -> None:
    """A2.13: with ``SameSite=Lax``, an ``<img>``, an ``<iframe>`` and a credentialed
    ``fetch`` from another site reach the server without the session cookie: it answers them
    as nobody's (401 for the API, the sign-in page for the account), and the frame's request
    is marked ``Sec-Fetch-Site: cross-site``."""
    sign_in(page, demo)
    api, account = demo.base_url + "/api/me", demo.base_url + "/account"
    api_requests = _requests_to(context, api)
    account_requests = _requests_to(context, account)
    before = len(_answers(demo, "GET /api/me"))
    statuses: dict[str, list[int]] = {account: []}
    context.on(
        "response", lambda r: statuses[r.url].append(r.status) if r.url in statuses else None
    )
    body = (
        f'<img src="{html.escape(api)}"><iframe src="{html.escape(account)}"></iframe>'
        f"<script>fetch({api!r}, {{credentials: 'include', mode: 'no-cors'}})</script>"
    )
    page.goto(attacker.page("/subresources", body))
    page.wait_for_load_state("networkidle")
    # The server's answers show what arrived: no session for either. (Chromium blocks the
    # answers to the image and the no-cors fetch, so the server's access log tells.)
    assert len(api_requests) == 2
    _wait_for(lambda: len(_answers(demo, "GET /api/me")) >= before + 2)
    assert _answers(demo, "GET /api/me")[before:] == [401, 401]
    assert statuses[account] and all(s in (302, 303) for s in statuses[account]), statuses
    # Chromium's own account of the frame's request (for subresources whose answer it blocks
    # it reports only the headers it meant to send, without cookies or fetch metadata).
    headers = account_requests[0].all_headers()
    assert headers.get("sec-fetch-site") == "cross-site" and "cookie" not in headers, headers
    assert headers.get("sec-fetch-dest") == "iframe"


def test_a_cross_site_link_navigates_signed_in(
    page: Any, context: Any, demo: DemoServer, attacker: Attacker
) -> None:
    """A2.13 ("Lax", not "Strict") and A10.54: following a link from another site is a
    top-level ``GET`` navigation: Chromium sends the cookie with ``Sec-Fetch-Site:
    cross-site``, ``Sec-Fetch-Mode: navigate`` and ``Sec-Fetch-User: ?1``, and the server, which
    checks only unsafe methods, shows the signed-in account."""
    sign_in(page, demo)
    account = demo.base_url + "/account"
    requests = _requests_to(context, account)
    link = f'<a id="go" href="{html.escape(account)}">account</a>'
    page.goto(attacker.page("/link", link))
    page.click("#go")
    page.wait_for_url(account)
    assert page.locator("#account-user").inner_text() == "alice"
    headers = requests[-1].all_headers()
    assert COOKIE in headers.get("cookie", "")
    assert headers.get("sec-fetch-site") == "cross-site"
    assert headers.get("sec-fetch-mode") == "navigate" and headers.get("sec-fetch-user") == "?1"


def test_a_cross_site_form_post_is_sent_without_the_cookie_and_refused(
    page: Any, context: Any, demo: DemoServer, attacker: Attacker
) -> None:
    """A2.13 and A10.54: a form on another site posting to ``/transfer`` is a top-level
    navigation, but ``POST``: Chromium leaves the ``Lax`` cookie out and says ``cross-site``
    with the attacker's ``Origin``; the server refuses it (403) and the account shows no
    transfer to the attacker."""
    sign_in(page, demo)
    target = demo.base_url + "/transfer"
    requests = _requests_to(context, target)
    form = (
        f'<form id="f" method="post" action="{html.escape(target)}">'
        '<input name="to" value="mallory"><input name="amount" value="9"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    with page.expect_response(lambda r: r.url == target) as answer:
        page.goto(attacker.page("/form", form), wait_until="commit")
    assert answer.value.status == 403
    page.wait_for_url(target)
    headers = requests[-1].all_headers()
    assert COOKIE not in headers.get("cookie", "")
    assert headers.get("sec-fetch-site") == "cross-site"
    assert headers.get("origin") == attacker.origin
    page.goto(demo.base_url + "/account")
    assert page.locator("#account-user").inner_text() == "alice"
    assert "mallory" not in page.content()


def test_the_pages_own_fetch_is_same_origin_and_json_only(page: Any, demo: DemoServer) -> None:
    """A10.54 and A10.60 from the page's side: the demo's own ``fetch`` with the page's token
    is ``Sec-Fetch-Site: same-origin`` and succeeds; the same call as a CORS-simple
    ``text/plain`` body gets 415."""
    sign_in(page, demo)
    script = """async (contentType) => {
        const token = document.querySelector('meta[name="csrf-token"]').content;
        const r = await fetch('/api/transfer', {
            method: 'POST',
            headers: {'Content-Type': contentType, 'X-CSRF-Token': token,
                      'Accept': 'application/json'},
            body: JSON.stringify({to: 'bob', amount: '1'}),
        });
        return r.status;
    }"""
    with page.expect_request(lambda r: r.url.endswith("/api/transfer")) as sent:
        assert page.evaluate(script, "application/json") == 200
    assert sent.value.all_headers().get("sec-fetch-site") == "same-origin"
    assert page.evaluate(script, "text/plain") == 415


def test_nothing_but_the_opaque_cookie_is_kept_in_the_browser(
    page: Any, context: Any, demo: DemoServer
) -> None:
    """A2.17: once signed in, the browser holds one cookie for the site, the session cookie,
    opaque, invisible to scripts; local and session storage hold no ID, user or token."""
    sign_in(page, demo)
    cookies = context.cookies(demo.base_url)
    assert [c["name"] for c in cookies] == [COOKIE]
    value = cookies[0]["value"]
    assert "alice" not in value
    stored = page.evaluate(
        "() => JSON.stringify([document.cookie, Object.entries(localStorage),"
        " Object.entries(sessionStorage)])"
    )
    assert value not in stored and "alice" not in stored and COOKIE not in stored
