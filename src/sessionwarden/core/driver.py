"""The one driver: runs a core operation's steps against a store, synchronously or not.

A store with a local read cache (Redis' tracked cache) answers a cached read inside its own
``get``, which then returns without suspending: the driver awaits every operation alike and
each read is looked up once.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ..stores.base import AsyncSessionStore, SessionStore
from .ops import Op, Steps

T = TypeVar("T")


def run_sync(steps: Steps[T], store: SessionStore) -> T:
    """Execute a core operation against a synchronous store."""
    try:
        op: Op[Any] = next(steps)
        while True:
            op = steps.send(op.apply(store))
    except StopIteration as done:
        result: T = done.value
        return result


async def run_async(steps: Steps[T], store: AsyncSessionStore) -> T:
    """Execute a core operation against an asynchronous store."""
    try:
        op: Op[Any] = next(steps)
        while True:
            op = steps.send(await op.apply_async(store))
    except StopIteration as done:
        result: T = done.value
        return result
