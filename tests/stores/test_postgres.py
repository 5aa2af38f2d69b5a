"""PostgreSQL-specific behaviour of PostgresStore / AsyncPostgresStore against the real server.

The interface semantics shared with every store are covered by the contract suite; this module
checks what only PostgreSQL has: the cap and rotation under real concurrency (several store
objects, as several processes or hosts would have them), the paced purge, failure modes, the
schema step, and that no session ID ever reaches the database.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sessionwarden import tokens
from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.policy import Policy
from sessionwarden.records import Alias, RecordUpdate, SessionRecord, Tombstone
from sessionwarden.stores import open_async_store, parse_store_url
from sessionwarden.stores.base import StoreUnavailable
from sessionwarden.stores.postgres import (
    SCHEMA_VERSION,
    AsyncPostgresStore,
    PostgresStore,
    init_schema,
)

from ..conftest import SECRET, postgres_database, postgres_table, unique_table

pytestmark = pytest.mark.postgres

T0 = 1_700_000_000.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def target() -> tuple[str, str]:
    """``(database URL, table)`` with the schema created."""
    return postgres_table()


@pytest.fixture
def pstore(target: tuple[str, str]) -> Iterator[PostgresStore]:
    store = PostgresStore(target[0], table=target[1])
    yield store
    store.close()


@pytest.fixture
async def astore(target: tuple[str, str]) -> AsyncIterator[AsyncPostgresStore]:
    store = AsyncPostgresStore(target[0], table=target[1])
    yield store
    await store.close()


def skey(n: int | str) -> str:
    """A store key as the core makes them: a keyed hash, never the session ID itself."""
    return hashlib.sha256(f"session-{n}".encode()).hexdigest()


def make_record(key: str, *, user: str | None = "alice", created: float = T0) -> SessionRecord:
    return SessionRecord(
        key=key,
        created_at=created,
        last_seen=created,
        expires_at=created + 3600,
        rotated_at=created,
        csrf_secret="c" * 43,
        user_id=user,
        auth_at=created if user else None,
        data={"cart": [1, 2], "n": 0},
    )


def rows(target: tuple[str, str], where: str = "true") -> list[tuple[Any, ...]]:
    url, table = target
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(f"SELECT * FROM {table} WHERE {where}").fetchall()


def run_threads(n: int, work: Any) -> list[Any]:
    """Run ``work(i)`` in ``n`` threads released together; results (or exceptions) by index."""
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def body(i: int) -> None:
        barrier.wait()
        try:
            out[i] = work(i)
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


# -- concurrency ----------------------------------------------------------------------------------


def test_concurrent_logins_on_several_stores_never_exceed_the_cap(
    target: tuple[str, str],
) -> None:
    """Sixteen sign-ins of one user at once, through four store objects (four hosts): exactly
    the cap survives, every other one is a tombstone 'evicted', and nothing failed."""
    stores = [PostgresStore(target[0], table=target[1], pool_max=4) for _ in range(4)]
    try:
        for s in stores:
            s.check()  # connections made before the race
        cap = 3

        def login(i: int) -> list[str]:
            return stores[i % 4].insert(
                make_record(skey(i), created=T0 + i), max_per_user=cap, tombstone_until=T0 + 7200
            )

        results = run_threads(16, login)
        assert not [r for r in results if isinstance(r, Exception)], results
        live = stores[0].user_sessions("alice")
        assert len(live) == cap
        in_db = rows(target, "user_id = 'alice' AND kind = 0")
        assert len(in_db) == cap
        evicted = {k for r in results for k in r}
        assert len(evicted) == 16 - cap
        assert evicted.isdisjoint(r.key for r in live)
        for key in evicted:
            found = stores[1].get(key)
            assert isinstance(found, Tombstone) and found.reason == "evicted"
    finally:
        for s in stores:
            s.close()


def test_concurrent_rotations_of_one_session_have_one_winner(target: tuple[str, str]) -> None:
    """Eight requests rotate the same session at once (eight new IDs): exactly one succeeds,
    the old key is an alias to the winner, and the winner holds the stored data plus its
    update; the losers wrote nothing."""
    stores = [PostgresStore(target[0], table=target[1], pool_max=4) for _ in range(2)]
    try:
        old = skey("old")
        stores[0].insert(make_record(old), max_per_user=2, tombstone_until=T0 + 7200)
        stores[0].update(old, RecordUpdate(set_data={"stored": True}))

        def rotate(i: int) -> dict[str, str] | None:
            new = skey(f"new-{i}")
            return stores[i % 2].rotate(
                old,
                new,
                RecordUpdate(meta={"rotated_at": T0 + i}, set_data={"winner": i}),
                old_becomes=Alias(old, new, T0 + 1, T0 + 30, T0 + 3600, "alice"),
                max_per_user=2,
                tombstone_until=T0 + 7200,
            )

        results = run_threads(8, rotate)
        assert not [r for r in results if isinstance(r, Exception)], results
        winners = [i for i, r in enumerate(results) if r is not None]
        assert len(winners) == 1
        w = winners[0]
        alias = stores[1].get(old)
        assert isinstance(alias, Alias) and alias.target == skey(f"new-{w}")
        record = stores[1].get(skey(f"new-{w}"))
        assert isinstance(record, SessionRecord)
        assert record.data == {"cart": [1, 2], "n": 0, "stored": True, "winner": w}
        for i in range(8):
            if i != w:
                assert stores[0].get(skey(f"new-{i}")) is None
        assert len(rows(target, "kind = 0")) == 1
    finally:
        for s in stores:
            s.close()


def test_rotation_racing_a_revocation_never_leaves_a_live_session(
    target: tuple[str, str],
) -> None:
    """Rotate and revoke the same session at once, many times: either the revocation came
    first (the rotation wrote nothing) or the rotation did (its new record exists); a revoked
    session never ends up live under its old key."""
    stores = [PostgresStore(target[0], table=target[1]) for _ in range(2)]
    try:
        outcomes = set()
        for n in range(20):
            old, new = skey(f"o{n}"), skey(f"n{n}")
            stores[0].insert(make_record(old), max_per_user=0, tombstone_until=T0 + 7200)

            def work(i: int, old: str = old, new: str = new) -> Any:
                if i == 0:
                    return stores[0].rotate(
                        old,
                        new,
                        RecordUpdate(set_data={"n": 1}),
                        old_becomes=Tombstone(old, "rotated", T0, T0 + 60, "alice"),
                        max_per_user=0,
                        tombstone_until=T0 + 7200,
                    )
                return stores[1].revoke(old, Tombstone(old, "logout", T0, T0 + 60, "alice"))

            rotated, revoked = run_threads(2, work)
            assert not isinstance(rotated, Exception) and not isinstance(revoked, Exception)
            assert not isinstance(stores[0].get(old), SessionRecord)
            if rotated is None:
                assert revoked is True and stores[0].get(new) is None
                outcomes.add("revoked first")
            else:
                assert isinstance(stores[0].get(new), SessionRecord)
                assert revoked is False  # the old key was already a tombstone
                outcomes.add("rotated first")
        assert outcomes  # at least one interleaving was observed; both are correct
    finally:
        for s in stores:
            s.close()


def test_updates_racing_a_revocation_never_revive(target: tuple[str, str]) -> None:
    stores = [PostgresStore(target[0], table=target[1]) for _ in range(2)]
    try:
        key = skey(1)
        stores[0].insert(make_record(key), max_per_user=0, tombstone_until=T0 + 7200)

        def work(i: int) -> Any:
            if i == 0:
                return stores[1].revoke(key, Tombstone(key, "logout", T0, T0 + 60, "alice"))
            return stores[0].update(key, RecordUpdate(set_data={f"k{i}": i}))

        results = run_threads(8, work)
        assert results[0] is True
        assert not [r for r in results if isinstance(r, Exception)]
        assert isinstance(stores[0].get(key), Tombstone)
        assert stores[0].update(key, RecordUpdate(set_data={"late": 1})) is False
        assert isinstance(stores[1].get(key), Tombstone)
    finally:
        for s in stores:
            s.close()


def test_sign_ins_racing_revoke_all_do_not_fail(target: tuple[str, str]) -> None:
    """Sign-ins with a cap, rotations and 'sign out everywhere' of one user at once take the
    same locks in the same order: none of them fails (no deadlock, no 503)."""
    stores = [PostgresStore(target[0], table=target[1]) for _ in range(3)]
    try:
        for i in range(6):
            stores[0].insert(make_record(skey(i)), max_per_user=0, tombstone_until=T0 + 7200)

        def work(i: int) -> Any:
            s = stores[i % 3]
            if i % 4 == 0:
                return s.revoke_user("alice", reason="all", at=T0, until=T0 + 60)
            if i % 4 == 1 and i // 4 < 6:
                old = skey(i // 4)
                return s.rotate(
                    old,
                    skey(f"r{i}"),
                    RecordUpdate(),
                    old_becomes=Alias(old, skey(f"r{i}"), T0, T0 + 5, T0 + 60, "alice"),
                    max_per_user=2,
                    tombstone_until=T0 + 7200,
                )
            return s.insert(
                make_record(skey(f"x{i}"), created=T0 + i), max_per_user=2, tombstone_until=T0 + 60
            )

        results = run_threads(24, work)
        assert not [r for r in results if isinstance(r, Exception)], results
        assert len(stores[0].user_sessions("alice")) <= 6
    finally:
        for s in stores:
            s.close()


# -- purge ----------------------------------------------------------------------------------------


class _Observed(PostgresStore):
    """A store whose purge reports, between its batches, what another connection sees."""

    seen: list[int]
    target: tuple[str, str]

    def _pause(self) -> None:
        self.seen.append(len(rows(self.target, f"expires <= {T0 + 10}")))


def test_purge_commits_in_batches(target: tuple[str, str]) -> None:
    store = _Observed(target[0], table=target[1])
    store.seen, store.target = [], target
    try:
        url, table = target
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                f"INSERT INTO {table} (key, kind, expires, meta)"
                " SELECT md5(i::text) || md5((-i)::text), 2, %s, '{}'"
                " FROM generate_series(1, 1000) AS i",
                (T0,),
            )
        live = make_record(skey("live"), created=T0 + 100)
        store.insert(live, max_per_user=0, tombstone_until=T0 + 7200)
        assert store.purge(T0 + 10, batch=100) == 1000
        # Each batch was committed before the next began: another connection saw the count
        # fall by one batch at a time.
        assert store.seen == list(range(900, -1, -100))
        assert store.get(live.key) == live
    finally:
        store.close()


def test_purge_skips_a_row_a_request_holds_and_takes_it_next_time(
    pstore: PostgresStore, target: tuple[str, str]
) -> None:
    url, table = target
    for i in range(5):
        pstore.insert(
            make_record(skey(i), created=T0 - 7200), max_per_user=0, tombstone_until=T0 + 60
        )
    with psycopg.connect(url) as conn:  # a transaction of its own, holding one row locked
        conn.execute(f"SELECT 1 FROM {table} WHERE key = %s FOR UPDATE", (skey(3),))
        started = time.monotonic()
        assert pstore.purge(T0, batch=2) == 4
        assert time.monotonic() - started < 1.5  # well below the 2 s statement timeout
        conn.rollback()
    assert pstore.purge(T0) == 1
    assert pstore.stats(T0 - 7200).live_sessions == 0


# -- failure modes --------------------------------------------------------------------------------


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_fails_closed_within_timeout(closed_port: int) -> None:
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:{closed_port}/sessions"
    store = PostgresStore(url, timeout=0.5)
    try:
        for op in (
            lambda: store.get(skey(1)),
            lambda: store.insert(make_record(skey(1)), max_per_user=1, tombstone_until=T0),
            lambda: store.revoke(skey(1), Tombstone(skey(1), "x", T0, T0 + 1, None)),
            lambda: store.purge(T0),
        ):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as info:
                op()
            assert time.monotonic() - started < 3
            message = str(info.value)
            assert message.startswith("PostgreSQL session store: ")
            assert "s3cret" not in message and str(closed_port) not in message
            assert info.value.__cause__ is None and info.value.__suppress_context__
    finally:
        store.close()


@pytest.mark.anyio
async def test_async_unreachable_server_fails_closed_within_timeout(closed_port: int) -> None:
    store = open_async_store(f"postgresql://postgres:s3cret-pw@127.0.0.1:{closed_port}/x")
    assert isinstance(store, AsyncPostgresStore)
    store = AsyncPostgresStore(f"postgresql://u:s3cret-pw@127.0.0.1:{closed_port}/x", timeout=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"^PostgreSQL session store: ") as info:
            await store.get(skey(1))
        assert time.monotonic() - started < 3
        assert "s3cret" not in str(info.value)
    finally:
        await store.close()


@pytest.mark.anyio
async def test_middleware_answers_503_when_the_server_is_unreachable(closed_port: int) -> None:
    async def home(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    store = AsyncPostgresStore(f"postgresql://u@127.0.0.1:{closed_port}/x", timeout=0.5)
    app = SessionWardenMiddleware(
        Starlette(routes=[Route("/", home)]),
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store=store,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        response = await c.get("/", headers={"cookie": f"__Host-id={tokens.new_session_id()}"})
    assert response.status_code == 503
    assert "ok" not in response.text
    await store.close()


def test_dropped_connections_are_replaced(pstore: PostgresStore, target: tuple[str, str]) -> None:
    """The server ends every session of the store (a restart, an idle timeout): the next
    operations get fresh connections and succeed."""
    record = make_record(skey(1))
    pstore.insert(record, max_per_user=0, tombstone_until=T0 + 60)
    url, _ = target
    dbname = parse_store_url(url).url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = 'sessionwarden'",
            (dbname,),
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    assert pstore.get(record.key) == record
    assert pstore.update(record.key, RecordUpdate(set_data={"after": 1})) is True


def test_missing_schema_fails_closed_with_the_remedy() -> None:
    url = postgres_database()
    store = PostgresStore(url, table=unique_table())
    try:
        with pytest.raises(StoreUnavailable, match="sessionwarden store init"):
            store.get(skey(1))
        with pytest.raises(StoreUnavailable, match="sessionwarden store init"):
            store.check()
        assert init_schema(url, table=store.table) == (None, SCHEMA_VERSION)
        assert init_schema(url, table=store.table) == (SCHEMA_VERSION, SCHEMA_VERSION)
        store.check()
        assert store.get(skey(1)) is None
    finally:
        store.close()


@pytest.mark.anyio
async def test_check_names_a_database_that_does_not_exist_at_once() -> None:
    """check() connects once on its own: the cause is named, not the pool's timeout."""
    url = postgres_database().rsplit("/", 1)[0] + "/swtest_no_such_database"
    sync, asynchronous = PostgresStore(url), AsyncPostgresStore(url)
    try:
        with pytest.raises(StoreUnavailable, match="cannot connect"):
            sync.check()
        with pytest.raises(StoreUnavailable, match="cannot connect"):
            await asynchronous.check()
    finally:
        sync.close()
        await asynchronous.close()


