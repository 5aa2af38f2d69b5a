"""FastAPI dependencies over :class:`~sessionwarden.asgi.SessionWardenMiddleware`.

    app = FastAPI()
    app.add_middleware(SessionWardenMiddleware, policy=policy, store="sqlite:///sessions.db")

    @app.get("/me")
    def me(user: SignedInUser) -> dict[str, str]:
        return {"user": user}

    @app.post("/email")
    def change_email(session: Annotated[Session, Depends(recent_authentication(300))]) -> ...

The middleware does the work (loading, CSRF, headers, commit); these only hand its results to
path operations, typed, and turn "not signed in" and "signed in too long ago" into 401s.

FastAPI's own ``/docs`` and ``/redoc`` load their scripts from a CDN and run an inline script,
both of which the strict Content-Security-Policy blocks. :func:`serve_docs` serves the two pages
itself instead, with this response's nonce on their scripts and the Swagger UI and ReDoc files
from the ``fastapi-offline`` package (in the ``fastapi`` extra), so no route's policy changes:

    app = FastAPI(docs_url=None, redoc_url=None)
    serve_docs(app)
"""

from __future__ import annotations

import functools
import html
import inspect
import json
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response

from ..asgi import SessionWardenMiddleware, get_context, get_middleware, get_session
from ..content import UNSUPPORTED_MEDIA_TYPE, json_body_refusal, single_content_type
from ..core import ReauthenticationRequired, Session
from ..methods import ALLOW, METHOD_NOT_ALLOWED, safe_method_refused
from .nextpath import login_location, safe_next

__all__ = [
    "CspNonce",
    "CsrfToken",
    "CurrentSession",
    "JsonOnly",
    "SignedInUser",
    "UnsafeMethodsOnly",
    "Warden",
    "csp_nonce",
    "csrf_token",
    "current_session",
    "json_only",
    "login_redirect",
    "recent_authentication",
    "safe_next",
    "serve_docs",
    "signed_in_user",
    "unsafe_methods_only",
    "user_loader",
    "warden",
]


def current_session(request: Request) -> Session:
    """This request's session (``RuntimeError`` when the middleware is not installed)."""
    return get_session(request)


def signed_in_user(request: Request) -> str:
    """The signed-in user's ID; 401 ``"authentication-required"`` for an anonymous session."""
    user = get_session(request).user_id
    if user is None:
        raise HTTPException(status_code=401, detail="authentication-required")
    return user


U = TypeVar("U")


def user_loader(
    load: Callable[[str], U | None] | Callable[[str], Awaitable[U | None]],
) -> Callable[[Request], Awaitable[U | None]]:
    """A dependency giving the signed-in user's object, as ``load(user_id)`` returns it (a
    function or a coroutine function), or ``None`` for an anonymous session: Flask-Login's
    ``current_user`` for FastAPI. Loaded once per request however many dependencies use it.

        CurrentUser = Annotated[User | None, Depends(user_loader(get_user))]
    """
    is_async = inspect.iscoroutinefunction(load)

    async def current_user(request: Request) -> U | None:
        user_id = get_session(request).user_id
        if user_id is None:
            return None
        loaded: Any = load(user_id)
        if is_async:
            loaded = await loaded
        return loaded  # type: ignore[no-any-return]

    return current_user


def login_redirect(login_url: str) -> Callable[[Request], str]:
    """A dependency like :data:`SignedInUser` for pages a browser opens: an anonymous browser is
    redirected (303) to ``login_url`` with ``?next=`` the relative path it asked for (read it
    back with :func:`safe_next`); a JSON client gets the 401 ``authentication-required``."""

    def signed_in_or_redirect(request: Request) -> str:
        user = get_session(request).user_id
        if user is not None:
            return user
        if get_context(request).facts.wants_json:
            raise HTTPException(status_code=401, detail="authentication-required")
        location = login_location(login_url, request.url.path, request.url.query)
        raise HTTPException(status_code=303, headers={"location": location})

    return signed_in_or_redirect


