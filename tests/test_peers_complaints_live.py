"""What users of other session libraries report as broken, tried against live servers: uvicorn
(ASGI) and Werkzeug's threaded server (Flask over WSGI) over TLS, driven by httpx with its
cookie jar, as a browser's tabs and parallel ``fetch`` calls would drive them.

Each test names the row of the comparison it covers: concurrent writes, a logout racing a slow
request, flash messages, tabs and the back button, data across a sign-in, cookie size, uploads,
several instances behind a load balancer, a TLS-terminating proxy, and an identity provider's
form post (the same in Chromium in ``tests/browser/test_provider_callback.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from .live_https import HOST, LiveApp, live_app
from .peers_live import ACS, PeerApp, serve

COOKIE = "__Host-id"
SAME_ORIGIN = {"sec-fetch-site": "same-origin"}


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PeerApp]:
    workdir = tmp_path_factory.mktemp(f"peers-{request.param}")
    with serve(request.param, workdir) as started:
        yield started


# -- requests of a browser ---------------------------------------------------------------------


def post(c: httpx.Client, path: str, token: str, **kw: object) -> httpx.Response:
    """A same-origin ``fetch`` from a page of the site, with the page's token."""
    headers = {**SAME_ORIGIN, "x-csrf-token": token}
    return c.post(path, headers=headers, **kw)  # type: ignore[arg-type]


def token(c: httpx.Client) -> str:
    return str(c.get("/token").json()["csrf_token"])


def signed_in(app: PeerApp, user: str = "alice") -> httpx.Client:
    c = app.client()
    r = post(c, f"/login?user={user}", token(c))
    assert r.status_code == 200, r.text
    return c


def cookie_of(c: httpx.Client) -> str:
    value = c.cookies.get(COOKIE)
    assert value
    return value


def tab(app: PeerApp, cookie: str) -> httpx.Client:
    """Another tab (or parallel ``fetch``) of the same browser: the same cookie, its own
    connection."""
    c = app.client()
    c.cookies.set(COOKIE, cookie, domain="127.0.0.1")
    return c


def whoami(c: httpx.Client) -> dict[str, object]:
    body = c.get("/whoami").json()
    assert isinstance(body, dict)
    return body


# -- A2 row 12, complaints 2-3: parallel requests that each write lose nothing -------------------


def test_parallel_writes_of_different_keys_all_survive(app: PeerApp) -> None:
    """Row 12 (lost updates across concurrent requests), complaints 2 and 3 (a burst of
    parallel uploads or AJAX calls loses session data): twelve requests of one browser at
    once, each writing its own key, leave all twelve in the session."""
    main = signed_in(app)
    cookie, csrf = cookie_of(main), token(main)

    def write(n: int) -> int:
        with tab(app, cookie) as c:
            return post(c, f"/set?key=k{n}&value=v{n}", csrf).status_code

    with ThreadPoolExecutor(12) as pool:
        assert list(pool.map(write, range(12))) == [200] * 12
    data = whoami(main)["data"]
    assert isinstance(data, dict)
    assert {f"k{n}": f"v{n}" for n in range(12)}.items() <= data.items()
    main.close()


# -- A2 row 12, complaints 4-5: a slow request never undoes a logout -----------------------------


def _slow(app: PeerApp, cookie: str, csrf: str, gate: str, key: str) -> httpx.Response:
    with tab(app, cookie) as c:
        return post(c, f"/slow?gate={gate}&key={key}", csrf)


def test_a_request_in_flight_during_logout_never_brings_the_session_back(app: PeerApp) -> None:
    """Row 12 and complaints 4-5 (a long request saves after a concurrent logout, so the
    logout is undone; Django answers such a request 400 ``SessionInterrupted``): the slow
    request's write is dropped, its response does not hand the browser a session, and the
    copied cookie stays signed out."""
    main = signed_in(app)
    cookie, csrf = cookie_of(main), token(main)
    gate = uuid.uuid4().hex
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(_slow, app, cookie, csrf, gate, "late")
        assert main.get(f"/entered?gate={gate}").status_code == 200
        assert post(main, "/logout", csrf).status_code == 200
        assert post(main, f"/open?gate={gate}", token(main)).status_code == 200
        late = slow.result(timeout=30)
    assert late.status_code == 200  # the application ran; only its write was dropped
    assert late.json()["seen"] == {}
    assert not [h for h in late.headers.get_list("set-cookie") if "Max-Age=0" not in h]
    with tab(app, cookie) as stale:
        assert whoami(stale) == {"user": None, "data": {}}
    main.close()


