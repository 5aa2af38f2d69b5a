"""The session cookie's lifetime as a browser sees it, on both adapters: none by default (a
browser-session cookie); with ``persistent=True`` a ``Max-Age`` of at most the absolute timeout
and never more than 400 days (RFC 6265bis: browsers cap longer ones, so a longer value only
pretends), whatever the configured absolute timeout."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest

from sessionwarden.cookies import MAX_COOKIE_AGE, CookieWriter
from sessionwarden.policy import CookiePolicy, Policy

from .conftest import SECRET
from .two_adapters import COOKIE, KINDS, client

pytestmark = pytest.mark.anyio
FOUR_HUNDRED_DAYS = 400 * 86_400


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _session_cookie(headers: list[str]) -> dict[str, str]:
    """The attributes (lower-case names) of the session cookie's ``Set-Cookie``."""
    for header in headers:
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if COOKIE in jar:
            morsel = jar[COOKIE]
            return {k: v for k, v in morsel.items() if v} | {"value": morsel.value}
    raise AssertionError(f"no {COOKIE} cookie in {headers}")


async def _login_cookie(kind: str, policy: Policy) -> dict[str, str]:
    with client(kind, policy) as c:
        await c.login()
        return _session_cookie(c.responses[-1].headers.get_list("set-cookie"))


@pytest.mark.parametrize("kind", KINDS)
async def test_default_cookie_is_a_browser_session_cookie(kind: str) -> None:
    attrs = await _login_cookie(kind, Policy(secret_keys=(SECRET,), allowed_hosts=("app.test",)))
    assert "max-age" not in attrs and "expires" not in attrs


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("absolute", "expected"),
    [
        (3600.0, 3600),
        (FOUR_HUNDRED_DAYS, FOUR_HUNDRED_DAYS),
        (FOUR_HUNDRED_DAYS + 1, FOUR_HUNDRED_DAYS),
        (10 * 365 * 86_400.0, FOUR_HUNDRED_DAYS),  # a "remember me for ten years"
    ],
)
async def test_persistent_cookie_max_age_is_capped_at_400_days(
    kind: str, absolute: float, expected: int
) -> None:
    policy = Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("app.test",),
        absolute_timeout=absolute,
        idle_timeout=absolute,
        rotate_every=0,
        cookie=CookiePolicy(persistent=True),
    )
    attrs = await _login_cookie(kind, policy)
    assert int(attrs["max-age"]) == expected
    assert "expires" not in attrs


@pytest.mark.parametrize("kind", KINDS)
async def test_rotated_persistent_cookie_keeps_the_cap(kind: str) -> None:
    """A periodic rotation late in a long session: the new cookie's Max-Age is the remaining
    lifetime, still capped."""
    policy = Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("app.test",),
        absolute_timeout=5 * 365 * 86_400.0,
        idle_timeout=5 * 365 * 86_400.0,
        rotate_every=86_400,
        rotation_grace=10,
        cookie=CookiePolicy(persistent=True),
    )
    with client(kind, policy) as c:
        await c.login()
        first = c.cookie
        c.clock.advance(2 * 86_400)
        response = await c.request("GET", "/whoami")
        assert response.json() == {"user": "alice"}
        assert c.cookie != first, "the periodic rotation issued a new ID"
        attrs = _session_cookie(response.headers.get_list("set-cookie"))
        assert int(attrs["max-age"]) == FOUR_HUNDRED_DAYS


def test_writer_never_exceeds_the_cap_or_goes_negative() -> None:
    writer = CookieWriter(CookiePolicy(persistent=True))
    assert MAX_COOKIE_AGE == FOUR_HUNDRED_DAYS
    assert "Max-Age=34560000;" in writer.issue("x", 1e12)
    assert "Max-Age=0;" in writer.issue("x", -5)
    assert "Max-Age" not in CookieWriter(CookiePolicy()).issue("x", 1e12)