def recent_authentication(max_age: float) -> Callable[[Request], Session]:
    """A dependency returning the session when the user authenticated within ``max_age`` seconds
    (and no risk rule asked for a step-up); otherwise 401 with the JSON detail
    ``"reauthentication-required"`` (no ``WWW-Authenticate``: this is not HTTP authentication).
    """
    if isinstance(max_age, bool) or not isinstance(max_age, int | float) or max_age <= 0:
        raise ValueError("max_age must be a positive number of seconds")

    def recently_authenticated(request: Request) -> Session:
        session = get_session(request)
        try:
            session.require_recent_auth(max_age)
        except ReauthenticationRequired:
            raise HTTPException(status_code=401, detail="reauthentication-required") from None
        return session

    return recently_authenticated


def json_only(request: Request) -> None:
    """A dependency refusing (415) an unsafe request whose body is not JSON: a JSON API must not
    accept what a cross-site form can send. ``@app.post("/x", dependencies=[JsonOnly])``."""
    if json_body_refusal(
        request.method, single_content_type(request.headers.getlist("content-type"))
    ):
        raise HTTPException(status_code=415, detail=UNSUPPORTED_MEDIA_TYPE)


#: ``dependencies=[JsonOnly]`` on a route or router: JSON bodies only (415 otherwise).
JsonOnly = Depends(json_only)


def unsafe_methods_only(request: Request) -> None:
    """A dependency refusing (405, with ``Allow``) a GET, HEAD, OPTIONS or TRACE: a route that
    changes state must not be reachable by a link or an ``<img>``. For a route registered with
    several methods (``@app.api_route(..., dependencies=[UnsafeMethodsOnly])``) or a router."""
    if safe_method_refused(request.method):
        raise HTTPException(status_code=405, detail=METHOD_NOT_ALLOWED, headers={"allow": ALLOW})


#: ``dependencies=[UnsafeMethodsOnly]`` on a route or router: 405 for safe methods.
UnsafeMethodsOnly = Depends(unsafe_methods_only)


def csrf_token(request: Request) -> str:
    """A freshly masked CSRF token for this session (send it back as ``X-CSRF-Token``)."""
    return get_context(request).csrf_token()


def csp_nonce(request: Request) -> str:
    """This response's CSP nonce, for ``<script nonce="...">`` in an HTML response."""
    return get_context(request).nonce


def warden(request: Request) -> SessionWardenMiddleware:
    """The middleware, for ``list_sessions``, ``revoke_session``, ``revoke_user``."""
    return get_middleware(request)


CurrentSession = Annotated[Session, Depends(current_session)]
SignedInUser = Annotated[str, Depends(signed_in_user)]
CsrfToken = Annotated[str, Depends(csrf_token)]
CspNonce = Annotated[str, Depends(csp_nonce)]
Warden = Annotated[SessionWardenMiddleware, Depends(warden)]


# -- /docs and /redoc under the strict CSP ---------------------------------------------------------

#: The files served from ``fastapi-offline``'s bundled copies: URL name -> content type.
DOCS_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
_OPENING_TAG = re.compile(r"<(script|style)(?=[\s>])")


@functools.cache
def _docs_asset(name: str) -> bytes:
    try:
        files = resources.files("fastapi_offline")
    except ModuleNotFoundError:
        raise RuntimeError(
            "serve_docs needs the fastapi-offline package: pip install 'sessionwarden[fastapi]'"
        ) from None
    return files.joinpath("static", name).read_bytes()


def _with_nonce(page: HTMLResponse, nonce: str) -> HTMLResponse:
    """``page`` with the nonce on every ``<script>`` and ``<style>``: they run under the CSP."""
    html = bytes(page.body).decode("utf-8")
    html = _OPENING_TAG.sub(lambda m: f'<{m.group(1)} nonce="{nonce}"', html)
    return HTMLResponse(html, status_code=page.status_code)


def _js(value: str) -> str:
    """``value`` as a JavaScript string literal that cannot end the ``<script>`` element."""
    return json.dumps(value).replace("<", "\\u003c")


