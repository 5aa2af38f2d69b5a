"""Store round trips on the hot path, counted (never timed).

A steady-state, signed-in, read-only GET through the ASGI middleware must cost exactly one store
read and no write: one Redis command on the wire with the async Redis store, one ``get`` on the
memory and SQLite stores. When the touch interval has passed, exactly one read and one write.
With the Redis store's local read cache (the default), a repeated read costs no command at all,
and a change made by another process is still seen by the next request.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.events import CallbackSink, Event, EventKind, EventSink
from sessionwarden.policy import MonitorPolicy, Policy
from sessionwarden.stores import InlineAsyncStore, MemoryStore

from .conftest import SECRET, drop_prefix, redis_or_skip, unique_prefix

BASE = "https://app.test"
UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def home(request: Request) -> Response:
    return PlainTextResponse(str(request.session.get("user")))


async def token(request: Request) -> Response:
    return PlainTextResponse(request.state.csrf_token())


async def login(request: Request) -> Response:
    s = get_session(request)
    s.login("alice")
    s["user"] = "alice"
    s["theme"] = "dark"
    return PlainTextResponse("ok")


async def write(request: Request) -> Response:
    """Reads one key and sets another (a cart counter): a request that changes the session."""
    s = request.session
    s["cart"] = int(s.get("cart", 0)) + 1
    return PlainTextResponse(f"{s.get('user')} {s['cart']}")


def app_with(
    store: Any, clock: ManualClock, policy: Policy | None = None, sink: EventSink | None = None
) -> SessionWardenMiddleware:
    app = Starlette(
        routes=[
            Route("/", home),
            Route("/token", token),
            Route("/login", login, methods=["POST"]),
            Route("/write", write),
        ]
    )
    policy = policy or Policy(secret_keys=(SECRET,), allowed_hosts=("*",))
    return SessionWardenMiddleware(app, policy=policy, store=store, clock=clock, sink=sink)


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)),
        base_url=BASE,
        headers={"user-agent": UA, "accept-language": "en-GB,en;q=0.9"},
    )


async def sign_in(c: httpx.AsyncClient) -> None:
    r = await c.get("/token")
    assert r.status_code == 200
    r = await c.post("/login", headers={"x-csrf-token": r.text, "sec-fetch-site": "same-origin"})
    assert r.status_code == 200, r.text
    r = await c.get("/")  # the first read after login (warm state)
    assert r.text == "alice"


# -- memory and SQLite: count the calls the middleware makes on the store ------------------------


class CountingStore:
    """An async store wrapper recording every method the middleware calls."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return await attr(*args, **kwargs)

        return counted


@pytest.fixture(params=["memory", "sqlite"])
def local_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CountingStore]:
    if request.param == "memory":
        yield CountingStore(InlineAsyncStore(MemoryStore()))
    else:
        from sessionwarden.stores.sqlite import SQLiteStore

        sync = SQLiteStore(tmp_path / "s.db")
        yield CountingStore(InlineAsyncStore(sync))
        sync.close()


@pytest.mark.anyio
async def test_steady_state_get_is_one_read_and_no_write(local_store: CountingStore) -> None:
    clock = ManualClock(time.time())
    async with client_for(app_with(local_store, clock)) as c:
        await sign_in(c)
        for _ in range(3):
            clock.advance(1.0)
            local_store.calls.clear()
            r = await c.get("/")
            assert r.status_code == 200 and r.text == "alice"
            assert "set-cookie" not in r.headers
            assert local_store.calls == ["get"]


@pytest.mark.anyio
async def test_touch_due_is_one_read_and_one_write(local_store: CountingStore) -> None:
    clock = ManualClock(time.time())
    async with client_for(app_with(local_store, clock)) as c:
        await sign_in(c)
        clock.advance(61.0)  # past the default touch interval (60 s), before rotation (900 s)
        local_store.calls.clear()
        r = await c.get("/")
        assert r.status_code == 200 and r.text == "alice"
        assert local_store.calls == ["get", "update"]
        clock.advance(1.0)
        local_store.calls.clear()
        r = await c.get("/")
        assert local_store.calls == ["get"]


