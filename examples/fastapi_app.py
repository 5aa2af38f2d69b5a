"""sessionwarden in FastAPI: a JSON API with sign-in, re-authentication and a devices list.
Run: uvicorn --factory examples.fastapi_app:create_app  (see docs/fastapi.md)"""

import hmac
import os
import secrets
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException
from pydantic import BaseModel

from sessionwarden import Policy, Session
from sessionwarden.asgi import SessionWardenMiddleware
from sessionwarden.integrations.fastapi import CsrfToken, CurrentSession, SignedInUser, Warden
from sessionwarden.integrations.fastapi import recent_authentication, serve_docs

USERS = {"alice": "wonderland"}  # demo only: keep password hashes (argon2id) in a real app
RecentSession = Annotated[Session, Depends(recent_authentication(300))]  # 5 minutes


class Credentials(BaseModel):
    user: str = ""
    password: str


def check(user: str, password: str) -> bool:
    return hmac.compare_digest(USERS.get(user, "\0").encode(), password.encode())


def create_app(**options: Any) -> FastAPI:
    key = os.environ.get("SESSIONWARDEN_SECRET") or secrets.token_hex(32)  # random: demo only
    options.setdefault("policy", Policy(secret_keys=(key.encode(),)))
    options.setdefault("store", os.environ.get("SESSIONWARDEN_STORE", "memory://"))
    app = FastAPI(docs_url=None, redoc_url=None)
    serve_docs(app)  # /docs and /redoc under the strict CSP, no CDN (see docs/fastapi.md)
    # add_middleware, not a wrapper around the app: see "Where to install it" in docs/asgi.md
    app.add_middleware(SessionWardenMiddleware, **options)

    @app.get("/csrf")  # send it back as X-CSRF-Token on every POST
    def csrf(token: CsrfToken) -> dict[str, str]:
        return {"csrf_token": token}

    @app.post("/login")
    def login(body: Credentials, session: CurrentSession) -> dict[str, str]:
        if not check(body.user, body.password):
            raise HTTPException(401, "bad-credentials")
        session.login(body.user)  # a new session ID: no fixation
        return {"user": body.user}

    @app.post("/reauth")
    def reauth(body: Credentials, user: SignedInUser, session: CurrentSession) -> dict[str, str]:
        if not check(user, body.password):
            raise HTTPException(401, "bad-credentials")
        session.reauthenticated()  # a fresh auth time and a new session ID
        return {"user": user}

    @app.get("/me")
    def me(user: SignedInUser) -> dict[str, str]:  # 401 when anonymous
        return {"user": user}

    @app.post("/email")  # 401 "reauthentication-required" when the sign-in is too old
    def email(address: Annotated[str, Body(embed=True)], session: RecentSession) -> dict[str, str]:
        session["email"] = address
        return {"email": address}

    @app.get("/devices")
    async def devices(user: SignedInUser, session: CurrentSession, w: Warden) -> list[Any]:
        return [d.to_dict() for d in await w.list_sessions(user, session)]

    @app.post("/logout")
    def logout(session: CurrentSession) -> dict[str, bool]:
        session.logout()
        return {"ok": True}

    return app