def _redoc_page(*, title: str, openapi_url: str, assets: str, nonce: str) -> HTMLResponse:
    """ReDoc, started by a nonced script with ReDoc's ``nonce`` option, so the styles it adds
    at run time carry the nonce too (a ``<redoc>`` element cannot pass it: browsers hide nonce
    attributes from scripts)."""
    a = html.escape
    page = (
        "<!DOCTYPE html>\n<html>\n<head>\n"
        f"<title>{a(title)}</title>\n"
        '<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<link rel="shortcut icon" href="{a(assets)}/favicon.png">\n'
        f'<style nonce="{a(nonce)}">body {{ margin: 0; padding: 0; }}</style>\n'
        "</head>\n<body>\n"
        '<div id="redoc"></div>\n'
        f'<script nonce="{a(nonce)}" src="{a(assets)}/redoc.standalone.js"></script>\n'
        f'<script nonce="{a(nonce)}">Redoc.init({_js(openapi_url)}, {{nonce: {_js(nonce)}}}, '
        'document.getElementById("redoc"));</script>\n'
        "</body>\n</html>\n"
    )
    return HTMLResponse(page)


def serve_docs(
    app: FastAPI,
    *,
    docs_url: str | None = "/docs",
    redoc_url: str | None = "/redoc",
    assets_url: str = "/docs-assets",
) -> None:
    """Serve Swagger UI at ``docs_url`` and ReDoc at ``redoc_url`` under sessionwarden's CSP.

    Create the app with ``FastAPI(docs_url=None, redoc_url=None)`` (FastAPI's own pages would load
    a CDN's scripts and run an inline one, which the CSP blocks). The pages made here carry this
    response's CSP nonce on their scripts; the scripts and styles are served from
    ``assets_url`` out of the ``fastapi-offline`` package, so nothing is loaded from another
    origin and the policy of every route stays as it is. ``None`` leaves a page out.
    """
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError(
            "create the app with FastAPI(docs_url=None, redoc_url=None): serve_docs serves the "
            "documentation pages itself"
        )
    _docs_asset("swagger-ui-bundle.js")  # fails now, not on the first visit, when not installed
    openapi_url = app.openapi_url or "/openapi.json"
    assets = assets_url.rstrip("/")

    async def asset(name: str) -> Response:
        if name not in DOCS_ASSETS:
            return Response(b"Not Found", status_code=404, media_type="text/plain")
        return Response(
            _docs_asset(name),
            media_type=DOCS_ASSETS[name],
            headers={"cache-control": "public, max-age=86400"},
        )

    app.add_api_route(assets + "/{name}", asset, methods=["GET"], include_in_schema=False)
    if docs_url is not None:
        oauth2_url = app.swagger_ui_oauth2_redirect_url

        async def swagger(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            page = get_swagger_ui_html(
                openapi_url=root + openapi_url,
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{root}{assets}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{assets}/swagger-ui.css",
                swagger_favicon_url=f"{root}{assets}/favicon.png",
                oauth2_redirect_url=root + oauth2_url if oauth2_url else None,
                swagger_ui_parameters=app.swagger_ui_parameters,
            )
            return _with_nonce(page, csp_nonce(request))

        app.add_api_route(docs_url, swagger, methods=["GET"], include_in_schema=False)
        if oauth2_url:

            async def oauth2_redirect(request: Request) -> HTMLResponse:
                return _with_nonce(get_swagger_ui_oauth2_redirect_html(), csp_nonce(request))

            app.add_api_route(
                oauth2_url, oauth2_redirect, methods=["GET"], include_in_schema=False
            )
    if redoc_url is not None:

        async def redoc(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            return _redoc_page(
                title=f"{app.title} - ReDoc",
                openapi_url=root + openapi_url,
                assets=root + assets,
                nonce=csp_nonce(request),
            )

        app.add_api_route(redoc_url, redoc, methods=["GET"], include_in_schema=False)
