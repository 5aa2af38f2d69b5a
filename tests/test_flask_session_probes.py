"""``flask.session`` (``flask_session=True``) probed as Flask users use it: a list changed in place
(``setdefault(...).append``), ``pop``, ``clear``, ``Markup`` messages and categories through a
store that keeps JSON, an app that also has a ``SECRET_KEY`` (Flask's own signed cookie, valid or
not, is neither read nor sent), and what a response that reads the session tells caches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flask
import pytest
from flask import Flask, flash, get_flashed_messages, request
from flask.sessions import SecureCookieSessionInterface
from markupsafe import Markup

from sessionwarden.integrations.flask import session as sw_session

from .test_flask_session import COOKIE, Browser, make_app


def probe_app(store: Any = None, **config: Any) -> Flask:
    app = make_app(store=store)
    app.config.update(config)

    @app.post("/cart")
    def add_to_cart() -> dict[str, Any]:
        flask.session.setdefault("cart", []).append(request.form["item"])
        return {"cart": flask.session["cart"]}

    @app.post("/cart/in-place")
    def change_in_place() -> dict[str, Any]:
        flask.session["cart"].append(request.form["item"])  # no modified=True, as in Flask docs
        return {"modified": flask.session.modified}

    @app.get("/cart")
    def cart() -> dict[str, Any]:
        return {"cart": flask.session.get("cart", [])}

    @app.post("/pop")
    def pop() -> dict[str, Any]:
        missing = "raised"
        try:
            flask.session.pop("missing")
        except KeyError:
            pass
        else:
            missing = "returned"
        return {
            "cart": flask.session.pop("cart", None),
            "default": flask.session.pop("missing", "d"),
            "missing": missing,
        }

    @app.post("/clear")
    def clear() -> dict[str, Any]:
        flask.session.clear()
        return {"user": sw_session.user_id, "left": len(flask.session)}

    @app.post("/flash-markup")
    def flash_markup() -> str:
        flash(Markup("<b>bold</b>"), "info")
        flash("<i>plain</i>", "error")
        return "ok"

    @app.get("/messages")
    def messages() -> dict[str, Any]:
        errors = get_flashed_messages(category_filter=["error"])
        shown = flask.render_template_string(
            "{% for c, m in get_flashed_messages(with_categories=true) %}[{{ c }}:{{ m }}]"
            "{% endfor %}"
        )
        return {"errors": errors, "shown": shown}

    return app


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return None if request.param == "memory" else f"sqlite:///{tmp_path / 's.db'}"


def test_a_list_changed_in_place_persists(store: Any) -> None:
    """``setdefault(key, []).append(item)`` on a new and on an existing session, and an item
    appended to the list read back (Flask's cookie session needs ``modified = True`` for that;
    here the change is found at commit)."""
    browser = Browser(probe_app(store))
    assert browser.post("/cart", {"item": "book"}).get_json() == {"cart": ["book"]}
    assert browser.post("/cart", {"item": "pen"}).get_json() == {"cart": ["book", "pen"]}
    assert browser.post("/cart/in-place", {"item": "ink"}).get_json() == {"modified": False}
    assert browser.get("/cart").get_json() == {"cart": ["book", "pen", "ink"]}


def test_pop_and_clear_behave_as_a_dict(store: Any) -> None:
    browser = Browser(probe_app(store))
    browser.post("/login", {"user": "alice"})
    browser.post("/cart", {"item": "book"})
    assert browser.post("/pop", {}).get_json() == {
        "cart": ["book"],
        "default": "d",
        "missing": "raised",
    }
    assert browser.get("/cart").get_json() == {"cart": []}
    browser.post("/cart", {"item": "pen"})
    assert browser.post("/clear", {}).get_json() == {"user": "alice", "left": 0}
    assert browser.get("/cart").get_json() == {"cart": []}
    assert browser.page()[1] == "alice"  # clear() removes values, it does not sign out


def test_markup_and_categories_come_back_as_json_gives_them(store: Any) -> None:
    """On every store a ``Markup`` message comes back a plain string (escaped when shown) and
    ``(category, message)`` pairs as lists, which ``get_flashed_messages`` reads either way."""
    browser = Browser(probe_app(store))
    browser.post("/flash-markup", {})
    got = browser.get("/messages").get_json()
    assert got["errors"] == ["<i>plain</i>"]
    assert got["shown"] == "[info:&lt;b&gt;bold&lt;/b&gt;][error:&lt;i&gt;plain&lt;/i&gt;]"
    assert browser.get("/messages").get_json() == {"errors": [], "shown": ""}


def test_with_a_secret_key_flasks_own_cookie_is_neither_read_nor_sent() -> None:
    """An app that keeps ``SECRET_KEY`` (for other extensions): a ``session`` cookie Flask
    itself signed with that key, as an old deployment or an attacker who learnt the key would
    send, is not read; no response sends one."""
    secret = "flask-secret-key-kept-for-other-extensions"
    app = probe_app(SECRET_KEY=secret)
    signer = SecureCookieSessionInterface().get_signing_serializer(app)
    assert signer is not None
    forged = signer.dumps({"cart": ["forged"], "_flashes": [["info", "forged"]]})
    browser = Browser(app)
    browser.client.set_cookie("session", forged, domain="localhost")
    assert browser.get("/cart").get_json() == {"cart": []}
    assert browser.post("/cart", {"item": "book"}).get_json() == {"cart": ["book"]}
    assert browser.page() == ([], "anonymous")
    assert browser.cookie_names() == {COOKIE}


def test_a_page_that_reads_the_session_is_not_shared_by_caches() -> None:
    """Flask's cookie session adds ``Vary: Cookie`` when a view reads it; a page that reads the
    server-side session must not be served by a shared cache to another browser either."""
    browser = Browser(probe_app())
    browser.post("/cart", {"item": "book"})
    r = browser.get("/cart")
    cache_control = r.headers.get("Cache-Control", "")
    vary = {v.strip().lower() for v in r.headers.get("Vary", "").split(",")}
    assert "no-store" in cache_control or "private" in cache_control or "cookie" in vary
