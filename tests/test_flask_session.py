"""``flask.session`` and ``flash()`` as sessionwarden's server-side session
(``flask_session=True``): Flask's test client, and a live Werkzeug server over TLS with an httpx
cookie jar."""

from __future__ import annotations

import datetime
import re
import sqlite3
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest
from flask import Flask, flash, render_template_string, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.test import TestResponse
from werkzeug.wrappers import Response

from sessionwarden.core import Session
from sessionwarden.integrations.flask import (
    FlaskSession,
    SessionWarden,
    SessionWardenInterface,
)
from sessionwarden.integrations.flask import session as sw_session
from sessionwarden.policy import CookiePolicy, Policy, RememberPolicy
from sessionwarden.stores import MemoryStore

from .conftest import SECRET
from .live_servers import self_signed_certificate

BASE = "https://localhost"
COOKIE = "__Host-id"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
PAGE = """{% for m in get_flashed_messages() %}<p class="flash">{{ m }}</p>{% endfor %}
<p id="user">{{ sw_session.user_id or "anonymous" }}</p>
<form method="post"><input type="hidden" name="csrf_token" value="{{ csrf_token() }}"></form>"""


def make_app(store: Any = None, **options: Any) -> Flask:
    app = Flask(__name__)
    app.config["SESSIONWARDEN_SECRET_KEYS"] = [SECRET]
    app.config["SESSIONWARDEN_FLASK_SESSION"] = True

    @app.get("/")
    def home() -> str:
        return render_template_string(PAGE)

    @app.post("/flash")
    def flash_message() -> Response:
        flash(request.form["message"])
        return flask.redirect("/", 303)

    @app.post("/login")
    def login() -> Response:
        sw_session.login(request.form["user"], remember="remember" in request.form)
        flash(f"Welcome {request.form['user']}")
        return flask.redirect("/", 303)

    @app.post("/logout")
    def logout() -> Response:
        sw_session.logout()
        flash("You have been signed out")
        return flask.redirect("/", 303)

    @app.post("/theme")
    def set_theme() -> dict[str, Any]:
        flask.session["theme"] = request.form["theme"]
        return {"theme": flask.session["theme"], "sw": sw_session.get("theme")}

    @app.get("/theme")
    def get_theme() -> dict[str, Any]:
        return {"theme": flask.session.get("theme"), "new": flask.session.new}

    @app.post("/not-json")
    def not_json() -> dict[str, str]:
        errors = []
        for target in (flask.session, sw_session):
            try:
                target["when"] = datetime.datetime(2026, 1, 1)
            except TypeError as exc:
                errors.append(str(exc))
        return {"flask": errors[0], "sw": errors[1]}

    @app.post("/permanent")
    def permanent() -> dict[str, Any]:
        flask.session.permanent = True
        return {"permanent": flask.session.permanent, "stored": "_permanent" in flask.session}

    SessionWarden(app, store=store if store is not None else MemoryStore(), **options)
    return app


class Browser:
    """Flask's test client over https://localhost, redirects not followed."""

    def __init__(self, app: Flask) -> None:
        self.client = app.test_client()
        self.responses: list[TestResponse] = []

    def get(self, path: str) -> TestResponse:
        return self._keep(self.client.get(path, base_url=BASE))

    def post(self, path: str, data: dict[str, str], token: bool = True) -> TestResponse:
        if token:
            data = {**data, "csrf_token": self.token()}
        return self._keep(self.client.post(path, base_url=BASE, data=data))

    def token(self) -> str:
        found = TOKEN.search(self.get("/").get_data(as_text=True))
        assert found is not None
        return found.group(1)

    def page(self) -> tuple[list[str], str]:
        """The flashed messages and the user the home page shows."""
        text = self.get("/").get_data(as_text=True)
        user = re.search(r'<p id="user">([^<]*)</p>', text)
        assert user is not None
        return re.findall(r'<p class="flash">([^<]*)</p>', text), user.group(1)

    def cookie(self) -> str | None:
        found = self.client.get_cookie(COOKIE, domain="localhost")
        return None if found is None else found.value

    def cookie_names(self) -> set[str]:
        """The names of every cookie any response so far set or cleared."""
        headers = (h for r in self.responses for h in r.headers.getlist("Set-Cookie"))
        return {h.split("=", 1)[0] for h in headers}

    def _keep(self, response: TestResponse) -> TestResponse:
        self.responses.append(response)
        return response


@pytest.fixture
def browser() -> Browser:
    return Browser(make_app())


def test_flash_survives_a_redirect_and_is_shown_once(browser: Browser) -> None:
    r = browser.post("/flash", {"message": "Saved"})
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert browser.page() == (["Saved"], "anonymous")
    assert browser.page() == ([], "anonymous")  # get_flashed_messages() removed it
    assert browser.cookie_names() == {COOKIE}  # never Flask's "session" cookie


