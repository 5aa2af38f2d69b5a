"""ASGI app factories for ``bench/http.py`` (``uvicorn --factory bench.asgi_apps:<name>``).

Same apps as the in-process rows. The Redis key prefix comes from ``SWBENCH_PREFIX`` so the
driver can delete the keys afterwards. ``ours_redis`` also answers ``GET`` :data:`CACHE_STATS`
itself, outside the middleware, with its store's read-cache counters (JSON), so that the driver
can tell how many reads the cache answered.
"""

from __future__ import annotations

import json
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
    app = SessionWardenMiddleware(starlette_app(), policy=policy(), store=store)
    return _with_cache_stats(app, store)


#: The path of the read-cache counters (``ours_redis``).
CACHE_STATS = "/_bench/read-cache"


def _with_cache_stats(app: Any, store: Any) -> Any:
    """``app``, with :data:`CACHE_STATS` answered before it: ``{"hits": n, "misses": n}``, the
    store's cache lookups so far (one per read of a session)."""

    async def serve(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != CACHE_STATS:
            await app(scope, receive, send)
            return
        cache = store.read_cache
        stats = cache.stats() if cache is not None else None
        body = json.dumps(
            {"hits": stats.hits, "misses": stats.misses} if stats is not None else {}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return serve


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
