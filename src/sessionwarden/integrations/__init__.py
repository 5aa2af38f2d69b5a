"""Framework integrations, each importing its framework only when it is itself imported.

* :mod:`sessionwarden.integrations.flask` — the ``SessionWarden`` Flask extension (``flask`` extra).
* :mod:`sessionwarden.integrations.fastapi` — FastAPI dependencies (``fastapi`` extra).

Plain ASGI applications (Starlette, Litestar, …) need no integration: install
:class:`sessionwarden.asgi.SessionWardenMiddleware` and read ``scope["session"]``.
"""

from __future__ import annotations

__all__: list[str] = []
