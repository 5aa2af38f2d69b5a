"""Requirements A1 and A10 checked against the demo served for real (Starlette on uvicorn, Flask
on Werkzeug's server; the harness of ``tests/test_standards_spec_clients.py``): clients with
their own :class:`http.cookiejar.CookieJar`, and raw sockets for what no cookie jar sends.

Items: the ID means nothing and one changed character is no session (A1.2); the store file
holds neither the ID nor its plain hash (A1.4, grey-box); the ID is read from the cookie only
(A1.6) and sent in ``Set-Cookie`` only (A1.7); odd but possible ``Cookie`` syntax (quoted values,
whitespace, several ``Cookie`` fields as HTTP/2 sends them, identical duplicates, non-ASCII and
long neighbours, a name hidden in another cookie's value) never authenticates anyone but the
owner, never as another user, never with a 5xx (A1.8, A1.9); JSON endpoints refuse the simple
content types (A10.60); answers that depend on ``Sec-Fetch-Site``/``Origin`` are never stored
(A10.62); refusals are generic and never carry a token (A4.26).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from .demo.conftest import USERS, DemoServer
from .test_standards_spec_clients import (
    COOKIE,
    FIREFOX,
    Browser,
    _jar_cookie,
    browser,
    demo,
    raw,
)

__all__ = ["browser", "demo"]  # the fixtures, shared with the spec clients' module

JSON = {"accept": "application/json"}


def _decoded(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _me(demo: DemoServer, cookie_headers: list[str]) -> tuple[int, bytes]:
    """``GET /api/me`` with exactly these ``Cookie`` fields, one per line, as written."""
    headers = [("Cookie", value) for value in cookie_headers]
    status, _, body = raw(
        demo, "GET", "/api/me", [*headers, ("Accept", "application/json"), ("User-Agent", FIREFOX)]
    )
    return status, body


def _user(status: int, body: bytes) -> str | None:
    assert status < 500, (status, body[:200])
    if status != 200:
        return None
    user: str | None = json.loads(body)["user"]
    return user


# -- A1.2: the ID carries nothing ------------------------------------------------------------------


def test_the_id_carries_no_user_or_time_and_a_changed_character_is_no_session(
    browser: Any,
) -> None:
    """A1.2: the signed-in ID, decoded, holds neither the user's name nor the digits of the
    current time; each single changed character, anywhere in it, is no session."""
    b = browser()
    b.sign_in()
    value = b.session_cookie()
    assert value
    decoded = _decoded(value)
    epoch = str(int(time.time()))
    for needle in (b"alice", epoch[:6].encode(), b"user"):
        assert needle not in decoded and needle.decode() not in value.lower()
    for i in (0, len(value) // 2, len(value) - 1):
        flipped = value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1 :]
        other = browser()
        other.jar.set_cookie(_jar_cookie(COOKIE, flipped))
        assert other.user() is None, i
    assert b.user() == "alice"


# -- A1.4: the store keeps a keyed hash, never the ID ----------------------------------------------


def test_the_store_file_holds_neither_the_id_nor_its_plain_hash(
    demo: DemoServer, browser: Any
) -> None:
    """A1.4 (grey-box): the SQLite store file, its journal included, contains neither the
    signed-in ID nor its SHA-256 (the key is a keyed hash: a stolen file cannot be matched
    against a list of stolen cookies without the secret), yet the session is in it."""
    b = browser()
    b.sign_in()
    value = b.session_cookie()
    assert value
    db = Path(urlsplit(demo.store).path)
    files = [p for p in db.parent.glob(db.name + "*") if p.is_file()]
    content = b"".join(p.read_bytes() for p in files)
    assert b"alice" in content  # the record is there
    plain = hashlib.sha256(value.encode()).hexdigest()
    for needle in (value, plain, base64.urlsafe_b64encode(bytes.fromhex(plain)).decode()[:40]):
        assert needle.encode() not in content


# -- A1.6, A1.7: only the cookie carries the ID ----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "form"),
    [
        ("/api/me?sid={v}", {}, None),
        ("/api/me?id={v}", {}, None),
        ("/api/me?__Host-id={v}", {}, None),
        ("/api/me", {"x-session-id": "{v}"}, None),
        ("/api/me", {"authorization": "Bearer {v}"}, None),
        ("/api/me", {"cookie2": f"{COOKIE}={{v}}"}, None),
        ("/api/transfer", {}, {"id": "{v}", COOKIE: "{v}"}),
    ],
)
def test_the_id_outside_the_cookie_is_no_session(
    browser: Any, path: str, headers: dict[str, str], form: dict[str, str] | None
) -> None:
    """A1.6: a valid signed-in ID sent without the cookie, in the query string, a header of
    its own, ``Authorization``, ``Cookie2`` or a form body, is no session."""
    owner = browser()
    owner.sign_in()
    value = owner.session_cookie()
    assert value
    stranger = browser()
    sent = {k: v.format(v=value) for k, v in headers.items()} | JSON
    if form is None:
        r = stranger.request("GET", path.format(v=value), headers=sent)
        assert r.status_code == 401, r.text
    else:
        data = {k: v.format(v=value) for k, v in form.items()}
        r = stranger.request(
            "POST", path, data=data, headers=sent | {"sec-fetch-site": "same-origin"}
        )
        assert r.status_code in (401, 403, 415), r.text
        assert "ok" not in r.text
    assert stranger.session_cookie() != value


def test_the_id_appears_in_set_cookie_only(demo: DemoServer, browser: Any) -> None:
    """A1.7: through a whole visit (sign-in, every page, the JSON API, a transfer, the device
    list, sign-out) the session ID appears in no body, no ``Location`` and no header other than
    ``Set-Cookie``, and in no event line the server wrote."""
    b = browser(ip="203.0.113.77")
    seen: list[tuple[str, Any]] = []
    ids: set[str] = set()

    def visit(method: str, path: str, **kw: Any) -> Any:
        r = b.request(method, path, **kw)
        seen.append((path, r))
        if b.session_cookie():
            ids.add(str(b.session_cookie()))
        return r

    same_origin = {"sec-fetch-site": "same-origin", "origin": b.origin}
    visit("GET", "/")
    visit("GET", "/login")
    form = {"username": "alice", "password": USERS["alice"], "csrf_token": b.token()}
    visit("POST", "/login", data=form, headers=same_origin)
    for path in ("/account", "/sessions", "/attacks", "/transfer/sent"):
        visit("GET", path)
    for path in ("/api/me", "/api/csrf"):
        visit("GET", path, headers=JSON)
    token = b.token("/account")
    visit("POST", "/transfer", data={"to": "bob", "amount": "1", "csrf_token": token},
          headers=same_origin)  # fmt: skip
    visit("POST", "/logout", data={"csrf_token": b.token("/account")}, headers=same_origin)
    assert len(ids) >= 2  # the anonymous ID and the signed-in one, at least
    for path, r in seen:
        for name, value in r.headers.multi_items():
            if name.lower() == "set-cookie":
                continue
            assert not any(i in value for i in ids), (path, name)
        assert not any(i in r.text for i in ids), path
    log = "\n".join(demo.events())
    assert not any(i in log for i in ids)


# -- A1.8, A1.9: odd Cookie syntax over a raw socket -----------------------------------------------


def _cases(v: str, w: str) -> dict[str, tuple[list[str], str | None]]:
    """Cookie fields built around alice's ID ``v`` (and bob's ``w``) and who they must sign
    in: ``"alice"``, nobody (``None``), or ``"adapter"`` (alice over ASGI, where the server hands
    over each field; nobody over WSGI, where the server joins them with a comma, which no cookie
    parser may split on)."""
    return {
        "quoted value (RFC 6265 cookie-value)": ([f'{COOKIE}="{v}"'], "alice"),
        "whitespace around the pair": ([f" \t{COOKIE}={v} \t"], "alice"),
        "whitespace around =": ([f"{COOKIE} = {v}"], "alice"),
        "no space after ;": ([f"a=1;{COOKIE}={v};b=2"], "alice"),
        "the same value twice": ([f"{COOKIE}={v}; {COOKIE}={v}"], "alice"),
        "the same value, once quoted": ([f'{COOKIE}={v}; {COOKIE}="{v}"'], "alice"),
        "a case variant beside it": ([f"__host-id=zz; {COOKIE}={v}; __HOST-ID={w}"], "alice"),
        "latin-1 neighbour": ([f"pref=\xe9t\xe9; {COOKIE}={v}"], "alice"),
        "UTF-8 bytes as a neighbour's name": ([f"\xc3\xa9=1; {COOKIE}={v}"], "alice"),
        "10 KB of neighbours": ([f"{COOKIE}={v}; " + "; ".join(f"c{i}=" + "x" * 90 for i in range(100))], "alice"),  # noqa: E501
        "over 16 KB of neighbours": ([f"{COOKIE}={v}; big=" + "A" * 17_000], None),
        "split fields, the ID in the second": (["a=1", f"{COOKIE}={v}"], "adapter"),
        "split fields, the ID in the first": ([f"{COOKIE}={v}", "a=1"], "adapter"),
        "split fields, the ID in both": ([f"{COOKIE}={v}", f"{COOKIE}={v}"], "adapter"),
        "split fields, two users": ([f"{COOKIE}={w}", f"{COOKIE}={v}"], None),
        "the name inside another cookie's value": ([f"x=a,{COOKIE}={v}"], None),
        "the name after a comma, no space": ([f"a=1,{COOKIE}={v}"], None),
        "the ID with a trailing =": ([f"{COOKIE}={v}="], None),
        "the ID with a trailing quote": ([f'{COOKIE}={v}"'], None),
        "UTF-8 in the ID": ([f"{COOKIE}={v[:-2]}\xc3\xa9"], None),
    }  # fmt: skip


_CASE_NAMES = list(_cases("v", "w"))


@pytest.fixture(scope="module")
def signed_in(demo: DemoServer) -> Iterator[tuple[Browser, Browser]]:
    """Alice and Bob, signed in once for the cases that end no session (signing in costs a
    password hash)."""
    alice, bob = Browser(demo), Browser(demo)
    alice.sign_in()
    bob.sign_in("bob")
    yield alice, bob
    alice.close()
    bob.close()


@pytest.mark.parametrize("case", _CASE_NAMES)
def test_odd_cookie_syntax_signs_in_the_owner_or_nobody(
    demo: DemoServer, browser: Any, signed_in: tuple[Browser, Browser], case: str
) -> None:
    """A1.8, A1.9: each ``Cookie`` field set (written byte for byte over a socket) built around
    a signed-in ID gets the owner or nobody, as listed in :func:`_cases`, never the other user
    and never a 5xx. Unless the fields presented two different IDs (cookie tossing: both end,
    so that case signs in two users of its own), the owner is still signed in afterwards."""
    tossing = case == "split fields, two users"
    if tossing:
        alice, bob = browser(), browser()
        alice.sign_in()
        bob.sign_in("bob")
    else:
        alice, bob = signed_in
    v, w = alice.session_cookie(), bob.session_cookie()
    assert v and w
    fields, expected = _cases(v, w)[case]
    if expected == "adapter":
        expected = "alice" if "flask" not in demo.process.args[2] else None  # type: ignore[index]
    status, body = _me(demo, fields)
    assert _user(status, body) == expected, (status, body[:200])
    if expected is None:
        assert status == 401 and json.loads(body) == {"error": "not-authenticated"}
        assert v.encode() not in body
    if not tossing:
        assert alice.user() == "alice"
    assert bob.user() in ("bob", None) and bob.user() != "alice"


def test_a_nul_byte_in_a_neighbour_is_never_a_server_error(demo: DemoServer, browser: Any) -> None:
    """A1.8: a NUL in another cookie is refused by the server itself (uvicorn: 400) or ignored
    (Werkzeug: the owner is signed in); never a 5xx, never a lost session."""
    b = browser()
    b.sign_in()
    status, body = _me(demo, [f"{COOKIE}={b.session_cookie()}; x=\x00"])
    assert status in (200, 400), status
    if status == 200:
        assert json.loads(body) == {"user": "alice"}
    assert b.user() == "alice"


# -- A10.60: JSON endpoints and simple content types -----------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON", True),
        ("text/plain", False),
        ("text/plain; charset=utf-8", False),
        ("text/plain;application/json", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("application/jsonp", False),
        ("application/json, text/plain", False),
        (None, False),
    ],
)
def test_the_json_api_refuses_what_a_form_or_a_simple_fetch_can_send(
    browser: Any, content_type: str | None, ok: bool
) -> None:
    """A10.60: with a valid token and ``Sec-Fetch-Site: same-origin``, a JSON body under any
    content type a cross-site form or a CORS-simple ``fetch`` may send (``text/plain`` and its
    variants, the two form types) gets 415; ``application/json`` in any case, with
    parameters, works."""
    b = browser()
    b.sign_in()
    headers = {"x-csrf-token": b.api_token(), "sec-fetch-site": "same-origin"} | JSON
    if content_type is not None:
        headers["content-type"] = content_type
    body = json.dumps({"to": "bob", "amount": "1"})
    r = b.request("POST", "/api/transfer", content=body, headers=headers)
    if ok:
        assert r.status_code == 200 and r.json()["ok"] is True
    else:
        assert r.status_code == 415, (content_type, r.status_code, r.text)
        assert r.json() == {"error": "unsupported-media-type", "reason": "json-only"}


@pytest.mark.parametrize(
    "fields",
    [["application/json", "text/plain"], ["text/plain", "application/json"]],
    ids=["json-first", "json-last"],
)
def test_two_content_type_fields_never_pass_as_json_by_the_first(
    demo: DemoServer, browser: Any, fields: list[str]
) -> None:
    """A10.60 with two ``Content-Type`` fields over a raw socket: uvicorn hands both to the
    application, which answers 415 whatever their order (the body's type is ambiguous);
    Werkzeug's server keeps only the last one, which both the check and Flask's parsing then
    read, so the answer follows that one."""
    b = browser()
    b.sign_in()
    token = b.api_token()
    headers = [
        ("Cookie", f"{COOKIE}={b.session_cookie()}"),
        ("User-Agent", FIREFOX),
        ("Accept", "application/json"),
        ("Sec-Fetch-Site", "same-origin"),
        ("X-CSRF-Token", token),
        *(("Content-Type", value) for value in fields),
    ]
    body = json.dumps({"to": "bob", "amount": "1"}).encode()
    status, _, answer = raw(demo, "POST", "/api/transfer", headers, body)
    flask = "flask" in demo.process.args[2]  # type: ignore[index]
    if flask and fields[-1] == "application/json":
        assert status == 200, answer[:200]
    else:
        assert status == 415, answer[:200]
        assert json.loads(answer) == {"error": "unsupported-media-type", "reason": "json-only"}


# -- A10.62, A4.26: answers resting on the cross-origin check --------------------------------------


@pytest.mark.parametrize("site", ["same-origin", "cross-site", None])
def test_answers_to_unsafe_requests_are_never_stored_and_refusals_are_generic(
    browser: Any, site: str | None
) -> None:
    """A10.62: whatever ``Sec-Fetch-Site`` said, the answer to a POST is ``no-store`` or varies
    on ``Sec-Fetch-Site`` and ``Origin``, so no cache hands one client's verdict to another.
    A4.26: a refusal names the check and nothing else: no token, no ID, no traceback."""
    b = browser()
    b.sign_in()
    token = b.api_token()
    extra = {"sec-fetch-site": site} if site else {"origin": "http://evil.test"}
    r = b.transfer(token, **extra)
    cache = r.headers.get("cache-control", "")
    vary = {v.strip().lower() for v in r.headers.get("vary", "").split(",")}
    assert "no-store" in cache or {"sec-fetch-site", "origin"} <= vary, r.headers
    if r.status_code == 403:
        value = b.session_cookie()
        assert value and value not in r.text and token not in r.text
        assert "Traceback" not in r.text and re.fullmatch(r"\{[^{}]*\}", r.text.strip())
