"""Cookie tossing against a REAL cookie jar (``http.cookiejar``): a sibling host plants the
attacker's own live session under the session cookie's name with ``Domain=<parent>``. The guard
refuses the request that carries two cookies; what the jar still holds afterwards must never be
adopted: the attacker's cookie is cleared for every parent domain, and every session presented
in a tossing request is ended, so anything a jar keeps is dead.

``http.cookiejar`` does not enforce the ``__Host-`` prefix (old browsers did not either), so the
``__Host-id`` case is tested as if the browser let the planted cookie in.
"""

from __future__ import annotations

import email.message
import http.cookiejar
import urllib.request

import httpx
import pytest

from sessionwarden.events import EventKind
from sessionwarden.policy import CookiePolicy, HttpsPolicy, Policy

from ..conftest import SECRET
from .conftest import RigFactory

pytestmark = pytest.mark.anyio

APP = "https://app.example.com"


class _Planted:
    """What ``CookieJar.extract_cookies`` needs of a response from the attacker's host."""

    def __init__(self, set_cookie: str) -> None:
        self._msg = email.message.Message()
        self._msg["Set-Cookie"] = set_cookie

    def info(self) -> email.message.Message:
        return self._msg


def plant(jar: http.cookiejar.CookieJar, set_cookie: str) -> None:
    """The sibling ``evil.example.com`` answers with ``set_cookie``; the jar takes it."""
    jar.extract_cookies(
        _Planted(set_cookie),  # type: ignore[arg-type]
        urllib.request.Request("https://evil.example.com/"),
    )


def jar_client(rig_app: object, jar: http.cookiejar.CookieJar, peer: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=rig_app, client=(peer, 50000)),  # type: ignore[arg-type]
        base_url=APP,
        cookies=jar,
        headers={"user-agent": "Mozilla/5.0 Firefox/128.0"},
        follow_redirects=False,
    )


async def sign_in(client: httpx.AsyncClient, user: str) -> None:
    token = (await client.get("/token")).json()["csrf_token"]
    r = await client.post("/login", data={"username": user, "csrf_token": token})
    assert r.status_code == 303, r.text


@pytest.mark.parametrize(
    ("cookie", "planted_path"),
    [("__Host-id", "/"), ("sid", "/"), ("sid", "/whoami")],
)
async def test_what_the_jar_keeps_after_a_tossing_refusal_is_never_adopted(
    make_rig: RigFactory, cookie: str, planted_path: str
) -> None:
    policy = Policy(
        secret_keys=(SECRET,),
        cookie=CookiePolicy(name=cookie),
        https=HttpsPolicy(),
        allowed_hosts=("app.example.com",),
    )
    rig = make_rig(policy=policy)
    attacker_jar = http.cookiejar.CookieJar()
    async with jar_client(rig.app, attacker_jar, "203.0.113.66") as attacker:
        await sign_in(attacker, "mallory")
    mallory_id = next(c.value for c in attacker_jar if c.name == cookie)

    jar = http.cookiejar.CookieJar()
    async with jar_client(rig.app, jar, "198.51.100.7") as victim:
        await sign_in(victim, "alice")
        plant(jar, f"{cookie}={mallory_id}; Domain=example.com; Path={planted_path}; Secure")
        assert sum(c.name == cookie for c in jar) == 2
        r = await victim.get("/whoami")
        assert r.json()["user"] is None
        assert rig.events.count(EventKind.COOKIE_TOSSING) == 1
        for _ in range(3):  # the next requests present whatever the jar still holds
            r = await victim.get("/whoami")
            assert r.json()["user"] != "mallory", [(c.domain, c.path) for c in jar]
        # nothing the jar kept is a live session
        left = [c for c in jar if c.name == cookie]
        assert all(c.value != mallory_id for c in left), [(c.domain, c.path) for c in left]
