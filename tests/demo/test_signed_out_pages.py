"""Both demo apps over every store: the sign-in page says why the visitor was signed out, once,
and only to the browser that held the ended session; refusals are the demo's styled pages for
people and the library's JSON for API clients."""

from __future__ import annotations

import html
from typing import Any

from sessionwarden import tokens
from sessionwarden.demo.ended import SENTENCES

from .conftest import FIREFOX_UA, Client, form_token


def _sign_in_page_after_account(client: Client) -> str:
    response = client.get("/account")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    page = client.get("/login")
    assert page.status_code == 200
    return page.text


def test_revoked_elsewhere_is_said_on_the_sign_in_page(make_client: Any) -> None:
    phone: Client = make_client(user_agent=FIREFOX_UA)
    phone.signed_in("carol")
    laptop: Client = make_client()
    laptop.signed_in("carol")
    token = form_token(laptop.get("/sessions").text)
    assert laptop.post("/sessions/revoke-others", data={"csrf_token": token}).status_code == 303
    sentence = html.escape(SENTENCES["revoked-by-user"])
    text = _sign_in_page_after_account(phone)
    assert 'id="session-ended"' in text and sentence in text
    # Once: the next sign-in page is plain.
    assert 'id="session-ended"' not in phone.get("/login").text


def test_signed_out_copy_is_told_and_strangers_are_not(make_client: Any) -> None:
    owner: Client = make_client()
    owner.signed_in("carol")
    copy: Client = make_client()
    copy.cookie = owner.cookie
    token = form_token(owner.get("/account").text)
    assert owner.post("/logout", data={"csrf_token": token}).status_code == 303
    text = _sign_in_page_after_account(copy)
    assert html.escape(SENTENCES["signed-out"]) in text
    for forged in (tokens.new_session_id(), "not-a-session-id"):
        stranger: Client = make_client()
        stranger.cookie = forged
        assert 'id="session-ended"' not in _sign_in_page_after_account(stranger)


def test_refusals_are_styled_pages_for_people_and_json_for_apis(client: Client) -> None:
    client.token("/login")
    creds = {"username": "alice", "password": "x", "csrf_token": "x" * 86}
    page = client.post("/login", data=creds)
    assert page.status_code == 403
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<link rel="stylesheet" href="/static/demo.css">' in page.text
    assert '<h1 id="refused">Forbidden</h1>' in page.text
    assert "<script" not in page.text and "style=" not in page.text
    assert "csrf" not in page.text.lower()  # the detail stays in the event log
    api = client.post(
        "/api/transfer", json={"to": "bob", "amount": "1"}, headers={"accept": "application/json"}
    )
    assert api.status_code == 403
    assert api.json()["error"] == "csrf"
