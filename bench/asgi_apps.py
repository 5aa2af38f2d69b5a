"""ASGI app factories for ``bench/http.py`` (``uvicorn --factory bench.asgi_apps:<name>``).

Same apps as the in-process rows. The Redis key prefix comes from ``SWBENCH_PREFIX`` so the
driver can delete the keys afterwards.
"""

from __future__ import annotations

import os
from typing import Any

from bench.common import REDIS_URL


def bare() -> Any:
    from bench.peers.starlette_stack import app

    return app()


def ours_redis() -> Any:
    from bench.ours import policy, starlette_app
    from sessionwarden.asgi import SessionWardenMiddleware
    from sessionwarden.stores.redis import AsyncRedisStore

    store = AsyncRedisStore(REDIS_URL, prefix=os.environ["SWBENCH_PREFIX"])
    return SessionWardenMiddleware(starlette_app(), policy=policy(), store=store)


def ours_store() -> Any:
    """Ours on the store ``SWBENCH_STORE_URL`` names (``bench/cluster.py``); a plain Redis
    store's read cache off when ``SWBENCH_READ_CACHE_OFF`` is set."""
    from bench.ours import policy, starlette_app
    from sessionwarden.asgi import SessionWardenMiddleware
    from sessionwarden.stores import AsyncSessionStore, open_async_store, parse_store_url
    from sessionwarden.stores.redis import AsyncRedisStore

    url = os.environ["SWBENCH_STORE_URL"]
    spec = parse_store_url(url)
    store: AsyncSessionStore
    if os.environ.get("SWBENCH_READ_CACHE_OFF") and spec.kind == "redis":
        store = AsyncRedisStore(spec.url, prefix=spec.prefix, read_cache_ttl=0)
    else:
        store = open_async_store(url)
    return SessionWardenMiddleware(starlette_app(), policy=policy(), store=store)


def starsessions() -> Any:
    import redis.asyncio as aioredis

    from bench.peers.starlette_stack import starsessions_stack

    stack, prefix = starsessions_stack(aioredis.Redis.from_url(REDIS_URL))
    with open(os.environ["SWBENCH_PREFIX_FILE"], "w", encoding="utf-8") as f:
        f.write(prefix)
    return stack
