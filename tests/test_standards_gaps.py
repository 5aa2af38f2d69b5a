"""Smaller requirements, each through both adapters as a client sees it: a ``Domain`` turns the
``__Host-`` cookie into ``__Secure-`` (with a warning); an exempt path ``/webhook/`` does not widen
to ``/webhook`` or to paths a router would normalise into it; ``Permissions-Policy`` on request;
API paths refused over plain HTTP instead of redirected; and replacing every secret key ends every
user's session at once."""

from __future__ import annotations

import os

import pytest

from sessionwarden.events import EventKind
from sessionwarden.policy import CookiePolicy, CsrfPolicy, HeadersPolicy, HttpsPolicy, Policy

from .conftest import SECRET
from .two_adapters import KINDS, client

pytestmark = pytest.mark.anyio
ADAPTERS = pytest.mark.parametrize("kind", KINDS)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _policy(**kwargs: object) -> Policy:
    return Policy(secret_keys=(SECRET,), allowed_hosts=("app.test",), **kwargs)  # type: ignore[arg-type]


# -- a Domain switches the prefix ---------------------------------------------------------------


def test_a_domain_switches_host_to_secure_with_a_warning() -> None:
    with pytest.warns(UserWarning, match=r"cookie\.domain: .*'__Secure-id'"):
        cookie = CookiePolicy(domain="app.test")
    assert cookie.name == "__Secure-id"
    with pytest.warns(UserWarning, match="__Secure-sid"):
        assert CookiePolicy(name="__Host-sid", domain="app.test").name == "__Secure-sid"


@ADAPTERS
async def test_the_domain_cookie_is_set_as_secure_prefixed(kind: str) -> None:
    with pytest.warns(UserWarning):
        policy = _policy(cookie=CookiePolicy(domain="app.test"))
    with client(kind, policy, cookie_name="__Secure-id") as c:
        await c.login()
        (set_cookie,) = c.responses[-1].headers.get_list("set-cookie")
        assert set_cookie.startswith("__Secure-id=")
        for attr in ("Domain=app.test", "Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
            assert attr in set_cookie
        assert (await c.request("GET", "/whoami")).json() == {"user": "alice"}


# -- exempt paths match exactly -----------------------------------------------------------------


@ADAPTERS
@pytest.mark.parametrize("path", ["/webhook", "/webhook/../transfer", "//webhook/", "/webhookx"])
async def test_an_exempt_subtree_does_not_widen(kind: str, path: str) -> None:
    with client(kind, _policy(csrf=CsrfPolicy(exempt_paths=("/webhook/",)))) as c:
        await c.login()
        response = await c.request(
            "POST", path, headers={"sec-fetch-site": "cross-site", "accept": "application/json"}
        )
        assert response.status_code == 403, path
        assert response.json()["error"] == "cross-origin"


@ADAPTERS
async def test_the_exempt_subtree_itself_is_exempt(kind: str) -> None:
    with client(kind, _policy(csrf=CsrfPolicy(exempt_paths=("/webhook/",)))) as c:
        response = await c.request(
            "POST", "/webhook/stripe", headers={"sec-fetch-site": "cross-site"}
        )
        assert response.status_code == 404  # past the guard: the app has no such route
        assert not c.recorder.of(EventKind.CROSS_ORIGIN_REFUSED)


# -- Permissions-Policy -------------------------------------------------------------------------


@ADAPTERS
async def test_permissions_policy_only_when_configured(kind: str) -> None:
    with client(kind, _policy()) as c:
        assert "permissions-policy" not in (await c.request("GET", "/whoami")).headers
    value = "camera=(), microphone=(), geolocation=()"
    with client(kind, _policy(headers=HeadersPolicy(permissions_policy=value))) as c:
        for path in ("/whoami", "/missing"):
            assert (await c.request("GET", path)).headers["permissions-policy"] == value
    with pytest.raises(ValueError, match="permissions-policy"):
        from sessionwarden.headers import SecurityHeaders

        SecurityHeaders(HeadersPolicy(permissions_policy="camera=()\r\nx: y"))


# -- plain HTTP: browsers are redirected, APIs refused -------------------------------------------


@ADAPTERS
async def test_api_paths_over_http_are_refused_not_redirected(kind: str) -> None:
    policy = _policy(https=HttpsPolicy(refuse_paths=("/api",)))
    with client(kind, policy, base="http://app.test") as c:
        page = await c.request("GET", "/whoami")
        assert page.status_code == 308
        assert page.headers["location"] == "https://app.test/whoami"
        for path in ("/api", "/api/x", "/api/transfer?x=1"):
            api = await c.request("POST", path, headers={"accept": "application/json"})
            assert api.status_code == 403, path
            assert api.json() == {"error": "https-required", "reason": "plain-http"}
            assert "location" not in api.headers and "set-cookie" not in api.headers
        assert (await c.request("GET", "/apix")).status_code == 308


def test_refuse_paths_is_validated() -> None:
    with pytest.raises(ValueError, match=r"https\.refuse_paths"):
        HttpsPolicy(refuse_paths=("api",))
    with pytest.raises(ValueError, match=r"https\.refuse_paths"):
        HttpsPolicy(refuse_paths="/api")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"https\.refuse_json"):
        HttpsPolicy(refuse_json="yes")  # type: ignore[arg-type]


