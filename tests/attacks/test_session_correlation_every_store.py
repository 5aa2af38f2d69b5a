"""The correlation value of sessions ended in bulk (evicted beyond the cap, "log out other
devices", a credential change, an operator) and of a replay of their IDs, on the stores the
persistent-store suite leaves out: the memory store, Redis Cluster (the user's index and the
sessions sit in different slots, the evictions go through the pending list) and Sentinel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import unique_prefix
from .test_session_correlation import (
    test_sessions_ended_in_bulk_carry_their_own_correlation_values as bulk_case,
)

pytestmark = [pytest.mark.anyio, pytest.mark.cluster]

test_sessions_ended_in_bulk_carry_their_own_correlation_values = bulk_case


@pytest.fixture(params=["memory", "redis-cluster", "redis-sentinel"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    del tmp_path
    if request.param == "memory":
        yield "memory://"
        return
    prefix = unique_prefix()
    if request.param == "redis-cluster":
        cluster = request.getfixturevalue("redis_cluster")
        yield f"redis+cluster://{cluster.seed_list}/?prefix={prefix}"
        cluster.drop_prefix(prefix)
    else:
        group = request.getfixturevalue("redis_sentinel")
        yield f"redis+sentinel://{group.sentinel_list}/{group.name}?prefix={prefix}"
        group.drop_prefix(prefix)
