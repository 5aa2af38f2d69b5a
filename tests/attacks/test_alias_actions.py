"""A thief holding a periodically rotated-out ID (still inside its grace window) asks for a
fresh one: ``rotate()`` and ``login()`` on that request are refused with 409 and reported, the
thief gets no cookie, and the owner's current ID keeps working."""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionwarden.asgi import get_session
from sessionwarden.clock import ManualClock
from sessionwarden.events import EventKind
from sessionwarden.policy import Policy

from ..conftest import SECRET
from .conftest import RigFactory, attacked_app, set_cookie_value

pytestmark = pytest.mark.anyio


async def rotate(request: Request) -> Response:
    get_session(request).rotate()
    return JSONResponse({"rotated": True})


@pytest.mark.parametrize("path", ["/rotate", "/api/login"])
async def test_rotation_through_the_grace_window_is_refused(
    make_rig: RigFactory, path: str
) -> None:
    app = attacked_app()
    app.router.routes.append(Route("/rotate", rotate, methods=["POST"]))
    clock = ManualClock()
    rig = make_rig(
        policy=Policy(
            secret_keys=(SECRET,), allowed_hosts=("*",), rotate_every=60, rotation_grace=10
        ),
        clock=clock,
        app=app,
    )
    owner = rig.browser()
    await owner.login()
    stolen = owner.cookie
    clock.advance(61)
    assert await owner.user() == "alice"  # the periodic rotation
    assert owner.cookie != stolen
    thief = rig.browser()  # same network: the risk check is not what stops it here
    thief.cookie = stolen
    token = await thief.token()  # reading through the alias works
    r = await thief.post(path, headers={"x-csrf-token": token})
    assert r.status_code == 409, r.text
    assert set_cookie_value(r) is None, "no fresh ID for the holder of the old one"
    assert rig.events.count(EventKind.ALIAS_ACTION_REFUSED) == 1
    assert await owner.user() == "alice"
