"""``TRACE`` meets the CSRF check like a ``POST`` (Go 1.25 ``CrossOriginProtection``: only
``GET``, ``HEAD`` and ``OPTIONS`` pass unchecked), on both adapters. RFC 9110 calls ``TRACE``
safe, but a route that answers it may do anything, so a cross-site one is refused whatever token
it carries, and a same-origin one needs the token. State-changing routes refuse ``TRACE``
outright (405, ``tests/test_state_changing.py``)."""

from __future__ import annotations

import httpx
import pytest

from sessionwarden.policy import Policy

from .conftest import SECRET
from .two_adapters import KINDS, Client, client

pytestmark = pytest.mark.anyio
ADAPTERS = pytest.mark.parametrize("kind", KINDS)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _policy() -> Policy:
    return Policy(secret_keys=(SECRET,), allowed_hosts=("app.test",))


async def _trace(c: Client, **headers: str) -> httpx.Response:
    return await c.request("TRACE", "/trace", headers=headers)


def _refused(r: httpx.Response, error: str) -> None:
    assert r.status_code == 403, (r.status_code, r.text)
    assert r.json()["error"] == error
    assert "no-store" in r.headers["cache-control"]


@ADAPTERS
@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site", "origin": "https://sub.app.test"},
        {"origin": "https://evil.test"},  # no Sec-Fetch-Site: Origin decides
        {"origin": "null"},
    ],
)
async def test_a_cross_origin_trace_is_refused_even_with_a_valid_token(
    kind: str, headers: dict[str, str]
) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        token = await c.token()
        for with_token in (False, True):
            extra = {"x-csrf-token": token} if with_token else {}
            _refused(await _trace(c, accept="application/json", **headers, **extra), "cross-origin")
        # the route never ran: the first TRACE that passes counts 1
        r = await _trace(c, **{"sec-fetch-site": "same-origin", "x-csrf-token": token})
        assert r.status_code == 200 and r.text == "1", r.text


@ADAPTERS
async def test_a_same_origin_trace_needs_the_token_like_a_post(kind: str) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        token = await c.token()
        same = {"sec-fetch-site": "same-origin", "accept": "application/json"}
        post = await c.request("POST", "/transfer", headers=same)
        trace = await _trace(c, **same)
        assert post.status_code == trace.status_code == 403
        assert trace.json()["error"] == post.json()["error"]
        _refused(await _trace(c, **same, **{"x-csrf-token": "forged"}), post.json()["error"])
        ok = await _trace(c, **same, **{"x-csrf-token": token})
        assert ok.status_code == 200 and ok.text == "1", ok.text
        # its outcome rested on the cross-origin check: never stored by a cache
        assert "no-store" in ok.headers["cache-control"]
        # no browser headers at all (Go's default: allowed), so the token decides
        assert (await _trace(c)).status_code == 403
        bare = await _trace(c, **{"x-csrf-token": token})
        assert bare.status_code == 200 and bare.text == "2", bare.text