def test_login_then_flash(browser: Browser) -> None:
    browser.get("/")
    before = browser.cookie()
    assert browser.post("/login", {"user": "alice"}).status_code == 303
    assert browser.cookie() not in (None, before)  # the sign-in rotated the ID
    assert browser.page() == (["Welcome alice"], "alice")
    assert browser.page() == ([], "alice")


def test_logout_then_flash_starts_a_new_anonymous_session(browser: Browser) -> None:
    browser.post("/login", {"user": "alice"})
    browser.page()
    signed_in = browser.cookie()
    r = browser.post("/logout", {})
    assert r.status_code == 303
    fresh = browser.cookie()
    assert fresh not in (None, signed_in)  # a new session's cookie, not the deletion
    assert browser.page() == (["You have been signed out"], "anonymous")
    assert browser.page() == ([], "anonymous")
    assert browser.cookie_names() == {COOKIE}


def test_no_secret_key_and_flasks_cookie_is_neither_sent_nor_read() -> None:
    app = make_app()
    assert app.secret_key is None
    assert isinstance(app.session_interface, SessionWardenInterface)
    browser = Browser(app)
    browser.client.set_cookie("session", "eyJ0aGVtZSI6ImV2aWwifQ.forged", domain="localhost")
    assert browser.get("/theme").get_json() == {"theme": None, "new": True}
    r = browser.post("/theme", {"theme": "dark"})
    assert r.get_json() == {"theme": "dark", "sw": "dark"}  # one session, two names
    assert browser.get("/theme").get_json() == {"theme": "dark", "new": False}
    assert browser.cookie_names() == {COOKIE}


def test_the_data_is_in_the_store_not_in_the_cookie(tmp_path: Path) -> None:
    db = tmp_path / "sessions.db"
    browser = Browser(make_app(store=f"sqlite:///{db}"))
    marker = "teal-7731"
    assert browser.post("/theme", {"theme": marker}).status_code == 200
    cookie = browser.cookie()
    assert cookie is not None and marker not in cookie
    headers = [h for r in browser.responses for h in r.headers.getlist("Set-Cookie")]
    assert not any(marker in h for h in headers)
    with sqlite3.connect(db) as conn:
        stored = "\n".join(conn.iterdump())
    assert marker in stored
    assert cookie not in stored  # the store keys by an HMAC of the ID, never the ID


