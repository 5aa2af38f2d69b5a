"""``logout()`` then values, and ``logout()`` then ``login()``, on Redis Cluster and Sentinel: the
same cases as ``tests/test_logout_then_values.py`` (there on memory, SQLite, Redis and
PostgreSQL), over stores whose rotation, revocation and insert span slots or go through a
master the sentinels name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionwarden.stores.base import SessionStore

from .conftest import DISTRIBUTED_KINDS, open_test_store
from .test_logout_then_values import (  # noqa: F401  (fixtures and cases collected here too)
    engine,
    recorder,
    test_a_logout_without_values_after_it_starts_nothing,
    test_a_sign_in_after_logout_in_the_same_request_is_a_new_session,
    test_a_sign_in_with_nothing_set_after_logout_is_a_new_session_too,
    test_after_logout_the_session_reads_as_empty,
    test_another_user_signing_in_ends_the_first_users_session,
    test_only_the_values_set_after_logout_come_along,
    test_the_new_session_lives_by_its_own_clock,
    test_the_value_set_after_logout_starts_a_new_anonymous_session,
)

pytestmark = pytest.mark.cluster


@pytest.fixture(params=DISTRIBUTED_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    with open_test_store(request.param, request, tmp_path) as s:
        yield s
