"""What the SQLite store tests share besides fixtures."""

from __future__ import annotations

from sessionwarden.stores.sqlite import SQLiteStore


class Statements:
    """The statements the calling thread's connection of ``store`` runs."""

    def __init__(self, store: SQLiteStore) -> None:
        self.seen: list[str] = []
        store._db().set_trace_callback(self.seen.append)

    def selects(self) -> list[str]:
        return [s for s in self.seen if s.lstrip().upper().startswith("SELECT")]

    def clear(self) -> None:
        self.seen.clear()