@ADAPTERS
async def test_json_clients_are_redirected_when_refuse_json_is_off(kind: str) -> None:
    for refuse_json, status in ((True, 403), (False, 308)):
        policy = _policy(https=HttpsPolicy(refuse_json=refuse_json))
        with client(kind, policy, base="http://app.test") as c:
            r = await c.request("GET", "/whoami", headers={"accept": "application/json"})
            assert r.status_code == status
            assert "set-cookie" not in r.headers


# -- every user's sessions end when every key is replaced ----------------------------------------


@ADAPTERS
async def test_replacing_every_key_ends_every_session(kind: str) -> None:
    """ "Terminate all sessions of all users": redeploy with new keys only (no old key kept to
    verify). Every ID presented afterwards is unknown; signing in again works."""
    with client(kind, _policy()) as alice:
        await alice.login()
        old_cookie = alice.cookie
        alice.restart(Policy(secret_keys=(os.urandom(32),), allowed_hosts=("app.test",)))
        assert (await alice.request("GET", "/whoami")).json() == {"user": None}
        assert alice.recorder.of(EventKind.UNKNOWN_ID)
        await alice.login()
        assert alice.cookie != old_cookie
        assert (await alice.request("GET", "/whoami")).json() == {"user": "alice"}


# -- caches never reuse an answer that rests on Sec-Fetch-Site / Origin --------------------------


@ADAPTERS
async def test_answers_that_rest_on_the_cross_origin_check_are_never_stored(kind: str) -> None:
    for report_only in (False, True):
        with client(kind, _policy(csrf=CsrfPolicy(report_only=report_only))) as c:
            token = await c.token()  # an anonymous session with a CSRF secret
            passed = await c.request(
                "POST",
                "/transfer",
                headers={"sec-fetch-site": "same-origin", "x-csrf-token": token},
            )
            assert passed.status_code == 200
            assert "set-cookie" not in passed.headers  # anonymous, nothing else makes it no-store
            assert passed.headers["cache-control"] == "no-store"
            crossed = await c.request(
                "POST", "/transfer", headers={"sec-fetch-site": "cross-site", "x-csrf-token": token}
            )
            assert crossed.status_code == (200 if report_only else 403)
            assert crossed.headers["cache-control"] == "no-store"
            await c.login()
            assert (await c.request("GET", "/whoami")).headers["cache-control"] == "no-store"


# -- Clear-Site-Data on any response that ends a session for its browser --------------------------


@ADAPTERS
@pytest.mark.parametrize("base", ["https://app.test", "http://localhost"])
async def test_the_response_that_finds_a_session_expired_clears_site_data(
    kind: str, base: str
) -> None:
    """Section D.1: the header goes with the logout *and any response that ends a session for
    that browser*; an expiry found by a request is one (ASVS 5 14.3.1: client storage cleared
    once the session is terminated)."""
    policy = Policy(secret_keys=(SECRET,), allowed_hosts=("app.test", "localhost"))
    with client(kind, policy, base=base) as c:
        await c.login()
        c.clock.advance(policy.idle_timeout + 1)
        r = await c.request("GET", "/whoami")
        assert r.json() == {"user": None}
        (deletion,) = r.headers.get_list("set-cookie")
        assert deletion.startswith(f"{c.cookie_name}=;")
        assert r.headers["clear-site-data"] == '"cookies", "storage"'
        assert r.headers["cache-control"] == "no-store"


@ADAPTERS
async def test_a_response_that_starts_a_new_session_never_clears_cookies(kind: str) -> None:
    """The header is applied after the response's Set-Cookie: ``"cookies"`` beside a new
    session's cookie would erase it. A page that gives the browser whose session expired a new
    (anonymous) session, to hold a sign-in form's token, clears the ended session's storage
    only."""
    policy = _policy()
    with client(kind, policy) as c:
        await c.login()
        c.clock.advance(policy.idle_timeout + 1)
        r = await c.request("GET", "/token")
        (fresh,) = r.headers.get_list("set-cookie")
        assert not fresh.startswith(f"{c.cookie_name}=;")
        assert r.headers["clear-site-data"] == '"storage"'
        assert r.headers["cache-control"] == "no-store"


@ADAPTERS
async def test_an_unknown_id_is_cleared_without_clear_site_data(kind: str) -> None:
    with client(kind, _policy()) as c:
        c.cookie = "A" * 43  # well formed, never issued: nothing ended, nothing to learn
        r = await c.request("GET", "/whoami")
        assert r.headers.get_list("set-cookie")[0].startswith(f"{c.cookie_name}=;")
        assert "clear-site-data" not in r.headers
