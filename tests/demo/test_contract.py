"""Every line of the demo's HTTP contract, against a real server (SQLite and Redis stores)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import COOKIE, FIREFOX_UA, USERS, Client, form_token, page_token

HTML_PAGES_SIGNED_OUT = ["/", "/login", "/attacks"]
HTML_PAGES_SIGNED_IN = ["/", "/login", "/account", "/sessions", "/attacks"]


def csp_nonce(response: Any) -> str:
    csp = response.headers["content-security-policy"]
    match = re.search(r"'nonce-([A-Za-z0-9+/=]+)'", csp)
    assert match, csp
    return match.group(1)


def normalise(html: str) -> str:
    """A page with its per-response secrets (masked token, CSP nonce) blanked out."""
    html = re.sub(r'(name="csrf-token" content=)"[^"]+"', r'\1"T"', html)
    html = re.sub(r'(name="csrf_token" value=)"[^"]+"', r'\1"T"', html)
    return re.sub(r'nonce="[^"]+"', 'nonce="N"', html)


def assert_page_contract(response: Any) -> None:
    """Meta tags, the nonce'd client script, and nothing inline that the CSP would block."""
    html = response.text
    nonce = csp_nonce(response)
    page_token(html)
    for name in ("session-idle-timeout", "session-warn-before", "session-keepalive-url"):
        assert f'<meta name="{name}" content="' in html, name
    assert f'<script src="/static/sessionwarden.js" nonce="{nonce}"' in html
    assert f'<link rel="stylesheet" href="/static/demo.css" nonce="{nonce}">' in html
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert f'nonce="{nonce}"' in tag and "src=" in tag, tag
    assert "<style" not in html
    assert not re.search(r"<[a-z][^>]*\sstyle=", html)
    assert not re.search(r"<[a-z][^>]*\son[a-z]+=", html)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    # No server software and version for an attacker to look up (Werkzeug adds one by default).
    assert "server" not in response.headers, response.headers["server"]


# --- sign-in ---------------------------------------------------------------------------------


def test_login_page_is_a_form_with_a_token(client: Client) -> None:
    response = client.get("/login")
    assert response.status_code == 200
    html = response.text
    assert '<form method="post" action="/login"' in html
    assert 'name="username"' in html and 'name="password"' in html
    assert '<label for="username">' in html and '<label for="password">' in html
    assert form_token(html)
    assert_page_contract(response)


def test_session_cookie_flags(client: Client) -> None:
    response = client.get("/login")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for attr in ("Path=/", "Secure", "HttpOnly", "SameSite=Lax"):
        assert attr in cookie
    assert "Domain" not in cookie