# -- flash messages ------------------------------------------------------------------------------


def test_a_flash_message_is_neither_lost_nor_shown_twice_around_a_slow_request(
    app: PeerApp,
) -> None:
    """Flash messages (complaints 2-3, 6: last writer wins on the whole session): a message
    set while a slow request of the same browser is in flight survives that request's own
    write, and a message shown (removed) while it is in flight is not brought back by it."""
    main = signed_in(app)
    cookie, csrf = cookie_of(main), token(main)
    with ThreadPoolExecutor(1) as pool:
        gate = uuid.uuid4().hex
        slow = pool.submit(_slow, app, cookie, csrf, gate, "other")
        main.get(f"/entered?gate={gate}")
        r = post(main, "/flash?msg=saved", csrf)
        assert r.status_code == 303 and r.headers["location"] == "/show"
        post(main, f"/open?gate={gate}", csrf)
        assert slow.result(timeout=30).json()["seen"].get("flash") is None
        assert main.get("/show").json() == {"flash": "saved"}
        assert main.get("/show").json() == {"flash": None}  # shown once

        post(main, "/flash?msg=again", csrf)
        gate = uuid.uuid4().hex
        slow = pool.submit(_slow, app, cookie, csrf, gate, "other2")
        main.get(f"/entered?gate={gate}")
        assert main.get("/show").json() == {"flash": "again"}
        post(main, f"/open?gate={gate}", csrf)
        assert slow.result(timeout=30).json()["seen"]["flash"] == "again"
    assert main.get("/show").json() == {"flash": None}  # the slow request did not revive it
    data = whoami(main)["data"]
    assert isinstance(data, dict) and data["other"] == data["other2"] == "slow"
    main.close()


def test_a_value_set_after_logout_reaches_the_next_page_in_a_new_session(app: PeerApp) -> None:
    """Flash messages and row 6 (``logout`` then a message, as Django, Flask and Rails allow):
    the message set after ``logout()`` starts a new anonymous session under a new cookie, and
    the next page shows it; nothing else of the signed-out session comes along (no user, no
    data, not its CSRF secret), the response clears the site's storage but not the cookie it
    sets, and the signed-out ID stays dead, its replay reported."""
    main = signed_in(app)
    old, old_token = cookie_of(main), token(main)
    post(main, "/set?key=card&value=4242", old_token)
    r = post(main, "/logout?flash=signed-out", old_token)
    assert r.status_code == 303 and r.headers["location"] == "/show"
    (fresh,) = r.headers.get_list("set-cookie")
    assert fresh.startswith(f"{COOKIE}=") and "Max-Age=0" not in fresh
    assert r.headers["clear-site-data"] == '"storage"'
    assert r.headers["cache-control"] == "no-store"
    new = cookie_of(main)
    assert new != old
    assert main.get("/show").json() == {"flash": "signed-out"}
    assert main.get("/show").json() == {"flash": None}  # shown once
    assert whoami(main) == {"user": None, "data": {}}
    refused = post(main, "/set?key=a&value=1", old_token)  # a page of the signed-out session
    assert refused.status_code == 403 and "Reload the page" in refused.text
    assert post(main, "/set?key=a&value=1", token(main)).status_code == 200
    assert cookie_of(main) == new
    before = len(app.events("session.replay.revoked"))
    with tab(app, old) as stale:
        assert whoami(stale) == {"user": None, "data": {}}
        assert stale.cookies.get(COOKIE) is None  # the old cookie is deleted, not replaced
    replays = app.events("session.replay.revoked")
    assert len(replays) == before + 1 and replays[-1]["user"] == "alice"
    (ended,) = [e for e in app.events("session.logged_out") if e["ref"] == replays[-1]["ref"]]
    assert ended["user"] == "alice"
    main.close()