# -- Redis: count the commands actually written to the socket -------------------------------------


@pytest.fixture
async def redis_store() -> AsyncIterator[Any]:
    url = redis_or_skip()
    from sessionwarden.stores.redis import AsyncRedisStore

    prefix = unique_prefix()
    store = AsyncRedisStore(url, prefix=prefix, read_cache_ttl=0)  # every read goes to Redis
    yield store
    await store.close()
    drop_prefix(prefix)


@pytest.fixture
async def cached_store() -> AsyncIterator[Any]:
    """The store as configured by default: with the local read cache."""
    url = redis_or_skip()
    from sessionwarden.stores.redis import AsyncRedisStore

    prefix = unique_prefix()
    store = AsyncRedisStore(url, prefix=prefix)
    assert store.read_cache is not None
    assert store.read_cache.feed.wait_connected(5.0)
    yield store
    await store.close()
    drop_prefix(prefix)


def one_write(sent: list[str]) -> bool:
    """One script, then the ``PING`` that waits for its invalidation notices to leave Redis
    (the store's fence after a write while read caches are on: ``READ_ONLY_SCRIPTS`` in
    ``sessionwarden.stores.redis``)."""
    return len(sent) == 2 and sent[0] in ("EVALSHA", "EVAL") and sent[1] == "PING"


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the Redis commands sent on any asyncio connection (PINGs included)."""
    from redis.asyncio.connection import AbstractConnection

    names: list[str] = []
    original = AbstractConnection.send_command

    async def send_command(self: Any, *args: Any, **kwargs: Any) -> None:
        first = args[0]
        names.append((first.decode() if isinstance(first, bytes) else str(first)).upper())
        await original(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_command", send_command)

    # The hot read goes over the store's own pipelined connection: count what it encodes.
    from sessionwarden.stores import resp

    encode = resp.encode

    def counted_encode(*args: bytes) -> bytes:
        names.append(args[0].decode().upper())
        return encode(*args)

    monkeypatch.setattr(resp, "encode", counted_encode)
    return names


@pytest.fixture(params=[0.0, 2.0], ids=["read-cache-off", "read-cache-on"])
async def either_store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    url = redis_or_skip()
    from sessionwarden.stores.redis import AsyncRedisStore

    prefix = unique_prefix()
    store = AsyncRedisStore(url, prefix=prefix, read_cache_ttl=request.param)
    if store.read_cache is not None:
        assert store.read_cache.feed.wait_connected(5.0)
    yield store
    await store.close()
    drop_prefix(prefix)


@pytest.mark.anyio
@pytest.mark.redis
async def test_redis_steady_state_get_commands(either_store: Any, sent: list[str]) -> None:
    """One HGETALL per steady-state read; none while the session sits in the read cache."""
    expected = [] if either_store.read_cache is not None else ["HGETALL"]
    clock = ManualClock(time.time())
    async with client_for(app_with(either_store, clock)) as c:
        await sign_in(c)
        for _ in range(3):
            clock.advance(1.0)
            sent.clear()
            r = await c.get("/")
            assert r.status_code == 200 and r.text == "alice"
            assert "set-cookie" not in r.headers
            assert sent == expected, sent


@pytest.mark.anyio
@pytest.mark.redis
async def test_redis_touch_due_is_one_read_and_one_write(redis_store: Any, sent: list[str]) -> None:
    clock = ManualClock(time.time())
    async with client_for(app_with(redis_store, clock)) as c:
        await sign_in(c)
        clock.advance(61.0)
        sent.clear()
        r = await c.get("/")
        assert r.status_code == 200 and r.text == "alice"
        assert len(sent) == 2, sent
        assert sent[0] == "HGETALL"
        assert sent[1] in ("EVALSHA", "EVAL", "FCALL"), sent


@pytest.mark.anyio
async def test_a_write_is_one_read_and_one_update(local_store: CountingStore) -> None:
    clock = ManualClock(time.time())
    async with client_for(app_with(local_store, clock)) as c:
        await sign_in(c)
        for n in range(1, 4):
            clock.advance(1.0)
            local_store.calls.clear()
            r = await c.get("/write")
            assert r.text == f"alice {n}"
            assert local_store.calls == ["get", "update"]


@pytest.mark.anyio
@pytest.mark.redis
async def test_cached_write_is_one_command_and_the_next_read_none(
    cached_store: Any, sent: list[str]
) -> None:
    clock = ManualClock(time.time())
    async with client_for(app_with(cached_store, clock)) as c:
        await sign_in(c)
        for n in range(1, 4):
            clock.advance(1.0)
            sent.clear()
            r = await c.get("/write")
            assert r.text == f"alice {n}"
            assert one_write(sent), sent  # no read, one script (and its fence)
            clock.advance(1.0)
            sent.clear()
            r = await c.get("/")  # the write kept what it wrote
            assert r.text == "alice" and sent == [], sent


@pytest.mark.anyio
@pytest.mark.redis
async def test_concurrent_reads_and_writes_of_one_session_stay_cached(
    cached_store: Any, sent: list[str]
) -> None:
    """Requests of one session overlapping in one process (a page's parallel fetches, a load
    of reads with some writes) keep the session cached: each write keeps what it wrote, so the
    reads around it send nothing and only the writes reach Redis."""
    import asyncio

    clock = ManualClock(time.time())
    async with client_for(app_with(cached_store, clock)) as c:
        await sign_in(c)
        sent.clear()
        for _ in range(20):
            clock.advance(0.5)
            paths = ["/write" if n % 4 == 1 else "/" for n in range(12)]  # 3 writes, 9 reads
            replies = await asyncio.gather(*(c.get(path) for path in paths))
            assert all(r.status_code == 200 for r in replies)
        reads = [name for name in sent if name not in ("EVALSHA", "EVAL", "PING")]
        assert sent.count("EVALSHA") + sent.count("EVAL") == 60 == sent.count("PING")
        assert len(reads) <= 3, reads  # 180 reads: the cache answered (nearly) all of them
        r = await c.get("/write")
        assert r.text.startswith("alice ")


@pytest.mark.anyio
@pytest.mark.redis
async def test_cached_touch_is_one_command_and_the_next_read_none(
    cached_store: Any, sent: list[str]
) -> None:
    clock = ManualClock(time.time())
    async with client_for(app_with(cached_store, clock)) as c:
        await sign_in(c)
        for _ in range(2):
            clock.advance(61.0)
            sent.clear()
            r = await c.get("/")
            assert r.text == "alice"
            assert one_write(sent), sent  # one script (and its fence), no read
            clock.advance(1.0)
            sent.clear()
            r = await c.get("/")  # the write kept what it wrote: no round trip
            assert r.text == "alice" and sent == [], sent


@pytest.mark.anyio
@pytest.mark.redis
async def test_cached_read_sees_a_revocation_made_by_another_process(
    cached_store: Any, sent: list[str]
) -> None:
    from sessionwarden.stores.redis import RedisStore

    clock = ManualClock(time.time())
    other = RedisStore(redis_or_skip(), prefix=cached_store.prefix, read_cache_ttl=0)
    try:
        async with client_for(app_with(cached_store, clock)) as c:
            await sign_in(c)
            sent.clear()
            assert (await c.get("/")).text == "alice" and sent == []
            revoked = other.revoke_user(
                "alice", reason="admin", at=clock.now(), until=clock.now() + 600
            )
            assert len(revoked) == 1
            cached_store.read_cache.barrier()  # the notice is on its way: wait for it here
            r = await c.get("/")
            assert r.text == "None"  # signed out: the revoked ID is refused
            assert "HGETALL" in sent
    finally:
        other.close()


@pytest.mark.anyio
@pytest.mark.redis
async def test_cached_read_sees_a_change_elsewhere_without_waiting_for_it(
    cached_store: Any,
) -> None:
    from sessionwarden.stores.redis import RedisStore

    clock = ManualClock(time.time())
    other = RedisStore(redis_or_skip(), prefix=cached_store.prefix, read_cache_ttl=0)
    try:
        async with client_for(app_with(cached_store, clock)) as c:
            await sign_in(c)
            assert (await c.get("/")).text == "alice"
            other.revoke_user("alice", reason="admin", at=clock.now(), until=clock.now() + 600)
            deadline = time.monotonic() + 2.0
            while (await c.get("/")).text == "alice":  # at most a network hop of delay
                assert time.monotonic() < deadline, "the revocation never reached the cache"
    finally:
        other.close()


# -- sign-in: a new ID, the rotation, the user's index -------------------------------------------


async def sign_in_again(c: httpx.AsyncClient) -> None:
    """A signed-in browser signs in again: the login rotates its ID (a Set-Cookie)."""
    token_text = (await c.get("/token")).text
    r = await c.post(
        "/login", headers={"x-csrf-token": token_text, "sec-fetch-site": "same-origin"}
    )
    assert r.status_code == 200, r.text
    assert "set-cookie" in r.headers  # the new ID


@pytest.mark.anyio
async def test_a_sign_in_is_one_read_and_one_rotation(local_store: CountingStore) -> None:
    clock = ManualClock(time.time())
    async with client_for(app_with(local_store, clock)) as c:
        await sign_in(c)
        for _ in range(3):
            clock.advance(1.0)
            local_store.calls.clear()
            await sign_in_again(c)
            assert local_store.calls == ["get", "get", "rotate"]  # the token's GET, the POST
            clock.advance(1.0)
            local_store.calls.clear()
            r = await c.get("/")
            assert r.text == "alice" and local_store.calls == ["get"]


@pytest.mark.anyio
async def test_login_notices_cost_one_listing_per_sign_in(local_store: CountingStore) -> None:
    """``MonitorPolicy.notify_logins`` adds exactly one call to a sign-in, the listing of the
    user's sessions, and none to any other request."""
    clock = ManualClock(time.time())
    policy = Policy(
        secret_keys=(SECRET,), allowed_hosts=("*",), monitor=MonitorPolicy(notify_logins=True)
    )
    events: list[Event] = []
    app = app_with(local_store, clock, policy, CallbackSink(events.append))
    async with client_for(app) as c, client_for(app) as other:
        await sign_in(c)
        await other.get("/token")  # the second browser's anonymous session (its CSRF token)
        clock.advance(1.0)
        local_store.calls.clear()
        await sign_in_again(other)  # the same calls as without notices, and the listing
        assert local_store.calls == ["get", "get", "rotate", "user_sessions"]
        assert [e.detail for e in events if e.kind is EventKind.CONCURRENT_LOGIN] == [
            {"others": 1}
        ]
        clock.advance(1.0)
        local_store.calls.clear()
        r = await c.get("/")
        assert r.text == "alice" and local_store.calls == ["get"]


