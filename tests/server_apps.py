"""The apps the production-server tests serve (``tests/test_servers_*.py``): the Flask and the
Starlette example of ``examples/``, with a few routes more, under gunicorn, uvicorn and
hypercorn.

The store and the key come from the environment, as in the examples (``SESSIONWARDEN_STORE``,
``SESSIONWARDEN_SECRET``); ``SWTEST_HOSTS`` adds allowed hosts (the HTTPS redirect test). Every
response says which process served it (``X-Worker``: its PID), so a test can tell the workers of
one server apart. The routes added to each example:

- ``GET /state``: the user, the session's values and the PID, as JSON;
- ``GET /token``: a CSRF token of the session, as JSON;
- ``POST /put`` (form ``key``, ``value``, ``csrf_token``): sets one value of the session;
- ``POST /revoke-all``: ends every session of the signed-in user ("sign out everywhere");
- ``/ws`` (ASGI): a WebSocket greeting with ``{"user": ..., "pid": ...}``, then echoing.

The ASGI wrapper writes the lifespan messages the app sends to stderr (``lifespan: <type>``),
so a test can see that the server's lifespan reached the app through the middleware and ended.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

PID_HEADER = "X-Worker"


def _policy_options() -> dict[str, Any]:
    hosts = tuple(h for h in os.environ.get("SWTEST_HOSTS", "").split(",") if h)
    return {"allowed_hosts": ("127.0.0.1", *hosts)} if hosts else {}


# -- Flask (WSGI) ----------------------------------------------------------------------------------


def flask_app() -> Any:
    """``examples/flask_app.py`` with the routes above
    (``gunicorn 'tests.server_apps:flask_app()'``)."""
    from examples.flask_app import create_app
    from flask import jsonify, request

    from sessionwarden.integrations.flask import csrf_token
    from sessionwarden.integrations.flask import session as sw_session

    app = create_app()

    @app.get("/state")
    def state() -> Any:
        data = dict(sw_session.items())
        return jsonify(user=sw_session.user_id, data=data, pid=os.getpid())

    @app.get("/token")
    def token() -> Any:
        return jsonify(token=csrf_token(), pid=os.getpid())

    @app.post("/put")
    def put() -> Any:
        sw_session[request.form["key"]] = request.form["value"]
        return jsonify(pid=os.getpid())

    @app.post("/revoke-all")
    def revoke_all() -> Any:
        user = sw_session.user_id
        if user is None:
            return jsonify(ended=0, pid=os.getpid())
        ended = request.environ["sessionwarden.middleware"].revoke_user(user)
        return jsonify(ended=len(ended), pid=os.getpid())

    app.wsgi_app = _wsgi_with_pid(app.wsgi_app)  # type: ignore[method-assign]
    return app


def _wsgi_with_pid(inner: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, (PID_HEADER, str(os.getpid()))], exc_info)

        return inner(environ, start)

    return app


# -- Starlette (ASGI) ------------------------------------------------------------------------------


def starlette_app() -> Any:
    """``examples/starlette_app.py`` with the routes above (``uvicorn --factory
    tests.server_apps:starlette_app``)."""
    from examples.starlette_app import create_app
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    from sessionwarden import Policy
    from sessionwarden.asgi import get_middleware, get_session

    key = os.environ["SESSIONWARDEN_SECRET"]
    app = create_app(policy=Policy(secret_keys=(key.encode(),), **_policy_options()))

    async def state(request: Request) -> Response:
        session = get_session(request)
        data = dict(session.items())
        return JSONResponse({"user": session.user_id, "data": data, "pid": os.getpid()})

    async def token(request: Request) -> Response:
        return JSONResponse({"token": request.state.csrf_token(), "pid": os.getpid()})

    async def put(request: Request) -> Response:
        form = await request.form()
        get_session(request)[str(form["key"])] = str(form["value"])
        return JSONResponse({"pid": os.getpid()})

    async def revoke_all(request: Request) -> Response:
        user = get_session(request).user_id
        ended = [] if user is None else await get_middleware(request).revoke_user(user)
        return JSONResponse({"ended": len(ended), "pid": os.getpid()})

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        user = get_session(websocket).user_id
        await websocket.send_json({"user": user, "pid": os.getpid()})
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.send_text(await websocket.receive_text())

    app.router.routes += [
        Route("/state", state),
        Route("/token", token),
        Route("/put", put, methods=["POST"]),
        Route("/revoke-all", revoke_all, methods=["POST"]),
        WebSocketRoute("/ws", ws),
    ]
    return _asgi_with_pid(app)


def _asgi_with_pid(inner: Any) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def sending(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                pid = (PID_HEADER.lower().encode(), str(os.getpid()).encode())
                message = {**message, "headers": [*message.get("headers", []), pid]}
            elif kind.startswith("lifespan."):
                print(f"lifespan: {kind} pid={os.getpid()}", file=sys.stderr, flush=True)
            await send(message)

        await inner(scope, receive, sending)

    return app