def test_login_rotates_the_cookie_and_lands_on_account(client: Client) -> None:
    token = client.token("/login")
    anonymous = client.cookie
    assert anonymous
    response = client.post(
        "/login", data={"username": "alice", "password": "correct-horse", "csrf_token": token}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/account"
    assert client.cookie and client.cookie != anonymous
    page = client.get("/account")
    assert page.status_code == 200
    assert '<span id="account-user">alice</span>' in page.text
    # The pre-login ID is dead: presenting it again gives an anonymous visitor.
    old = Client(client.base_url)
    old.cookie = anonymous
    assert old.get("/account").status_code == 303
    old.close()


def test_bad_password_and_unknown_user_get_the_same_401(client: Client) -> None:
    wrong_password = client.login("alice", "not-the-password")
    assert wrong_password.status_code == 401
    token = client.token("/login")
    unknown_user = client.post(
        "/login", data={"username": "mallory", "password": "whatever", "csrf_token": token}
    )
    assert unknown_user.status_code == 401
    assert "Incorrect user name or password." in wrong_password.text
    # The form keeps the name typed; apart from that echo the two answers are the same.
    assert 'value="alice"' in wrong_password.text and 'value="mallory"' in unknown_user.text
    assert normalise(wrong_password.text.replace('value="alice"', 'value="NAME"')) == normalise(
        unknown_user.text.replace('value="mallory"', 'value="NAME"')
    )
    assert_page_contract(wrong_password)
    assert client.api_user() is None


def test_login_without_a_valid_token_is_403(client: Client) -> None:
    creds = {"username": "alice", "password": "correct-horse"}
    # No session at all.
    assert client.post("/login", data=creds).status_code == 403
    # A session, but no token in the form.
    client.token("/login")
    assert client.post("/login", data=creds).status_code == 403
    # A forged token, and a token of another session.
    assert client.post("/login", data={**creds, "csrf_token": "x" * 86}).status_code == 403
    other = Client(client.base_url)
    foreign = other.token("/login")
    other.close()
    assert client.post("/login", data={**creds, "csrf_token": foreign}).status_code == 403
    assert client.api_user() is None


# --- account and transfers -------------------------------------------------------------------


def test_account_when_signed_out_redirects_to_login(client: Client) -> None:
    response = client.get("/account")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


def test_transfer_with_token_is_confirmed_and_kept_in_history(client: Client) -> None:
    client.signed_in("alice")
    token = form_token(client.get("/account").text)
    response = client.post("/transfer", data={"to": "bob", "amount": "12.5", "csrf_token": token})
    assert response.status_code == 303  # post/redirect/get
    assert response.headers["location"] == "/transfer/sent"
    sent = client.get("/transfer/sent")
    assert sent.status_code == 200
    assert "Transfer sent" in sent.text
    assert "<strong>12.50</strong> sent to <strong>bob</strong>" in sent.text
    assert_page_contract(sent)
    # A reload shows no second confirmation and sends nothing: back to the account.
    again = client.get("/transfer/sent")
    assert again.status_code == 303 and again.headers["location"] == "/account"
    history = client.get("/account").text
    assert len(re.findall(r"<td>bob</td><td class=\"num\">12.50</td>", history)) == 1


def test_transfer_confirmation_needs_a_transfer_and_a_user(client: Client) -> None:
    anonymous = client.get("/transfer/sent")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    client.signed_in("alice")
    nothing = client.get("/transfer/sent")
    assert nothing.status_code == 303 and nothing.headers["location"] == "/account"


def test_history_does_not_carry_over_to_another_user(client: Client) -> None:
    client.signed_in("alice")
    token = form_token(client.get("/account").text)
    # a recipient no token or nonce of the page can spell (base64 has no '.' or space)
    client.post("/transfer", data={"to": "zed. recipient", "amount": "3", "csrf_token": token})
    assert "zed. recipient" in client.get("/account").text
    client.signed_in("bob")  # same browser, another account
    page = client.get("/account").text
    assert '<span id="account-user">bob</span>' in page
    assert "zed. recipient" not in page


def test_transfer_refused_on_every_csrf_failure(client: Client) -> None:
    client.signed_in("alice")
    good = form_token(client.get("/account").text)
    data = {"to": "mallory", "amount": "1000"}
    assert client.post("/transfer", data=data).status_code == 403
    assert client.post("/transfer", data={**data, "csrf_token": "junk"}).status_code == 403
    other = Client(client.base_url)
    foreign = other.token("/login")
    other.close()
    assert client.post("/transfer", data={**data, "csrf_token": foreign}).status_code == 403
    cross_site = client.post(
        "/transfer",
        data={**data, "csrf_token": good},
        headers={"sec-fetch-site": "cross-site", "origin": "http://localhost:1"},
    )
    assert cross_site.status_code == 403
    foreign_origin = client.post(
        "/transfer", data={**data, "csrf_token": good}, headers={"origin": "http://evil.test"}
    )
    assert foreign_origin.status_code == 403
    assert "mallory" not in client.get("/account").text


def test_transfer_when_not_signed_in_redirects_to_login(client: Client) -> None:
    token = client.token("/login")  # an anonymous session with a valid token
    response = client.post("/transfer", data={"to": "bob", "amount": "1", "csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


def test_transfer_with_bad_input_is_400(client: Client) -> None:
    client.signed_in("alice")
    token = form_token(client.get("/account").text)
    response = client.post("/transfer", data={"to": "bob", "amount": "-5", "csrf_token": token})
    assert response.status_code == 400


# --- sessions page ---------------------------------------------------------------------------


def _rows(html: str) -> list[tuple[str, bool]]:
    rows = re.findall(r'<tr data-ref="([0-9a-zA-Z_-]+)"( class="current")?', html)
    return [(ref, bool(current)) for ref, current in rows]


def test_sessions_lists_two_clients_and_revoke_others_ends_the_other(make_client: Any) -> None:
    first: Client = make_client()
    first.signed_in("bob")
    # Start from a clean slate: earlier tests may have left bob signed in elsewhere.
    token = form_token(first.get("/sessions").text)
    assert first.post("/sessions/revoke-others", data={"csrf_token": token}).status_code == 303
    second: Client = make_client(user_agent=FIREFOX_UA)
    second.signed_in("bob")

    page = first.get("/sessions")
    assert page.status_code == 200
    assert_page_contract(page)
    rows = _rows(page.text)
    assert len(rows) == 2, page.text
    assert [current for _, current in rows].count(True) == 1
    assert "This browser" in page.text
    # each device is described by its browser and platform, not the raw header
    assert "127.0.0.1" in page.text and "Firefox 128 on Linux" in page.text
    assert 'action="/sessions/revoke"' in page.text
    second_rows = _rows(second.get("/sessions").text)
    assert {r for r, _ in second_rows} == {r for r, _ in rows}
    # Each client sees its own session marked.
    mine = next(r for r, cur in rows if cur)
    theirs = next(r for r, cur in second_rows if cur)
    assert mine != theirs

    token = form_token(page.text)
    copy: Client = make_client()  # a stolen copy of this browser's cookie
    copy.cookie = first.cookie
    assert copy.api_user() == "bob"
    old_cookie = first.cookie
    response = first.post("/sessions/revoke-others", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"] == "/sessions"
    # This browser got a new ID in the same response: the copy ends with the other device.
    assert first.cookie is not None and first.cookie != old_cookie
    assert second.api_user() is None
    assert copy.api_user() is None
    assert first.api_user() == "bob"
    rows = _rows(first.get("/sessions").text)
    assert len(rows) == 1 and rows[0][1] and rows[0][0] != mine


def test_sessions_revoke_one_by_ref(make_client: Any) -> None:
    first: Client = make_client()
    second: Client = make_client()
    first.signed_in("bob")
    second.signed_in("bob")
    page = first.get("/sessions").text
    theirs = next(r for r, cur in _rows(second.get("/sessions").text) if cur)
    response = first.post("/sessions/revoke", data={"csrf_token": form_token(page), "ref": theirs})
    assert response.status_code == 303
    assert second.api_user() is None
    assert first.api_user() == "bob"
    after = first.get("/sessions").text
    assert theirs not in [ref for ref, _ in _rows(after)]
    assert f"Session {theirs} was signed out." in after


def test_sessions_when_signed_out_redirects(client: Client) -> None:
    response = client.get("/sessions")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


def test_at_most_five_sessions_per_user(make_client: Any) -> None:
    clients: list[Client] = [make_client() for _ in range(6)]
    for c in clients:
        c.signed_in("carol")
    assert clients[0].api_user() is None  # the oldest was evicted
    assert all(c.api_user() == "carol" for c in clients[1:])


# --- sign-out --------------------------------------------------------------------------------


def test_logout_expires_cookie_and_kills_the_session(client: Client) -> None:
    client.signed_in("alice")
    stolen = client.cookie
    token = form_token(client.get("/account").text)
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=;") and "Max-Age=0" in cookie
    assert '"cookies"' in response.headers.get("clear-site-data", "")
    assert client.cookie is None
    after = client.get("/account")
    assert after.status_code == 303 and after.headers["location"] == "/login"
    # Server-side, the session is gone: the old cookie is refused.
    replay = Client(client.base_url)
    replay.cookie = stolen
    assert replay.get("/account").status_code == 303
    assert replay.api_user() is None
    replay.close()


def test_logout_without_token_is_403(client: Client) -> None:
    client.signed_in("alice")
    assert client.post("/logout", data={}).status_code == 403
    assert client.api_user() == "alice"


# --- JSON API --------------------------------------------------------------------------------


def test_api_me(client: Client) -> None:
    response = client.get("/api/me")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    assert "user" not in response.json()
    client.signed_in("alice")
    response = client.get("/api/me")
    assert response.status_code == 200
    assert response.json() == {"user": "alice"}


def test_api_csrf_and_api_transfer(client: Client) -> None:
    client.signed_in("alice")
    response = client.get("/api/csrf")
    assert response.status_code == 200
    token = response.json()["csrf_token"]
    assert isinstance(token, str) and len(token) > 20
    ok = client.post(
        "/api/transfer",
        json={"to": "dave", "amount": 7},
        headers={
            "x-csrf-token": token,
        },
    )
    assert ok.status_code == 200
    assert ok.json() == {
        "ok": True,
        "transfer": {"to": "dave", "amount": "7.00", "at": ok.json()["transfer"]["at"]},
    }
    assert "<td>dave</td>" in client.get("/account").text

    missing = client.post("/api/transfer", json={"to": "mallory", "amount": 1})
    assert missing.status_code == 403
    assert missing.headers["content-type"].startswith("application/json")
    assert missing.json()["error"] == "csrf"
    bad = client.post(
        "/api/transfer", json={"to": "mallory", "amount": 1}, headers={"x-csrf-token": "bad"}
    )
    assert bad.status_code == 403 and bad.json()["error"] == "csrf"
    cross = client.post(
        "/api/transfer",
        json={"to": "mallory", "amount": 1},
        headers={"x-csrf-token": token, "sec-fetch-site": "cross-site"},
    )
    assert cross.status_code == 403 and cross.json()["error"] == "cross-origin"
    invalid = client.post(
        "/api/transfer", json={"to": "", "amount": "x"}, headers={"x-csrf-token": token}
    )
    assert invalid.status_code == 400
    assert "mallory" not in client.get("/account").text


def test_api_transfer_when_signed_out_is_401_json(client: Client) -> None:
    token = client.get("/api/csrf").json()["csrf_token"]
    response = client.post(
        "/api/transfer", json={"to": "bob", "amount": 1}, headers={"x-csrf-token": token}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "not-authenticated"


# --- anomaly detection -----------------------------------------------------------------------


def test_user_agent_change_revokes_the_session(make_client: Any) -> None:
    victim: Client = make_client()
    victim.signed_in("alice")
    thief: Client = make_client(user_agent=FIREFOX_UA)
    thief.cookie = victim.cookie
    response = thief.get("/account")
    assert response.status_code == 303  # anonymous: the session was revoked on sight
    assert thief.api_user() is None
    assert victim.api_user() is None  # ... for the victim too: the cookie is dead
    assert victim.get("/account").status_code == 303


# --- every page ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", HTML_PAGES_SIGNED_OUT)
def test_pages_signed_out(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert_page_contract(response)
    assert "Sign in" in response.text


@pytest.mark.parametrize("path", HTML_PAGES_SIGNED_IN)
def test_pages_signed_in(client: Client, path: str) -> None:
    client.signed_in("alice")
    response = client.get(path)
    assert response.status_code == 200
    assert_page_contract(response)
    assert '<meta name="session-keepalive-url" content="/api/me">' in response.text
    assert "Signed in as <strong>alice</strong>" in response.text


def test_static_files(client: Client) -> None:
    js = client.get("/static/sessionwarden.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert 'meta("csrf-token")' in js.text
    css = client.get("/static/demo.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/static/attacks.js").status_code == 200
    assert client.get("/static/nope.js").status_code == 404
    assert client.cookie is None  # static files never create sessions


def test_attacks_page_stores_comments_raw_and_sanitized(client: Client) -> None:
    page = client.get("/attacks")
    assert page.status_code == 200
    assert_page_contract(page)
    nonce = csp_nonce(page)
    assert f'<script src="/static/attacks.js" nonce="{nonce}">' in page.text
    for anchor in ('id="xss"', 'id="csrf"', 'id="idle"', 'id="csp-log"', "--evil-port"):
        assert anchor in page.text
    payload = "<b>hi</b><script>window.__xss = 1</script>"
    response = client.post(
        "/attacks/comment", data={"comment": payload, "csrf_token": page_token(page.text)}
    )
    assert response.status_code == 303
    html = client.get("/attacks").text
    raw = html.split('id="raw-comments"', 1)[1].split('id="sanitized-comments"', 1)[0]
    safe = html.split('id="sanitized-comments"', 1)[1].split("</section>", 1)[0]
    assert payload in raw  # unsanitised on purpose: the CSP is what stops it
    assert "<b>hi</b>" in safe and "<script" not in safe
    refused = client.post("/attacks/comment", data={"comment": payload})
    assert refused.status_code == 403


def test_metrics(client: Client) -> None:
    client.get("/login")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert 'sessionwarden_events_total{kind="session.created"}' in response.text


# --- in-process pieces: the app factory, passwords, the key file ----------------------------


def test_create_app_serves_in_process() -> None:
    import anyio
    import httpx

    from sessionwarden.demo import create_app, demo_policy
    from sessionwarden.demo.users import hash_password

    app = create_app(
        store="memory://",
        policy=demo_policy(b"s" * 32),
        users={"alice": hash_password("pw")},
    )

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            page = await http.get("/login")
            assert page.status_code == 200
            cookie = page.headers["set-cookie"].split(";", 1)[0]
            token = page_token(page.text)
            response = await http.post(
                "/login",
                data={"username": "alice", "password": "pw", "csrf_token": token},
                headers={"cookie": cookie},
            )
            assert response.status_code == 303
            http.cookies.clear()

    anyio.run(scenario)


def test_passwords_are_salted_scrypt_hashes() -> None:
    from sessionwarden.demo.users import check_login, hash_password, verify_password

    one, two = hash_password("correct-horse"), hash_password("correct-horse")
    assert one != two and one.startswith("scrypt$") and "correct-horse" not in one
    assert verify_password("correct-horse", one)
    assert not verify_password("correct-hors", one)
    for junk in ("", "scrypt$", "md5$1$2$3$4$5", "scrypt$99$8$1$AA==$AA=="):
        assert not verify_password("x", junk)
    assert check_login({"a": one}, "a", "correct-horse")
    assert not check_login({"a": one}, "b", "correct-horse")


def test_user_specs() -> None:
    from sessionwarden.demo.users import parse_user_spec

    assert parse_user_spec("alice:pa:ss") == ("alice", "pa:ss")
    for bad in ("alice", "alice:", ":pw", "al ice:pw", "<b>:pw"):
        with pytest.raises(ValueError):
            parse_user_spec(bad)


def test_secret_file_is_created_private_and_reused(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from sessionwarden.demo.cli import default_secret_path, load_secret

    monkeypatch.delenv("SESSIONWARDEN_SECRET", raising=False)
    with pytest.raises(ValueError, match="does not exist"):  # a missing directory is not made
        load_secret(tmp_path / "no" / "demo.key", "memory://", out=io.StringIO())
    assert not (tmp_path / "no").exists()
    (tmp_path / "k").mkdir()
    path = tmp_path / "k" / "demo.key"
    key, where = load_secret(path, "memory://", out=io.StringIO())
    assert len(key) == 32 and where == str(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_secret(path, "memory://", out=io.StringIO())[0] == key
    assert default_secret_path("sqlite:///data/x.db") == Path("data/sessionwarden-demo.key")
    assert default_secret_path("memory://", Path("d")) == Path("d/sessionwarden-demo.key")
    monkeypatch.setenv("SESSIONWARDEN_SECRET", "e" * 40)
    assert load_secret(None, "memory://") == (b"e" * 40, "$SESSIONWARDEN_SECRET")
    monkeypatch.setenv("SESSIONWARDEN_SECRET", "short")
    with pytest.raises(ValueError):
        load_secret(None, "memory://")


def test_pages_show_the_reference_the_cli_uses(client: Client) -> None:
    """The sessions and account pages name a session by the same reference as the operator's
    ``sessionwarden sessions ...`` commands (all 16 hex digits), so one can be looked up by the
    other."""
    from sessionwarden import tokens

    client.signed_in("alice")
    page = client.get("/sessions").text
    refs = re.findall(r'<tr data-ref="([0-9a-f]+)"', page)
    assert refs and all(len(ref) == tokens.REF_LENGTH for ref in refs)
    for ref in refs:
        assert f"<code>{ref}</code>" in page
    assert f"<code>{refs[-1]}</code>" in client.get("/account").text or any(
        f"<code>{ref}</code>" in client.get("/account").text for ref in refs
    )


def test_keep_me_signed_in(client: Client) -> None:
    """The sign-in form's "Keep me signed in": ticked, a cookie that outlives the browser for
    the demo's remember lifetime (30 days), the idle warning counting down a week, and the
    account page saying so; unticked (the default), a browser-session cookie and the normal
    idle timeout."""
    form = client.get("/login").text
    assert '<input id="remember" name="remember" type="checkbox"' in form
    token = client.token("/login")
    response = client.post(
        "/login",
        data={
            "username": "alice",
            "password": USERS["alice"],
            "csrf_token": token,
            "remember": "on",
        },
    )
    assert response.status_code == 303
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(COOKIE))
    assert "Max-Age=2592000;" in cookie
    account = client.get("/account").text
    assert '<dd id="remembered">yes' in account
    assert '<meta name="session-idle-timeout" content="604800">' in account
    assert client.post("/logout", data={"csrf_token": page_token(account)}).status_code == 303
    response = client.login()
    assert response.status_code == 303
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(COOKIE))
    assert "Max-Age" not in cookie
    account = client.get("/account").text
    assert '<dd id="remembered">no' in account
    assert '<meta name="session-idle-timeout" content="1800">' in account