def test_the_guards_csrf_check_still_applies(browser: Browser) -> None:
    r = browser.post("/flash", {"message": "forged"}, token=False)
    assert r.status_code == 403
    assert browser.page() == ([], "anonymous")  # the view never ran
    r = browser.client.post(
        "/flash",
        base_url=BASE,
        data={"message": "cross-site", "csrf_token": browser.token()},
        headers={"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
    )
    assert r.status_code == 403
    assert browser.page() == ([], "anonymous")


def test_a_value_that_is_not_json_gives_the_same_error_as_sw_session(browser: Browser) -> None:
    r = browser.post("/not-json", {})
    errors = r.get_json()
    assert errors["flask"] == errors["sw"]
    assert "JSON" in errors["flask"]


def test_permanent_is_the_cookie_policys_and_setting_it_stores_nothing() -> None:
    browser = Browser(make_app())
    assert browser.post("/permanent", {}).get_json() == {"permanent": False, "stored": False}
    policy = Policy(secret_keys=(SECRET,), cookie=CookiePolicy(persistent=True))
    browser = Browser(make_app(policy=policy))
    assert browser.post("/permanent", {}).get_json() == {"permanent": True, "stored": False}


def test_permanent_is_true_for_a_remembered_sign_in() -> None:
    """``session.permanent`` reads the session's own lifetime: a sign-in with
    ``remember=True`` has a cookie that outlives the browser; a later one without it has not."""
    remember = RememberPolicy(idle_timeout=86_400, absolute_timeout=7 * 86_400)
    browser = Browser(make_app(policy=Policy(secret_keys=(SECRET,), remember=remember)))
    browser.post("/login", {"user": "alice", "remember": "on"})
    assert browser.post("/permanent", {}).get_json()["permanent"] is True
    browser.post("/login", {"user": "alice"})
    assert browser.post("/permanent", {}).get_json()["permanent"] is False


def test_it_is_opt_in() -> None:
    app = Flask(__name__)
    SessionWarden(app, policy=Policy(secret_keys=(SECRET,)), store="memory://")
    assert isinstance(app.session_interface, SecureCookieSessionInterface)  # Flask's own
    app = Flask(__name__)
    app.config["SESSIONWARDEN_FLASK_SESSION"] = True
    SessionWarden(app, policy=Policy(secret_keys=(SECRET,)), store="memory://", flask_session=False)
    assert isinstance(app.session_interface, SecureCookieSessionInterface)  # the argument wins
    app = Flask(__name__)
    app.config["SESSIONWARDEN_FLASK_SESSION"] = "false"
    with pytest.raises(RuntimeError, match="True or False"):
        SessionWarden(app, policy=Policy(secret_keys=(SECRET,)), store="memory://")
    assert "sessionwarden" not in app.extensions  # refused before anything was installed


def test_a_request_outside_the_middleware_reads_empty_and_cannot_write() -> None:
    app = make_app()
    with app.test_request_context("/"):
        assert dict(flask.session) == {}
        with pytest.raises(RuntimeError, match="did not pass through the SessionWarden"):
            flask.session["x"] = 1


def test_the_adapter_over_a_session() -> None:
    core = Session(None, 0.0)
    adapted = FlaskSession(core)
    assert adapted.new and not adapted.modified and not adapted.accessed
    adapted["a"] = [1]
    adapted.setdefault("b", 2)
    assert adapted.modified and adapted.accessed
    assert core["a"] == [1] and core["b"] == 2 and sorted(adapted) == ["a", "b"]
    assert adapted.pop("a") == [1] and "a" not in core
    adapted.clear()
    assert len(adapted) == 0 and len(core) == 0
    assert "Session" in repr(adapted) and "0x" not in repr(adapted)


# -- a live Werkzeug server over TLS, an httpx cookie jar ------------------------------------------


@contextmanager
def live_flask(tmp: Path) -> Iterator[tuple[str, ssl.SSLContext]]:
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    cert, key, _ = self_signed_certificate(tmp)
    app = make_app()
    server = make_server(
        "127.0.0.1",
        0,
        app,
        threaded=True,
        request_handler=Quiet,
        ssl_context=(str(cert), str(key)),
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (
            f"https://127.0.0.1:{server.server_port}",
            ssl.create_default_context(cafile=str(cert)),
        )
    finally:
        server.shutdown()
        thread.join(timeout=10)


def _live_page(c: httpx.Client) -> tuple[list[str], str, str]:
    r = c.get("/")
    assert r.status_code == 200, r.text
    user = re.search(r'<p id="user">([^<]*)</p>', r.text)
    token = TOKEN.search(r.text)
    assert user is not None and token is not None
    return re.findall(r'<p class="flash">([^<]*)</p>', r.text), user.group(1), token.group(1)


def test_live_werkzeug_over_tls(tmp_path: Path) -> None:
    set_cookies: list[str] = []

    def keep(r: httpx.Response) -> None:
        set_cookies.extend(r.headers.get_list("set-cookie"))

    with (
        live_flask(tmp_path) as (base, tls),
        httpx.Client(
            base_url=base,
            verify=tls,
            follow_redirects=True,
            timeout=15,
            event_hooks={"response": [keep]},
        ) as c,
    ):
        _, _, token = _live_page(c)
        r = c.post("/flash", data={"message": "Saved", "csrf_token": token})
        assert r.status_code == 200 and r.history[0].status_code == 303
        assert "Saved" in r.text  # shown on the page the redirect led to
        messages, user, token = _live_page(c)
        assert (messages, user) == ([], "anonymous")

        assert c.post("/flash", data={"message": "no token"}).status_code == 403

        r = c.post("/login", data={"user": "alice", "csrf_token": token})
        assert "Welcome alice" in r.text and '<p id="user">alice</p>' in r.text
        signed_in = c.cookies[COOKIE]
        messages, user, token = _live_page(c)
        assert (messages, user) == ([], "alice")

        r = c.post("/theme", data={"theme": "teal-7731", "csrf_token": token})
        assert r.json() == {"theme": "teal-7731", "sw": "teal-7731"}
        _, _, token = _live_page(c)

        r = c.post("/logout", data={"csrf_token": token})
        assert "You have been signed out" in r.text and '<p id="user">anonymous</p>' in r.text
        assert c.cookies[COOKIE] != signed_in
        assert c.get("/theme").json() == {"theme": None, "new": False}  # nothing of alice's

        assert {h.split("=", 1)[0] for h in set_cookies} == {COOKIE}
        assert all("teal-7731" not in h for h in set_cookies)
        assert list(c.cookies.keys()) == [COOKIE]


def test_session_transaction_says_why_it_cannot_write() -> None:
    client = make_app().test_client()
    with (
        pytest.raises(RuntimeError, match="did not pass through the SessionWarden"),
        client.session_transaction() as sess,
    ):
        sess["x"] = 1
