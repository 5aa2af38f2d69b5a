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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from ..asgi import SessionWardenMiddleware, get_context, get_middleware, get_session
from ..core import ReauthenticationRequired, Session

__all__ = [
    "CspNonce",
    "CsrfToken",
    "CurrentSession",
    "SignedInUser",
    "Warden",
    "csp_nonce",
    "csrf_token",
    "current_session",
    "recent_authentication",
    "signed_in_user",
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
