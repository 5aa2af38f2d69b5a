"""The one driver: runs a core operation's steps against a store, synchronously or not.

The only speed shortcut of the request path lives here: a store that can answer a read from
local memory without I/O (the Redis store's tracked read cache, ``get_cached``) is asked that
way first, and awaited only when it cannot (:class:`~sessionwarden.stores.base.NotCached`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..records import Lookup
from ..stores.base import AsyncSessionStore, NotCached, SessionStore
from .ops import Get, Op, Steps

T = TypeVar("T")

#: A read answered without I/O; raises :class:`NotCached` when it cannot be.
ReadNow = Callable[[str], Lookup]


def run_sync(steps: Steps[T], store: SessionStore) -> T:
    """Execute a core operation against a synchronous store."""
    try:
        op: Op[Any] = next(steps)
        while True:
            op = steps.send(op.apply(store))
    except StopIteration as done:
        result: T = done.value
        return result


def read_now_of(store: AsyncSessionStore) -> ReadNow | None:
    """The store's read without I/O (its optional ``get_cached``), if it has one."""
    read = getattr(store, "get_cached", None)
    return read if callable(read) else None


async def run_async(
    steps: Steps[T], store: AsyncSessionStore, read_now: ReadNow | None = None
) -> T:
    """Execute a core operation against an asynchronous store; reads go to ``read_now`` (see
    :func:`read_now_of`) first when given."""
    try:
        op: Op[Any] = next(steps)
        while True:
            if read_now is not None and isinstance(op, Get):
                try:
                    found = read_now(op.key)
                except NotCached:
                    found = await op.apply_async(store)
                op = steps.send(found)
            else:
                op = steps.send(await op.apply_async(store))
    except StopIteration as done:
        result: T = done.value
        return result
