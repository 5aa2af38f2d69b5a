"""The backends the HTTP-level DBSC tests run against."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .http_server import Stores, open_stores


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """Each store against its real backend (Redis and PostgreSQL skip visibly
    without a server, and fail under CI)."""
    opened = open_stores(request.param, tmp_path)
    yield opened
    for fn in opened.cleanup:
        fn()
