"""Revocation reaches open connections held by another process, through the shared store.

Two uvicorn processes share a Redis or a SQLite store; a session is ended through one while
the other holds its WebSocket (closed with 1008) or its event stream (ended). The close must
arrive at all (the wait is bounded by generous timeouts); the latency goal (2 s) is measured
over 100 runs per store by ``bench/live_close.py`` and only reported here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from .conftest import drop_prefix, redis_or_skip, unique_prefix
from .live_servers import Server, measure, servers

RUNS = 20


@pytest.fixture(scope="module", params=["redis", "sqlite"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Server]]:
    workdir = tmp_path_factory.mktemp("live")
    if request.param == "redis":
        prefix = unique_prefix()
        with servers(f"{redis_or_skip()}?prefix={prefix}", 2, workdir) as started:
            yield started
        drop_prefix(prefix)
    else:
        with servers(f"sqlite:///{workdir}/live.db", 2, workdir) as started:
            yield started


@pytest.mark.parametrize("kind", ["websocket", "event-stream"])
def test_a_session_ended_in_one_process_closes_its_connections_in_another(
    pair: list[Server], kind: str
) -> None:
    latencies = asyncio.run(measure(pair, kind, RUNS))
    assert len(latencies) == RUNS
    print(f"\n{kind}: worst close {max(latencies) * 1000:.0f} ms over {RUNS} runs")