@pytest.mark.anyio
@pytest.mark.redis
async def test_cached_sign_in_is_one_command_and_the_next_read_none(
    cached_store: Any, sent: list[str]
) -> None:
    """The rotation (new record, the old ID's tombstone, the user's index, the cap, the trail)
    is one script; the record it wrote stays in the read cache, so the next request under the
    new ID sends nothing."""
    clock = ManualClock(time.time())
    async with client_for(app_with(cached_store, clock)) as c:
        await sign_in(c)
        for _ in range(3):
            clock.advance(1.0)
            sent.clear()
            await sign_in_again(c)
            assert one_write(sent), sent  # no read
            clock.advance(1.0)
            sent.clear()
            r = await c.get("/")
            assert r.text == "alice" and sent == [], sent


@pytest.mark.anyio
@pytest.mark.redis
async def test_uncached_sign_in_is_one_read_and_one_command(
    redis_store: Any, sent: list[str]
) -> None:
    clock = ManualClock(time.time())
    async with client_for(app_with(redis_store, clock)) as c:
        await sign_in(c)
        clock.advance(1.0)
        r = await c.get("/token")
        sent.clear()
        r = await c.post(
            "/login", headers={"x-csrf-token": r.text, "sec-fetch-site": "same-origin"}
        )
        assert r.status_code == 200 and "set-cookie" in r.headers
        assert len(sent) == 2 and sent[0] == "HGETALL", sent
        assert sent[1] in ("EVALSHA", "EVAL"), sent