def test_switching_users_ends_the_first_session_and_starts_a_new_one(app: PeerApp) -> None:
    """``logout()`` then ``login("bob")`` and a message, in one request: one ``Set-Cookie``
    (the new session's, never the deletion beside it), ``Clear-Site-Data: "storage"`` without
    ``"cookies"``, ``no-store``; bob's session holds the message alone; alice's logout is
    reported under the lineage of her sign-in, bob's sign-in under a new one, and a replay of
    her cookie under hers."""
    main = signed_in(app, "alice")
    post(main, "/set?key=card&value=4242", token(main))
    old, old_token = cookie_of(main), token(main)
    logins = app.events("session.logged_in")
    alice_ref, alice_session = logins[-1]["ref"], logins[-1]["session"]
    r = post(main, "/logout?then=bob&flash=welcome-bob", old_token)
    assert r.status_code == 303
    (fresh,) = r.headers.get_list("set-cookie")
    assert fresh.startswith(f"{COOKIE}=") and "Max-Age=0" not in fresh
    assert "Path=/" in fresh and "Secure" in fresh and "Domain" not in fresh
    assert r.headers["clear-site-data"] == '"storage"'
    assert r.headers["cache-control"] == "no-store"
    new = cookie_of(main)
    assert new != old
    assert main.get("/show").json() == {"flash": "welcome-bob"}
    assert whoami(main) == {"user": "bob", "data": {}}  # nothing of alice's
    refused = post(main, "/set?key=a&value=1", old_token)  # a form of alice's session
    assert refused.status_code == 403
    (ended,) = [e for e in app.events("session.logged_out") if e["ref"] == alice_ref]
    assert ended["user"] == "alice" and ended["session"] == alice_session
    (bob_in,) = [e for e in app.events("session.logged_in") if e["user"] == "bob"][-1:]
    assert bob_in["session"] not in ("", alice_session)
    with tab(app, old) as stale:
        assert whoami(stale) == {"user": None, "data": {}}
        assert stale.cookies.get(COOKIE) is None
    replay = app.events("session.replay.revoked")[-1]
    assert replay["user"] == "alice" and replay["session"] == alice_session
    main.close()


def test_a_logout_that_sets_no_value_starts_no_session(app: PeerApp) -> None:
    """Without a value set after ``logout()`` the response only deletes the cookie, with
    ``Clear-Site-Data: "cookies"``, as ever."""
    main = signed_in(app)
    r = post(main, "/logout", token(main))
    assert r.status_code == 200
    (deletion,) = r.headers.get_list("set-cookie")
    assert deletion.startswith(f"{COOKIE}=;") and "Max-Age=0" in deletion
    assert r.headers["clear-site-data"] == '"cookies", "storage"'
    assert main.cookies.get(COOKIE) is None
    main.close()


# -- A5 rows 23-24, complaint 23: tabs and the back button ---------------------------------------


def test_forms_of_several_tabs_and_the_back_button_keep_working(app: PeerApp) -> None:
    """Rows 23-24 (per-request masked token, token lifetime) and complaint 23 (stale tokens:
    a form in another tab or brought back by the back button fails): every token rendered for
    the session stays valid, in any order and more than once, through an ID rotation
    (privilege change); a sign-out ends them (as in Django and Spring)."""
    main = signed_in(app)
    first, second = token(main), token(main)
    assert first != second  # masked afresh for every page (BREACH)
    assert post(main, "/set?key=a&value=1", second).status_code == 200
    assert post(main, "/set?key=a&value=2", first).status_code == 200  # the older tab
    assert post(main, "/set?key=a&value=3", first).status_code == 200  # back, submit again
    before = cookie_of(main)
    assert post(main, "/rotate", second).status_code == 200
    assert cookie_of(main) != before
    assert post(main, "/set?key=a&value=4", first).status_code == 200  # after the rotation
    assert post(main, "/logout", first).status_code == 200
    refused = post(main, "/set?key=a&value=5", first)
    assert refused.status_code == 403
    assert "Reload the page" in refused.text
    assert post(main, "/set?key=a&value=6", token(main)).status_code == 200  # the reloaded page
    main.close()


# -- A2 row 6, complaints 11 and 14: data across a sign-in -----------------------------------------


def test_sign_in_keeps_the_visitors_data_but_never_another_users(app: PeerApp) -> None:
    """Row 6 (regenerate: is the data kept, is the old ID dead?), complaints 11 and 14
    (express's ``regenerate`` loses the data; a value fixated across logins): a cart filled
    before signing in is still there after it, under a new ID, while the old ID is anonymous;
    another user signing in on the same browser (a shared computer) gets none of the first
    user's data (Django flushes there too)."""
    c = app.client()
    assert post(c, "/set?key=cart&value=book", token(c)).status_code == 200
    anonymous = cookie_of(c)
    assert post(c, "/login?user=alice", token(c)).status_code == 200
    assert cookie_of(c) != anonymous
    assert whoami(c) == {"user": "alice", "data": {"cart": "book"}}
    with tab(app, anonymous) as old:
        assert whoami(old) == {"user": None, "data": {}}
    assert post(c, "/set?key=card&value=alice-4242", token(c)).status_code == 200
    assert post(c, "/login?user=alice", token(c)).status_code == 200  # the same user again
    assert whoami(c)["data"] == {"cart": "book", "card": "alice-4242"}
    assert post(c, "/login?user=bob", token(c)).status_code == 200
    assert whoami(c) == {"user": "bob", "data": {}}
    c.close()