def test_schema_init_from_several_processes_at_once() -> None:
    url, table = postgres_database(), unique_table()
    results = run_threads(4, lambda i: init_schema(url, table=table))
    # One created the tables; the others waited for it and found them current.
    assert results.count((None, SCHEMA_VERSION)) == 1
    assert results.count((SCHEMA_VERSION, SCHEMA_VERSION)) == 3


def test_store_url_options() -> None:
    spec = parse_store_url("postgres://u:p@db.internal:5433/app?table=web_sessions&sslmode=require")
    assert spec.kind == "postgres" and spec.prefix == "web_sessions"
    assert spec.url == "postgresql://u:p@db.internal:5433/app?sslmode=require"
    assert parse_store_url("postgresql://h/db").prefix == "sessionwarden"
    # An empty host (libpq's default: the local socket) keeps its "//", which libpq needs.
    assert parse_store_url("postgresql:///app?table=t").url == "postgresql:///app"
    assert conninfo_to_dict(parse_store_url("postgresql:///app").url)["dbname"] == "app"
    assert parse_store_url("postgresql://").url == "postgresql://"
    with pytest.raises(ValueError, match="percent-encoded"):
        parse_store_url("postgresql://h/db%zz")
    for bad in (
        "postgresql://h/db?table=Bad",
        "postgresql://h/db?table=x;drop",
        "postgresql://h/db?table=",
    ):
        with pytest.raises(ValueError, match="table"):
            parse_store_url(bad)