# -- ending sessions: the store names each ended session, no listing first ----------------------


def capped_app(store: Any, clock: ManualClock, events: list[Event]) -> SessionWardenMiddleware:
    """One session per user, and a sink that wants every event (``session.evicted`` and
    ``session.revoked`` included)."""
    policy = Policy(secret_keys=(SECRET,), allowed_hosts=("*",), max_sessions_per_user=1)
    return app_with(store, clock, policy, CallbackSink(events.append))


def created_session(events: list[Event]) -> str:
    """The ``session`` value of the one ``session.created`` among ``events``."""
    (created,) = [e.session for e in events if e.kind is EventKind.CREATED]
    assert created
    return created


@pytest.mark.anyio
async def test_a_sign_in_that_evicts_is_one_read_and_one_rotation(
    local_store: CountingStore,
) -> None:
    """With the per-user cap and a sink wanting ``session.evicted``, a sign-in that evicts
    costs what any sign-in does: the rotation names the evicted session itself."""
    clock = ManualClock(time.time())
    events: list[Event] = []
    app = capped_app(local_store, clock, events)
    async with client_for(app) as first, client_for(app) as second:
        await sign_in(first)
        first_session = created_session(events)
        await second.get("/token")
        clock.advance(1.0)
        events.clear()
        local_store.calls.clear()
        await sign_in_again(second)
        assert local_store.calls == ["get", "get", "rotate"]  # no user_sessions
        assert [e.session for e in events if e.kind is EventKind.EVICTED] == [first_session]
        assert (await first.get("/")).text == "None"  # evicted


