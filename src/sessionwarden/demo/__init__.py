"""A runnable demo of sessionwarden: ``sessionwarden demo`` or ``python -m sessionwarden.demo``.

A small bank on Starlette whose pages show every defence working (rotation on sign-in, a "your
devices" page, CSRF on forms and JSON, strict CSP with nonces, idle warnings, anomaly revocation)
and an ``/attacks`` page to try them. :func:`create_app` builds it for tests.

The Starlette app is imported on first use of :func:`create_app` or :func:`create_evil_app`, so
the Flask twin (:mod:`sessionwarden.demo.flask_main`) runs without Starlette.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .shared import demo_policy

if TYPE_CHECKING:
    from .app import create_app, create_evil_app

__all__ = ["create_app", "create_evil_app", "demo_policy"]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "create_evil_app"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