# -- no session ID in the database ---------------------------------------------------------------


@pytest.mark.anyio
async def test_no_session_id_ever_reaches_the_database(
    target: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    issued: list[str] = []
    real = tokens.new_session_id

    def recording() -> str:
        value = real()
        issued.append(value)
        return value

    monkeypatch.setattr(tokens, "new_session_id", recording)

    async def count(request: Request) -> JSONResponse:
        session = request.session
        session["visits"] = int(session.get("visits") or 0) + 1  # type: ignore[arg-type]
        return JSONResponse({"visits": session["visits"], "token": request.state.csrf_token()})

    async def login(request: Request) -> JSONResponse:
        get_session(request).login("alice")
        return JSONResponse({"ok": True})

    url, table = target
    app = SessionWardenMiddleware(
        Starlette(routes=[Route("/", count), Route("/login", login, methods=["POST"])]),
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("*",)),
        store=f"{url}?table={table}",
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        for _ in range(3):
            response = await c.get("/")
            assert response.status_code == 200
        token = response.json()["token"]
        assert (await c.post("/login", headers={"x-csrf-token": token})).status_code == 200
        assert (await c.get("/")).json()["visits"] == 4
    await app.store.close()
    assert len(issued) >= 2  # the first ID, and the one the sign-in rotated to
    dump = "\n".join(str(row) for row in rows(target))
    assert dump.count("'alice'") >= 1  # the dump is the real content
    for value in issued:
        assert value not in dump
    for key, *_rest in rows(target):
        assert len(key) == 64 and int(key, 16) >= 0  # keyed hashes only


# -- async ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_matches_sync(astore: AsyncPostgresStore, pstore: PostgresStore) -> None:
    """The same calls on the two stores (one table) give the same answers."""

    async def run(store: Any, is_async: bool, tag: str) -> list[Any]:
        async def call(name: str, *args: Any, **kwargs: Any) -> Any:
            result = getattr(store, name)(*args, **kwargs)
            return await result if is_async else result

        user = f"user-{tag}"
        k1, k2, k3 = skey(f"{tag}1"), skey(f"{tag}2"), skey(f"{tag}3")
        out: list[Any] = []
        out.append(
            await call("insert", make_record(k1, user=user), max_per_user=2, tombstone_until=T0)
        )
        out.append(
            await call(
                "update",
                k1,
                RecordUpdate(set_data={"t": "x"}, del_data=("n",), activity={"ev": 1}),
                activity_max=2,
            )
        )
        out.append(
            await call(
                "rotate",
                k1,
                k2,
                RecordUpdate(meta={"rotated_at": T0 + 6}),
                old_becomes=Alias(k1, k2, T0 + 6, T0 + 16, T0 + 600, user),
                max_per_user=1,
                tombstone_until=T0 + 60,
                activity_max=2,
            )
        )
        out.append(await call("activity", k2))
        out.append(
            await call(
                "insert", make_record(k3, user=user, created=T0 + 7), max_per_user=1,
                tombstone_until=T0 + 60,
            )
        )  # fmt: skip
        out.append(await call("get", k2))
        out.append(await call("revoke", k3, Tombstone(k3, "logout", T0 + 8, T0 + 600, user)))
        out.append(await call("revoke", k3, Tombstone(k3, "logout", T0 + 8, T0 + 600, user)))
        out.append(await call("revoke_user", user, reason="x", at=T0, until=T0 + 9))
        out.append(await call("user_sessions", user))
        def named(k: str) -> str:
            return k.replace(k1, "K1").replace(k2, "K2").replace(k3, "K3")

        return [
            {named(k): named(v) for k, v in o.items()}  # ended keys and lineages
            if isinstance(o, dict)
            else o
            for o in out
        ]

    sync_out = await run(pstore, False, "s")
    async_out = await run(astore, True, "a")
    assert [type(o) for o in async_out] == [type(o) for o in sync_out]
    assert async_out[:4] + async_out[6:] == sync_out[:4] + sync_out[6:]
    assert sync_out[4] == {"K2": "K2"} and sync_out[7] is False and sync_out[9] == []
    assert sync_out[3] == [{"ev": 1}]
    assert await astore.stats(T0 + 1) == pstore.stats(T0 + 1)
    assert await astore.purge(T0 + 10_000) > 0
    await astore.check()


@pytest.mark.anyio
async def test_async_all_sessions_pages_by_key(astore: AsyncPostgresStore) -> None:
    keys = sorted(skey(i) for i in range(7))
    for key in keys:
        await astore.insert(make_record(key), max_per_user=0, tombstone_until=T0 + 60)
    await astore.insert(make_record(skey("anon"), user=None), max_per_user=0, tombstone_until=T0)
    first, after = await astore.all_sessions(None, 4)
    assert [r.key for r in first] == keys[:4] and after == keys[3]
    rest, after = await astore.all_sessions(after, 4)
    assert [r.key for r in rest] == keys[4:] and after is None