@pytest.mark.anyio
async def test_revoke_user_is_one_call(local_store: CountingStore) -> None:
    clock = ManualClock(time.time())
    events: list[Event] = []
    app = capped_app(local_store, clock, events)
    async with client_for(app) as c:
        await sign_in(c)
        signed_in = created_session(events)
        events.clear()
        local_store.calls.clear()
        assert len(await app.revoke_user("alice")) == 1
        assert local_store.calls == ["revoke_user"]  # no user_sessions
        assert [e.session for e in events if e.kind is EventKind.REVOKED] == [signed_in]


@pytest.mark.anyio
@pytest.mark.redis
async def test_cached_sign_in_that_evicts_is_one_command(
    cached_store: Any, sent: list[str]
) -> None:
    """The rotation script evicts over the cap and answers with each evicted key's lineage:
    still one command, no listing of the user's sessions (``user_sessions`` script) first."""
    clock = ManualClock(time.time())
    events: list[Event] = []
    app = capped_app(cached_store, clock, events)
    async with client_for(app) as first, client_for(app) as second:
        await sign_in(first)
        first_session = created_session(events)
        await second.get("/token")  # the second browser's anonymous session
        clock.advance(1.0)
        token_text = (await second.get("/token")).text
        events.clear()
        sent.clear()
        r = await second.post(
            "/login", headers={"x-csrf-token": token_text, "sec-fetch-site": "same-origin"}
        )
        assert r.status_code == 200 and "set-cookie" in r.headers
        assert one_write(sent), sent
        assert [e.session for e in events if e.kind is EventKind.EVICTED] == [first_session]


@pytest.mark.anyio
@pytest.mark.redis
async def test_redis_revoke_user_is_one_command(redis_store: Any, sent: list[str]) -> None:
    clock = ManualClock(time.time())
    events: list[Event] = []
    app = capped_app(redis_store, clock, events)
    async with client_for(app) as c:
        await sign_in(c)
        signed_in = created_session(events)
        events.clear()
        sent.clear()
        assert len(await app.revoke_user("alice")) == 1
        assert len(sent) == 1 and sent[0] in ("EVALSHA", "EVAL"), sent  # no read cache: no fence
        assert [e.session for e in events if e.kind is EventKind.REVOKED] == [signed_in]
