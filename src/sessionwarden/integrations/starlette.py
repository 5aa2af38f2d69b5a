"""Starlette helpers: ``@json_only`` for a view that accepts JSON bodies only, and
``@unsafe_methods_only`` for a view that changes state.

    @json_only
    async def transfer(request: Request) -> Response: ...

An unsafe request (POST, PUT, PATCH, DELETE) whose ``Content-Type`` is not JSON gets 415 and the
view does not run (see :mod:`sessionwarden.content` for why a JSON API needs this). A safe
request (GET, HEAD, OPTIONS, TRACE) to an ``@unsafe_methods_only`` view gets 405 with ``Allow``
and the view does not run (see :mod:`sessionwarden.methods`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..content import UNSUPPORTED_MEDIA_TYPE, json_body_refusal, single_content_type
from ..methods import ALLOW, METHOD_NOT_ALLOWED, safe_method_refused

__all__ = ["json_only", "unsafe_methods_only"]

V = TypeVar("V", bound=Callable[..., Awaitable[Response]])


def json_only(view: V) -> V:
    """Answer 415 instead of running ``view`` for an unsafe request without a JSON body. The
    request is the view's last positional argument (a function view or a method)."""

    @functools.wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Response:
        request = args[-1] if args else kwargs["request"]
        assert isinstance(request, Request)
        if json_body_refusal(
            request.method, single_content_type(request.headers.getlist("content-type"))
        ):
            return JSONResponse(UNSUPPORTED_MEDIA_TYPE, status_code=415)
        return await view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def unsafe_methods_only(view: V) -> V:
    """Answer 405 (with ``Allow``) instead of running ``view`` for a GET, HEAD, OPTIONS or
    TRACE: a route that changes state must not be reachable by a link or an ``<img>``. The
    request is the view's last positional argument (a function view or a method)."""

    @functools.wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Response:
        request = args[-1] if args else kwargs["request"]
        assert isinstance(request, Request)
        if safe_method_refused(request.method):
            return JSONResponse(METHOD_NOT_ALLOWED, status_code=405, headers={"allow": ALLOW})
        return await view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
