"""An identity provider's form post (SAML POST binding, OAuth ``response_mode=form_post``) in
Chromium: the provider's page on another site (``http://localhost:N``) posts to the app
(``http://127.0.0.1:M``, both adapters), so the browser itself decides which cookies go."""

from __future__ import annotations

import html
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ..peers_live import ACS, PeerApp, serve

COOKIE = "__Host-id"


class _Provider(BaseHTTPRequestHandler):
    """``GET /post?to=URL&state=S&user=U``: a page that posts an assertion for ``U`` to
    ``URL`` on load, as a provider's page does."""

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        to, state, user = (html.escape(query[k][0]) for k in ("to", "state", "user"))
        body = (
            f'<!doctype html><form method="post" action="{to}">'
            f'<input name="SAMLResponse" value="{user}"><input name="RelayState" value="{state}">'
            "</form><script>document.forms[0].submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PeerApp]:
    workdir = tmp_path_factory.mktemp(f"provider-{request.param}")
    with serve(request.param, workdir, tls=False) as started:
        yield started


def _via_provider(
    page: Any, provider: str, app: PeerApp, path: str, user: str, lands_on: str
) -> Any:
    """Start a sign-in on the app, let the provider's page post back to ``path``, wait until
    the browser shows the app's page at ``lands_on``; the requests the browser sent to
    ``path`` and to ``/sso/finish`` (method, whether a session cookie went with it)."""
    page.goto(app.base + "/sso/start")
    state = page.inner_text("body").strip()
    requests: list[Any] = []

    def seen(request: Any) -> None:  # no call back into the browser from the handler
        if urllib.parse.urlsplit(request.url).path in (path, "/sso/finish"):
            requests.append(request)

    page.on("request", seen)
    query = urllib.parse.urlencode({"to": app.base + path, "state": state, "user": user})
    response = page.goto(f"{provider}/post?{query}", wait_until="load")
    # The provider's page has loaded; its script's form post is a navigation of its own.
    page.wait_for_url(lambda url: urllib.parse.urlsplit(url).path == lands_on)
    page.remove_listener("request", seen)
    sent = [(r.method, COOKIE in (r.all_headers().get("cookie") or "")) for r in requests]
    return response, sent


def test_the_providers_post_signs_in_through_the_exempt_callback(
    page: Any, context: Any, provider: str, app: PeerApp
) -> None:
    """Row 13 (SameSite=Lax) and the complaint that SameSite breaks OAuth/SAML POST callbacks:
    Chromium sends the provider's cross-site POST without the Lax session cookie; the exempt
    callback answers 303 and the GET that follows carries it, so the state kept before the
    redirect to the provider is found and the user is signed in."""
    _, sent = _via_provider(page, provider, app, ACS, "bob", "/sso/finish")
    # No Lax cookie on the cross-site POST; the GET it redirects to carries it.
    assert sent == [("POST", False), ("GET", True)]
    assert page.inner_text("body") == "signed in as bob"
    assert page.url.startswith(app.base + "/sso/finish")
    page.goto(app.base + "/whoami")
    assert '"user":"bob"' in page.inner_text("body").replace(" ", "")
    cookie = next(c for c in context.cookies() if c["name"] == COOKIE)
    assert cookie["sameSite"] == "Lax" and cookie["httpOnly"] and cookie["secure"]


def test_the_same_callback_under_the_csrf_check_is_refused(
    page: Any, provider: str, app: PeerApp
) -> None:
    """Without the exemption the provider's post is a cross-site form post like any other:
    403, nobody signed in."""
    _, sent = _via_provider(page, provider, app, "/sso/acs-checked", "bob", "/sso/acs-checked")
    assert sent == [("POST", False)]
    assert "Cross-site request refused" in page.inner_text("body")
    page.goto(app.base + "/whoami")
    assert '"user":null' in page.inner_text("body").replace(" ", "")