# -- A1 row 3, complaint 26: what a copy of the store gives ---------------------------------------


def test_a_copy_of_the_store_holds_no_session_id(app: PeerApp) -> None:
    """Row 3 (IDs hashed at rest) and complaint 26 (session IDs in plain text in Redis): after
    sign-ins, rotations and writes, no byte sequence of any session ID the browsers hold is in
    the SQLite files (database, WAL), so a backup or a stolen disk gives nobody a session."""
    ids = []
    for user in ("alice", "bob"):
        c = signed_in(app, user)
        post(c, "/set?key=note&value=x", token(c))
        post(c, "/rotate", token(c))
        ids.append(cookie_of(c))
        c.close()
    database = Path(app.store.removeprefix("sqlite:///"))
    files = [p for p in database.parent.iterdir() if p.name.startswith(database.name)]
    assert database in files
    dump = b"".join(p.read_bytes() for p in files)
    assert b"alice" in dump  # the copy is readable: the users are in it
    for value in ids:
        assert value.encode() not in dump


# -- gap 15, complaint 25: cookie size ------------------------------------------------------------


def test_session_data_never_grows_the_cookie_and_an_oversized_value_fails_loudly(
    app: PeerApp,
) -> None:
    """Gap 15 and complaint 25 (a cookie session over 4 KB is dropped by the browser without
    an error, and the old state comes back): the data stays on the server, so the cookie is
    the same few dozen bytes whatever the session holds, and a value over the policy's limit
    is refused where the application sets it, with nothing written."""
    c = signed_in(app)
    r = post(c, "/big?size=8000", token(c))
    assert r.status_code == 200
    assert all(len(h) < 200 for h in r.headers.get_list("set-cookie"))
    assert c.get("/whoami").request.headers["cookie"].__len__() < 100
    r = post(c, "/big?size=9000", token(c))
    assert r.status_code == 413 and "at most 8192" in r.json()["error"]
    data = whoami(c)["data"]
    assert isinstance(data, dict) and len(str(data["big"])) == 8000
    c.close()


# -- A5 row 21, complaint 22: uploads and the body read once --------------------------------------


def test_uploads_reach_the_app_whole_with_the_token_in_a_field_or_the_header(
    app: PeerApp,
) -> None:
    """Row 21 and complaint 22 (ASGI CSRF libraries consume the body, need the token before
    any file, or cannot read form fields): a multipart form whose file comes before the token
    field passes and the application reads the whole body; an upload larger than
    ``csrf.max_body_bytes`` passes with the token in the header (nothing is buffered) and is
    refused with 413 when the token is only in the body."""
    c = signed_in(app)
    csrf = token(c)
    files = {"file": ("a.bin", b"\x00" * 50_000, "application/octet-stream")}
    r = c.post("/upload", headers=SAME_ORIGIN, files=files, data={"csrf_token": csrf})
    assert r.status_code == 200 and r.json()["bytes"] > 50_000
    large = {"file": ("b.bin", b"\x01" * 3_000_000, "application/octet-stream")}
    r = post(c, "/upload", csrf, files=large)
    assert r.status_code == 200 and r.json()["bytes"] > 3_000_000
    r = c.post("/upload", headers=SAME_ORIGIN, files=large, data={"csrf_token": csrf})
    assert r.status_code == 413
    c.close()


# -- complaint 20: several instances behind a load balancer ----------------------------------------


