"""Store growth from cookieless clients is bounded: every cookieless GET of a login page asks for
a CSRF token, which needs an anonymous session; 2,000 of them from one client must not leave
2,000 stored sessions. A client keeps at most ``Policy.anonymous_per_client`` token-only
sessions; older ones are deleted. Sessions that hold data, other clients' sessions and the
login CSRF defence are unaffected."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sessionwarden.asgi import SessionWardenMiddleware
from sessionwarden.clock import ManualClock
from sessionwarden.policy import Policy
from sessionwarden.stores import InlineAsyncStore, MemoryStore, SessionStore

from ..conftest import SECRET
from .conftest import COOKIE, attacked_app

pytestmark = pytest.mark.anyio

GETS = 2_000


@pytest.fixture(params=["memory", "sqlite"])
def sync_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    from sessionwarden.stores.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "sessions.db")
    yield store
    store.close()


def _client(app: SessionWardenMiddleware, peer: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(peer, 50000)),  # type: ignore[arg-type]
        base_url="https://app.test",
        follow_redirects=False,
    )


async def _token(client: httpx.AsyncClient, cookie: str | None = None) -> tuple[str, str | None]:
    headers = {"cookie": f"{COOKIE}={cookie}"} if cookie else {}
    r = await client.get("/token", headers=headers)
    client.cookies.clear()
    assert r.status_code == 200
    set_cookie = r.headers.get("set-cookie", "")
    value = set_cookie.split(";", 1)[0].split("=", 1)[1] if set_cookie.startswith(COOKIE) else None
    return str(r.json()["csrf_token"]), value


async def test_cookieless_login_page_views_add_a_bounded_number_of_sessions(
    sync_store: SessionStore,
) -> None:
    clock = ManualClock()
    policy = Policy(secret_keys=(SECRET,), allowed_hosts=("app.test",))
    app = SessionWardenMiddleware(
        attacked_app(), policy=policy, store=InlineAsyncStore(sync_store), clock=clock
    )
    async with _client(app, "198.51.100.7") as victim, _client(app, "203.0.113.66") as bot:
        # a session that holds data is never evicted
        r = await victim.get("/count")
        cart = r.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
        victim.cookies.clear()
        for _ in range(GETS):
            await _token(bot)
        live = sync_store.stats(clock.now()).live_sessions
        assert live <= policy.anonymous_per_client + 1, live
        r = await victim.get("/count", headers={"cookie": f"{COOKIE}={cart}"})
        assert r.json() == {"n": 2}
        victim.cookies.clear()
        # the most recent login page of the bot still works; an evicted one does not
        token, cookie = await _token(bot)
        r = await bot.post(
            "/login",
            data={"username": "bot", "csrf_token": token},
            headers={"cookie": f"{COOKIE}={cookie}"},
        )
        assert r.status_code == 303
        # another client's anonymous session is untouched by the bot's traffic
        token, cookie = await _token(victim)
        for _ in range(100):
            await _token(bot)
        r = await victim.post(
            "/login",
            data={"username": "alice", "csrf_token": token},
            headers={"cookie": f"{COOKIE}={cookie}"},
        )
        assert r.status_code == 303


def test_the_cap_is_validated() -> None:
    with pytest.raises(ValueError, match="anonymous_per_client"):
        Policy(secret_keys=(SECRET,), anonymous_per_client=-1)
