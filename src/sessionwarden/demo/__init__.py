"""A runnable demo of sessionwarden: ``sessionwarden demo`` or ``python -m sessionwarden.demo``.

A small bank on Starlette whose pages show every defence working (rotation on sign-in, a "your
devices" page, CSRF on forms and JSON, strict CSP with nonces, idle warnings, anomaly revocation)
and an ``/attacks`` page to try them. :func:`create_app` builds it for tests.
"""

from __future__ import annotations

from .app import create_app, create_evil_app, demo_policy

__all__ = ["create_app", "create_evil_app", "demo_policy"]
