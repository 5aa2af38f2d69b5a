"""Failover under load: ``kill -9`` a master while signed-in requests keep coming.

Each test starts its own servers (a Redis Cluster of 3 masters + 3 replicas, or a Sentinel
set-up), signs users in through the ASGI middleware, signs some of them out again (their old
cookies must stay dead), waits until the replicas have every write, then kills a master by its
PID and keeps sending requests in a bounded loop. What a user can observe is asserted:

* no wrong answer: every response is either the signed-in user's own page or a 503 (the
  fail-closed path), never another user, never signed out;
* no revived session: a signed-out cookie never gets a signed-in page, before, during or after;
* recovery by itself: after the replica is promoted every session answers again.

The 503 window (first to last 503 after the kill) is printed: it is a measurement, not an
assertion (it depends on ``cluster-node-timeout`` / ``down-after-milliseconds`` and the load).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.crc import key_slot
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.policy import Policy
from tests.cluster_support import Cluster, SentinelSet, redis_cluster, redis_sentinel

from ..conftest import SECRET, cluster_tools_or_skip, unique_prefix

pytestmark = pytest.mark.cluster

USERS = 48
REVOKED = 8
#: Rounds (every user once) with every answer right, after the last 503, to call it recovered.
STEADY_ROUNDS = 5
#: The loop's bound: a failover that has not recovered by then fails the test.
MAX_SECONDS = 90.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def whoami(request: Request) -> Response:
    return JSONResponse({"user": get_session(request).user_id})


async def login(request: Request) -> Response:
    get_session(request).login(request.query_params["user"])
    return JSONResponse({"ok": True})


async def logout(request: Request) -> Response:
    get_session(request).logout()
    return JSONResponse({"ok": True})


def app_for(store_url: str) -> SessionWardenMiddleware:
    routes = [Route("/", whoami), Route("/login", login), Route("/logout", logout)]
    return SessionWardenMiddleware(
        Starlette(routes=routes),
        policy=Policy(secret_keys=(SECRET,), allowed_hosts=("t",)),
        store=store_url,
    )


@dataclass
class Report:
    requests: int = 0
    ok: int = 0
    unavailable: int = 0
    wrong: list[str] = field(default_factory=list)
    revived: int = 0
    first_503: float | None = None
    last_503: float | None = None
    recovered_at: float | None = None
    by_group: dict[str, int] = field(default_factory=dict)

    @property
    def window(self) -> float:
        if self.first_503 is None or self.last_503 is None:
            return 0.0
        return self.last_503 - self.first_503


@dataclass
class Client:
    user: str
    http: httpx.AsyncClient
    group: str = ""


async def sign_in(app: Any, n: int) -> list[Client]:
    clients = []
    for i in range(n):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://t")
        user = f"user{i}"
        r = await http.get("/login", params={"user": user})
        assert r.status_code == 200, r.text
        assert (await http.get("/")).json() == {"user": user}
        clients.append(Client(user, http))
    return clients


async def sign_out(clients: list[Client]) -> list[Client]:
    """Sign each out, and keep a client that still presents the old, revoked cookie."""
    stale = []
    for c in clients:
        old = dict(c.http.cookies)
        r = await c.http.get("/logout")
        assert r.status_code == 200, r.text
        replay = httpx.AsyncClient(transport=c.http._transport, base_url="https://t")
        replay.cookies.update(old)
        assert (await replay.get("/")).json() == {"user": None}
        stale.append(Client(c.user, replay))
    return stale


async def run_load(live: list[Client], revoked: list[Client], kill: Callable[[], None]) -> Report:
    report = Report()
    started = time.monotonic()
    killed_at: float | None = None
    steady = 0
    rounds = 0
    while time.monotonic() - started < MAX_SECONDS:
        rounds += 1
        if rounds == 3:
            kill()
            killed_at = time.monotonic()
        all_ok = True
        for c in live:
            r = await c.http.get("/")
            now = time.monotonic()
            report.requests += 1
            if r.status_code == 503:
                all_ok = False
                report.unavailable += 1
                report.by_group[c.group] = report.by_group.get(c.group, 0) + 1
                report.first_503 = report.first_503 or now
                report.last_503 = now
            elif r.status_code == 200 and r.json() == {"user": c.user}:
                report.ok += 1
            else:
                all_ok = False
                report.wrong.append(f"{c.user}: {r.status_code} {r.text[:80]}")
        for c in revoked:
            r = await c.http.get("/")
            report.requests += 1
            if r.status_code == 200 and r.json() != {"user": None}:
                report.revived += 1
        if killed_at is not None and report.first_503 is not None:
            steady = steady + 1 if all_ok else 0
            if steady >= STEADY_ROUNDS:
                report.recovered_at = time.monotonic() - killed_at
                break
    return report


def _print(kind: str, report: Report) -> None:
    print(
        f"\n{kind} failover: {report.requests} requests, {report.ok} right, "
        f"{report.unavailable} 503 (window {report.window:.2f} s; by group {report.by_group}), "
        f"{len(report.wrong)} wrong, {report.revived} revived, "
        f"recovered {report.recovered_at:.2f} s after the kill"
        if report.recovered_at is not None
        else f"\n{kind} failover: not recovered: {report}"
    )


# -- Redis Cluster ------------------------------------------------------------------------------


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster_tools_or_skip()
    with redis_cluster(tmp_path / "c", node_timeout_ms=2000) as cluster:
        yield cluster


@pytest.fixture
async def cluster_app(own_cluster: Cluster) -> AsyncIterator[SessionWardenMiddleware]:
    url = f"redis+cluster://{own_cluster.seed_list}/?prefix={unique_prefix()}"
    app = app_for(url)
    yield app
    await app.store.close()


def _wait_replicated(nodes: list[Any]) -> None:
    for node in nodes:
        assert int(node.call("WAIT", 1, 5000)) >= 1


@pytest.mark.anyio
async def test_cluster_master_killed_under_load(
    own_cluster: Cluster, cluster_app: SessionWardenMiddleware
) -> None:
    clients = await sign_in(cluster_app, USERS)
    revoked = await sign_out(clients[:REVOKED])
    live = clients[REVOKED:]
    store = cluster_app.store
    victim = own_cluster.masters()[0]
    for c in live:
        key = cluster_app.engine.keyring.hash_id(c.http.cookies[_cookie(cluster_app)])
        owner = own_cluster.master_of_slot(key_slot(store._ops.skey(key).encode()))
        c.group = "victim" if owner is victim else "others"
    assert {c.group for c in live} == {"victim", "others"}
    _wait_replicated(own_cluster.masters())

    report = await run_load(live, revoked, lambda: own_cluster.kill(victim))
    _print("Redis Cluster", report)

    assert report.wrong == []
    assert report.revived == 0
    assert report.unavailable > 0, "the kill was not noticed"
    assert report.recovered_at is not None, "did not recover by itself"
    assert set(report.by_group) == {"victim"}, "only the dead master's slots may answer 503"


def _cookie(app: SessionWardenMiddleware) -> str:
    return app.policy.cookie.name


# -- Sentinel -------------------------------------------------------------------------------------


@pytest.fixture
def own_sentinel(tmp_path: Path) -> Iterator[SentinelSet]:
    cluster_tools_or_skip()
    with redis_sentinel(tmp_path / "s", down_after_ms=2000) as group:
        yield group


@pytest.mark.anyio
async def test_sentinel_master_killed_under_load(own_sentinel: SentinelSet) -> None:
    url = (
        f"redis+sentinel://{own_sentinel.sentinel_list}/{own_sentinel.name}"
        f"?prefix={unique_prefix()}"
    )
    app = app_for(url)
    try:
        clients = await sign_in(app, USERS)
        revoked = await sign_out(clients[:REVOKED])
        live = clients[REVOKED:]
        master = own_sentinel.master()
        _wait_replicated([master])
        report = await run_load(live, revoked, lambda: own_sentinel.kill(master))
        _print("Sentinel", report)
        assert report.wrong == []
        assert report.revived == 0
        assert report.unavailable > 0, "the kill was not noticed"
        assert report.recovered_at is not None, "did not recover by itself"
        assert own_sentinel.master() is not master
    finally:
        await app.store.close()
