"""What users of other session libraries report as broken, where time decides: the same
scenarios through both adapters with a manual clock (``tests/two_adapters.py``), so a timeout is
crossed without waiting for it. The live servers of ``tests/test_peers_complaints_live.py``
cover the rest.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.events import EventKind
from sessionwarden.policy import Policy
from sessionwarden.stores import InlineAsyncStore, MemoryStore

from .two_adapters import KINDS, client

pytestmark = pytest.mark.anyio
SECRET = b"peers-clock-secret-" + b"c" * 32
SAME_ORIGIN = {"sec-fetch-site": "same-origin"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_sign_in_page_left_open_past_the_idle_timeout_asks_for_a_reload(
    kind: str,
) -> None:
    """Row 27 (login CSRF) and complaint 23 ("stale tokens, the session being somehow
    cleared"): the sign-in form's token belongs to the anonymous session the page started;
    once that session has been idle past ``idle_timeout`` the form is refused (403, "Reload
    the page"), the event says why, and the reloaded page signs in. Django's year-long CSRF
    cookie and Rails' header-only check accept the stale form instead."""
    policy = Policy(secret_keys=(SECRET,))
    with client(kind, policy, base="https://localhost") as c:
        stale = await c.token()
        c.clock.advance(policy.idle_timeout + 1)
        r = await c.request(
            "POST", "/login", headers={**SAME_ORIGIN, "x-csrf-token": stale, "accept": "text/html"}
        )
        assert r.status_code == 403 and "Reload the page" in r.text
        assert c.recorder.of(EventKind.CSRF_REFUSED)[-1].reason == "no-session"
        assert (await c.request("GET", "/whoami")).json() == {"user": None}
        await c.login()  # the reloaded page's token
        assert (await c.request("GET", "/whoami")).json() == {"user": "alice"}


@pytest.mark.parametrize("kind", KINDS)
async def test_shortened_timeouts_apply_to_the_sessions_already_stored(kind: str) -> None:
    """Row 10 (absolute timeout) and complaint 13 (lifetime stored with the session overrode
    the server's setting): sessions signed in under 30-minute idle and 12-hour absolute
    timeouts, served after a redeployment with 10 minutes and 1 hour, end by the new ones."""
    with client(kind, Policy(secret_keys=(SECRET,)), base="https://localhost") as c:
        await c.login()
        c.restart(Policy(secret_keys=(SECRET,), idle_timeout=600))
        c.clock.advance(601)
        assert (await c.request("GET", "/whoami")).json() == {"user": None}
    with client(kind, Policy(secret_keys=(SECRET,)), base="https://localhost") as c:
        await c.login()
        c.restart(Policy(secret_keys=(SECRET,), absolute_timeout=3600))
        for _ in range(6):  # active every 9 minutes: never idle
            c.clock.advance(540)
            assert (await c.request("GET", "/whoami")).json() == {"user": "alice"}
        c.clock.advance(420)  # 61 minutes after the sign-in
        assert (await c.request("GET", "/whoami")).json() == {"user": None}
        assert c.recorder.count(EventKind.EXPIRED_ABSOLUTE) == 1


async def test_a_long_request_does_not_shorten_the_idle_timeout() -> None:
    """Row 9 (idle timeout) and complaint 6 (a long-running request saves the activity time it
    read when it started, so the session times out early): a request that started at minute 1
    and ends at minute 28, with another request at minute 20, leaves the session alive at
    minute 45 (more than 30 minutes after the start of the long one) and idle-expired only 30
    minutes after the last activity."""
    clock = ManualClock()
    started, release = asyncio.Event(), asyncio.Event()

    async def login(request: Request) -> JSONResponse:
        get_session(request).login("alice")
        return JSONResponse({})

    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"user": get_session(request).user_id})

    async def long(request: Request) -> JSONResponse:
        session = get_session(request)
        started.set()
        await release.wait()
        session["report"] = "ready"
        return JSONResponse({})

    app = SessionWardenMiddleware(
        Starlette(
            routes=[
                Route("/login", login, methods=["POST"]),
                Route("/whoami", whoami),
                Route("/long", long),
            ]
        ),
        policy=Policy(secret_keys=(SECRET,), rotate_every=0, csrf=_no_token()),
        store=InlineAsyncStore(MemoryStore()),
        clock=clock,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://localhost") as c:
        assert (await c.post("/login", headers=SAME_ORIGIN)).status_code == 200
        clock.advance(60)
        slow = asyncio.create_task(c.get("/long"))
        await started.wait()
        clock.advance(19 * 60)
        assert (await c.get("/whoami")).json() == {"user": "alice"}  # minute 20
        clock.advance(8 * 60)
        release.set()
        assert (await slow).status_code == 200  # minute 28
        clock.advance(17 * 60)
        assert (await c.get("/whoami")).json() == {"user": "alice"}  # minute 45
        clock.advance(30 * 60 + 1)
        assert (await c.get("/whoami")).json() == {"user": None}


def _no_token() -> object:
    from sessionwarden.policy import CsrfPolicy

    return CsrfPolicy(require_token=False)