def test_a_session_and_its_token_from_one_instance_work_on_another(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Complaint 20 (Flask-WTF's token in the session: 400s across load-balanced instances):
    two instances (here one ASGI, one WSGI) on one store and key; the page rendered by one
    posts to the other, and a sign-out on the second ends the session on the first."""
    root = tmp_path_factory.mktemp("peers-two")
    store = f"sqlite:///{root / 'shared.db'}"
    (root / "a").mkdir()
    (root / "b").mkdir()
    with serve("asgi", root / "a", store=store) as a, serve("wsgi", root / "b", store=store) as b:
        one = signed_in(a)
        cookie, csrf = cookie_of(one), token(one)
        with tab(b, cookie) as two:
            assert post(two, "/set?key=from&value=wsgi", csrf).status_code == 200
            assert whoami(one) == {"user": "alice", "data": {"from": "wsgi"}}
            assert post(two, "/logout", csrf).status_code == 200
        assert whoami(one)["user"] is None
        one.close()


# -- A6 row 33, complaint 19: the Origin check behind a TLS-terminating proxy ---------------------


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def proxied(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApp]:
    workdir = tmp_path_factory.mktemp(f"peers-proxy-{request.param}")
    with live_app(request.param, workdir, [("proxy", "http")]) as started:
        yield started


def test_behind_a_tls_proxy_the_origin_check_needs_no_extra_setting(proxied: LiveApp) -> None:
    """Row 33 and complaint 19 (Django behind a TLS proxy: "Origin checking failed" until
    ``SECURE_PROXY_SSL_HEADER`` is found): with the proxy named in ``trusted_proxies``, a
    form post from an older browser (``Origin`` only, no ``Sec-Fetch-Site``) reaching the app
    over plain HTTP passes, because the scheme the proxy reports is the one compared; a page
    of the plain-HTTP origin is still refused."""
    forwarded = {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.9"}
    with proxied.client("proxy", "http", headers=forwarded) as c:
        page = c.get("/token")
        # The browser's jar sent the Secure cookie over HTTPS; the proxy passes it on.
        jar = {"cookie": f"{COOKIE}={page.cookies[COOKIE]}"}
        sent = {**jar, "origin": f"https://{HOST}", "x-csrf-token": page.json()["csrf_token"]}
        ok = c.post("/login", headers=sent)
        assert ok.status_code == 200, ok.text
        jar = {"cookie": f"{COOKIE}={ok.cookies[COOKIE]}"}
        assert c.get("/whoami", headers=jar).json() == {"user": "alice"}
        csrf = c.get("/token", headers=jar).json()["csrf_token"]
        sent = {**jar, "origin": f"http://{HOST}", "x-csrf-token": csrf}
        refused = c.post("/logout", headers=sent)
        assert refused.status_code == 403 and "Cross-site" in refused.text
        assert c.get("/whoami", headers=jar).json() == {"user": "alice"}


# -- A3 row 13 (SameSite), complaint: identity providers' form posts ------------------------------


def test_an_identity_providers_form_post_signs_in_through_the_exempt_callback(
    app: PeerApp,
) -> None:
    """Row 13 (SameSite=Lax) and the OAuth ``form_post`` / SAML POST-binding complaint: the
    provider's cross-site POST carries no Lax cookie and would meet the CSRF check. On the
    path in ``csrf.exempt_paths`` it reaches the app, which keeps the assertion and answers
    303; the first-party GET that follows carries the cookie, so the state kept before
    leaving is checked and the user signed in. The same callback under the check is 403."""
    c = app.client()
    state = c.get("/sso/start").text
    before = cookie_of(c)
    provider = {"sec-fetch-site": "cross-site", "origin": "https://idp.example"}
    form = {"SAMLResponse": "bob", "RelayState": state}
    with app.client(headers=provider) as browser_without_lax_cookie:
        refused = browser_without_lax_cookie.post("/sso/acs-checked", data=form)
        assert refused.status_code == 403
        r = browser_without_lax_cookie.post(ACS, data=form)
        assert r.status_code == 303
    done = c.get(r.headers["location"])
    assert done.status_code == 200 and done.text == "signed in as bob"
    assert cookie_of(c) != before  # the sign-in rotated the ID
    assert whoami(c)["user"] == "bob"
    replay = c.get(r.headers["location"])  # the one-time key is spent
    assert replay.status_code == 400
    c.close()


def test_a_forged_callback_cannot_sign_a_browser_in(app: PeerApp) -> None:
    """The exempt callback is not a login-CSRF hole: an assertion posted with another
    browser's state (an attacker's) meets this browser's state and is refused."""
    victim, attacker = app.client(), app.client()
    victim.get("/sso/start")
    their_state = attacker.get("/sso/start").text
    r = attacker.post(ACS, data={"SAMLResponse": "mallory", "RelayState": their_state})
    assert victim.get(r.headers["location"]).status_code == 400
    assert whoami(victim)["user"] is None
    victim.close()
    attacker.close()
