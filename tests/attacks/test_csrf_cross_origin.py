"""CSRF from another origin, with and without a token stolen from the victim's page.

The origin check (Sec-Fetch-Site, else Origin) refuses a cross-site unsafe request before the
application runs, whatever token it carries; the app's state never changes.
"""

from __future__ import annotations

import pytest

from sessionwarden.events import EventKind

from .conftest import Browser, RigFactory

pytestmark = pytest.mark.anyio

EVIL = "https://evil.test"


async def _transfers(b: Browser) -> list[object]:
    r = await b.get("/whoami")
    return list(r.json()["transfers"])


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "cross-site", "origin": EVIL},
        {"sec-fetch-site": "same-site", "origin": "https://sub.app.test"},
        {"origin": EVIL},  # an older browser: Origin only
        {"origin": "null"},  # sandboxed iframe / data: URL
        {"origin": "http://app.test"},  # same host over plain HTTP: a network attacker's page
        {"origin": "https://app.test.evil.test"},
        {"sec-fetch-site": "cross-site"},
    ],
)
@pytest.mark.parametrize("with_stolen_token", [False, True])
async def test_cross_origin_post_refused(
    make_rig: RigFactory, headers: dict[str, str], with_stolen_token: bool
) -> None:
    rig = make_rig()
    victim = rig.browser()
    await victim.login()
    stolen = await victim.token()
    data = {"to": "mallory", "amount": "1000"}
    if with_stolen_token:
        data["csrf_token"] = stolen
    r = await victim.post("/transfer", data=data, headers=headers)
    assert r.status_code == 403
    assert "Cross-site request refused" in r.text
    assert rig.events.count(EventKind.CROSS_ORIGIN_REFUSED) == 1
    assert await _transfers(victim) == []
    # the same request from the site itself goes through
    r = await victim.post(
        "/transfer",
        data={"to": "bob", "amount": "1", "csrf_token": stolen},
        headers={"sec-fetch-site": "same-origin", "origin": "https://app.test"},
    )
    assert r.status_code == 200
    assert len(await _transfers(victim)) == 1


async def test_api_json_post_cross_site_refused_even_with_token_header(
    make_rig: RigFactory,
) -> None:
    rig = make_rig()
    victim = rig.browser()
    await victim.login()
    t = await victim.token()
    r = await victim.post(
        "/client",
        headers={
            "x-csrf-token": t,
            "sec-fetch-site": "cross-site",
            "origin": EVIL,
            "accept": "application/json",
        },
        json={"to": "mallory"},
    )
    assert r.status_code == 403 and r.json()["error"] == "cross-origin"


async def test_no_browser_headers_still_needs_the_token(make_rig: RigFactory) -> None:
    """A request with no Sec-Fetch-Site and no Origin (not a browser) meets the token check."""
    rig = make_rig()
    victim = rig.browser()
    await victim.login()
    r = await victim.post("/transfer", data={"to": "mallory", "amount": "5"})
    assert r.status_code == 403 and "form expired" in r.text
    assert rig.events.of(EventKind.CSRF_REFUSED)[-1].reason == "missing-token"
    assert await _transfers(victim) == []
