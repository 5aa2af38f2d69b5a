"""Passive routes (``Policy.passive_paths``) on both adapters: an open tab that polls every second
does not keep its session alive; the session still ends at the idle timeout, while the same
polling on an ordinary route keeps it alive. A passive request never rotates the ID either."""

from __future__ import annotations

import pytest

from sessionwarden.events import EventKind
from sessionwarden.policy import Policy

from .conftest import SECRET
from .two_adapters import KINDS, client

pytestmark = pytest.mark.anyio
ADAPTERS = pytest.mark.parametrize("kind", KINDS)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _policy(**kwargs: object) -> Policy:
    base: dict[str, object] = {
        "secret_keys": (SECRET,),
        "allowed_hosts": ("app.test",),
        "idle_timeout": 3.0,
        "touch_interval": 0.5,
        "rotate_every": 0,
        "passive_paths": ("/poll",),
    }
    base.update(kwargs)
    return Policy(**base)  # type: ignore[arg-type]


@ADAPTERS
async def test_polling_a_passive_route_lets_the_session_expire(kind: str) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        users = []
        for _ in range(4):
            c.clock.advance(1.0)
            users.append((await c.request("GET", "/poll")).json()["user"])
        assert users == ["alice", "alice", None, None]  # idle timeout 3 s after the login
        (expired,) = c.recorder.of(EventKind.EXPIRED_IDLE)
        assert expired.user_id == "alice"
        assert (await c.request("GET", "/whoami")).json() == {"user": None}


@ADAPTERS
async def test_the_same_polling_on_an_ordinary_route_keeps_it_alive(kind: str) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        for _ in range(6):
            c.clock.advance(1.0)
            assert (await c.request("GET", "/whoami")).json() == {"user": "alice"}
        assert not c.recorder.of(EventKind.EXPIRED_IDLE)


@ADAPTERS
async def test_activity_between_polls_still_counts(kind: str) -> None:
    with client(kind, _policy()) as c:
        await c.login()
        c.clock.advance(2.0)
        assert (await c.request("GET", "/poll")).json() == {"user": "alice"}
        assert (await c.request("GET", "/whoami")).json() == {"user": "alice"}  # the user acts
        c.clock.advance(2.0)
        assert (await c.request("GET", "/poll")).json() == {"user": "alice"}
        c.clock.advance(1.5)
        assert (await c.request("GET", "/poll")).json() == {"user": None}


@ADAPTERS
async def test_a_passive_request_never_rotates_the_id(kind: str) -> None:
    policy = _policy(idle_timeout=30.0, rotate_every=2.0, rotation_grace=0.5)
    with client(kind, policy) as c:
        await c.login()
        first = c.cookie
        for _ in range(5):
            c.clock.advance(1.0)
            response = await c.request("GET", "/poll")
            assert response.json() == {"user": "alice"}
            assert "set-cookie" not in response.headers
        assert c.cookie == first
        await c.request("GET", "/whoami")
        assert c.cookie != first, "an ordinary request rotates the due ID"


@ADAPTERS
async def test_a_passive_request_still_writes_what_it_changes(kind: str) -> None:
    with client(kind, _policy(passive_paths=("/transfer",))) as c:
        await c.login()
        token = await c.token()
        c.clock.advance(1.0)
        response = await c.request(
            "POST", "/transfer", headers={"sec-fetch-site": "same-origin", "x-csrf-token": token}
        )
        assert response.status_code == 200
        c.clock.advance(2.5)  # 3.5 s after the login's last touch, 2.5 s after the write
        assert (await c.request("GET", "/whoami")).json() == {"user": None}


def test_passive_paths_are_validated() -> None:
    with pytest.raises(ValueError, match="passive_paths"):
        Policy(secret_keys=(SECRET,), passive_paths=("poll",))
    with pytest.raises(ValueError, match="passive_paths"):
        Policy(secret_keys=(SECRET,), passive_paths="/poll")  # type: ignore[arg-type]
