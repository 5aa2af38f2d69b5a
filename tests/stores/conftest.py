"""Fixtures the SQLite store tests share: a database path, and two store objects on one file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionwarden.stores.sqlite import SQLiteStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sessions.db"


@pytest.fixture
def pair(db_path: Path) -> Iterator[tuple[SQLiteStore, SQLiteStore]]:
    """Two store objects on one file: as two processes would have them."""
    writer, reader = SQLiteStore(db_path), SQLiteStore(db_path)
    try:
        yield writer, reader
    finally:
        writer.close()
        reader.close()
