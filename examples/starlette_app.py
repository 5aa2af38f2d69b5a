"""sessionwarden in a plain Starlette app: HTML forms, CSP nonces, a re-authentication guard.
Run: uvicorn --factory examples.starlette_app:create_app  (see docs/asgi.md)"""

import hmac
import html
import os
import secrets
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from sessionwarden import Policy
from sessionwarden.asgi import SessionWardenMiddleware

USERS = {"alice": "wonderland"}  # demo only: keep password hashes (argon2id) in a real app


def page(request: Request, text: str) -> HTMLResponse:
    token, nonce = request.state.csrf_token(), request.state.csp_nonce  # set by the middleware
    return HTMLResponse(
        f'<!doctype html><p>{html.escape(text)}</p><form method="post" action="/login">'
        f'<input type="hidden" name="csrf_token" value="{token}"><input name="user">'
        '<input name="password" type="password"><button>Sign in</button></form>'
        f'<script nonce="{nonce}">document.title = "signed-in demo"</script>'
    )


async def home(request: Request) -> Response:
    user = request.session.user_id  # request.session is sessionwarden's Session
    return page(request, f"Signed in as {user}" if user else "Not signed in")


async def login(request: Request) -> Response:
    form = await request.form()  # the middleware already checked the form's csrf_token
    user, password = str(form.get("user", "")), str(form.get("password", ""))
    if not hmac.compare_digest(USERS.get(user, "\0").encode(), password.encode()):
        return PlainTextResponse("bad credentials", 401)
    request.session.login(user)  # a new session ID: no fixation
    return RedirectResponse("/", 303)


async def settings(request: Request) -> Response:
    request.session.require_recent_auth(300)  # else 401 (JSON) / 303 to reauth_redirect
    return PlainTextResponse(f"settings of {request.session.user_id}")


async def logout(request: Request) -> Response:
    request.session.logout()
    return RedirectResponse("/", 303)


def create_app(**options: Any) -> Starlette:
    key = os.environ.get("SESSIONWARDEN_SECRET") or secrets.token_hex(32)  # random: demo only
    options.setdefault("policy", Policy(secret_keys=(key.encode(),)))
    options.setdefault("store", os.environ.get("SESSIONWARDEN_STORE", "memory://"))
    options.setdefault("reauth_redirect", "/")
    routes = [
        Route("/", home),
        Route("/login", login, methods=["POST"]),
        Route("/settings", settings),
        Route("/logout", logout, methods=["POST"]),
    ]
    # Installed as a Middleware entry (not wrapped around the app) so that Starlette's error
    # handling does not turn ReauthenticationRequired into a 500 (see docs/asgi.md).
    return Starlette(routes=routes, middleware=[Middleware(SessionWardenMiddleware, **options)])
