"""Production mode (``Policy.production``): a policy with any setting weakened below what
production needs cannot be built, so the server never starts with it; ``allow_insecure`` accepts
named ones only for development on this machine (loopback hosts alone), and such a policy then
serves over plain HTTP on loopback through both adapters."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from sessionwarden import insecure_settings
from sessionwarden.policy import (
    INSECURE_SETTINGS,
    CookiePolicy,
    CsrfPolicy,
    HeadersPolicy,
    HttpsPolicy,
    Policy,
)

from .two_adapters import KINDS, client

pytestmark = pytest.mark.anyio
KEY = os.urandom(32)
HOSTS = ("app.example",)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


WEAKENED: dict[str, dict[str, Any]] = {
    "secret_keys": {"secret_keys": (b"k" * 32,)},
    "cookie.secure": {"cookie": CookiePolicy(name="sid", secure=False)},
    "cookie.http_only": {"cookie": CookiePolicy(http_only=False)},
    "cookie.same_site": {"cookie": CookiePolicy(same_site="None")},
    "cookie.name": {"cookie": CookiePolicy(name="sessionid")},
    "https.redirect": {"https": HttpsPolicy(redirect=False)},
    "csrf.enabled": {"csrf": CsrfPolicy(enabled=False)},
    "csrf.report_only": {"csrf": CsrfPolicy(report_only=True)},
    "headers.enabled": {"headers": HeadersPolicy(enabled=False)},
    "headers.csp": {"headers": HeadersPolicy(csp=False)},
    "headers.csp_report_only": {"headers": HeadersPolicy(csp_report_only=True)},
    "headers.hsts_max_age": {"headers": HeadersPolicy(hsts_max_age=86_400)},
    "allowed_hosts": {"allowed_hosts": ("*",)},
}


def test_every_checked_setting_has_a_case() -> None:
    assert set(WEAKENED) == set(INSECURE_SETTINGS)


def test_the_defaults_are_production_ready() -> None:
    policy = Policy(secret_keys=(KEY,), allowed_hosts=HOSTS, production=True)
    assert insecure_settings(policy) == []


@pytest.mark.parametrize("name", sorted(WEAKENED))
def test_each_weakened_setting_refuses_to_start(name: str) -> None:
    kwargs: dict[str, Any] = {"secret_keys": (KEY,), "allowed_hosts": HOSTS, **WEAKENED[name]}
    assert name in [n for n, _ in insecure_settings(Policy(**kwargs))]
    with pytest.raises(
        ValueError, match=rf"^production: insecure settings: .*{re.escape(name)} \("
    ):
        Policy(**kwargs, production=True)


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ValueError) as caught:
        Policy(
            secret_keys=(KEY,),
            allowed_hosts=HOSTS,
            production=True,
            cookie=CookiePolicy(name="sid", secure=False, http_only=False),
            csrf=CsrfPolicy(enabled=False),
        )
    message = str(caught.value)
    for name in ("cookie.secure", "cookie.http_only", "cookie.name", "csrf.enabled"):
        assert name in message
    assert "allow_insecure" in message, "the message says how to opt in"


def test_a_proxy_that_checks_hosts_makes_the_wildcard_acceptable() -> None:
    Policy(
        secret_keys=(KEY,),
        allowed_hosts=("*",),
        https=HttpsPolicy(trusted_proxies=("10.0.0.1",)),
        production=True,
    )


def test_allow_insecure_is_for_loopback_development_only() -> None:
    insecure = CookiePolicy(name="sid", secure=False)
    with pytest.raises(ValueError, match=r"^allow_insecure: is for development on this machine"):
        Policy(
            secret_keys=(KEY,),
            allowed_hosts=HOSTS,
            production=True,
            cookie=insecure,
            allow_insecure=("cookie.secure", "cookie.name"),
        )
    with pytest.raises(ValueError, match=r"^allow_insecure: unknown setting\(s\) debug"):
        Policy(secret_keys=(KEY,), allow_insecure=("debug",))
    with pytest.raises(ValueError, match=r"^production: .*cookie\.name"):
        Policy(
            secret_keys=(KEY,), production=True, cookie=insecure, allow_insecure=("cookie.secure",)
        )


@pytest.mark.parametrize("kind", KINDS)
async def test_an_allowed_development_policy_serves_loopback_http(kind: str) -> None:
    policy = Policy(
        secret_keys=(KEY,),
        production=True,
        cookie=CookiePolicy(name="sid", secure=False),
        allow_insecure=("cookie.secure", "cookie.name"),
    )
    with client(kind, policy, base="http://127.0.0.1:8000", cookie_name="sid") as c:
        await c.login()
        (set_cookie,) = [h for h in c.responses[-1].headers.get_list("set-cookie")]
        assert set_cookie.startswith("sid=") and "Secure" not in set_cookie
        assert (await c.request("GET", "/whoami")).json() == {"user": "alice"}
