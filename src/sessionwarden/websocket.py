"""WebSocket handshakes: the origin check, the session, and the connection's end with it.

:class:`~sessionwarden.asgi.SessionWardenMiddleware` hands every ``websocket`` scope to
:func:`serve_websocket` (unless ``Policy.websocket.enabled`` is off). Before the application
sees the handshake:

1. **Origin.** A page of any site can open a WebSocket to this one, and the browser sends the
   user's cookies with it (cross-site WebSocket hijacking): the same-origin policy does not
   apply to WebSockets. So the handshake must come from this origin, judged exactly as the
   cross-origin check of unsafe HTTP requests does (:func:`sessionwarden.csrf.origin_verdict`:
   ``Sec-Fetch-Site``, then ``Origin`` against the request's own scheme, host and port, then the
   policy's ``csrf.trusted_origins``). A handshake without ``Origin`` comes from no browser; it
   is refused unless ``Policy.websocket.allow_non_browser``.
2. **Session.** Loaded by the same code as an HTTP request's (:meth:`Guard.begin`: cookie
   parsing, strict IDs, timeouts, fingerprint and risk, the unknown-ID throttle). A handshake
   whose cookie names no live session (unknown, revoked, logged out, expired, rotated out past
   its grace, revoked for risk) is refused, and the refusal clears the cookie. A handshake with
   no cookie at all gets an anonymous session; the application decides what it may do.

A refusal is an HTTP response to the handshake (403, 429, 503 …) where the server supports the
ASGI ``websocket.http.response`` extension (uvicorn, hypercorn, daphne), else a close before
accepting (servers answer it with 403).

The session is ``scope["session"]`` (``websocket.session`` in Starlette, :func:`get_session`) and
is **read-only** by default: nothing the application changes is written, and the handshake
writes nothing (no ``last_seen`` refresh: WebSocket messages do not extend the idle timeout).
An application that wants a change kept calls :func:`save_session`, which writes it without a
cookie (see :func:`sessionwarden.core.live.save_without_cookie`).

While the connection is open its session is watched (:mod:`sessionwarden.live`); when the
session ends, the connection is closed with code 1008 (policy violation) and the reason
``session ended``; when a risk decision demands that its user sign in again (``MonitorPolicy``
action ``"step_up"``), with code 1008 and the reason ``reauthentication required``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from . import csrf
from .core.live import STEP_UP_REQUIRED, CookieNeeded, save_without_cookie
from .events import EventKind
from .guard import Refusal, RequestContext
from .live import Connection
from .stores import StoreUnavailable

if TYPE_CHECKING:
    from .asgi import SessionWardenMiddleware

__all__ = [
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_REAUTHENTICATE",
    "CLOSE_SESSION_ENDED",
    "CookieNeeded",
    "close_reason",
    "save_session",
    "serve_websocket",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: RFC 6455 section 7.4.1: the endpoint received something that violates its policy.
CLOSE_POLICY_VIOLATION = 1008
#: The close reason when the session ended (signed out, revoked, timed out, evicted, ...).
CLOSE_SESSION_ENDED = "session ended"
#: The close reason when a risk decision demands that the user sign in again: the session is
#: not over, but nothing of it is served until then (HTTP requests get ``reauth_required``).
CLOSE_REAUTHENTICATE = "reauthentication required"
_HTTP_SCHEME = {"ws": "http", "wss": "https"}
_DENIAL = "websocket.http.response"


async def serve_websocket(
    mw: SessionWardenMiddleware, scope: Scope, receive: Receive, send: Send
) -> None:
    """Check the handshake, then run the application with the session while it is live."""
    guard = mw.guard
    client = scope.get("client")
    scheme = scope.get("scheme", "ws")
    facts = guard.facts(
        method="GET",
        scheme=_HTTP_SCHEME.get(scheme) or str(scheme),
        path=scope.get("path", "/"),
        peer_ip=client[0] if client else "",
        headers=scope.get("headers") or (),
    )
    ctx = RequestContext(facts)
    refusal = _origin_refusal(mw, ctx)
    if refusal is None:
        try:
            ctx = await mw.run(guard.begin(facts, ""))
        except StoreUnavailable as exc:
            refusal = guard.store_failed(facts, exc, writing=False)
        else:
            refusal = _session_refusal(ctx)
    if refusal is not None:
        _report(mw, ctx, refusal)
        await _deny(mw, scope, receive, send, ctx, refusal)
        return
    session = ctx.session
    assert session is not None
    scope["session"] = session
    scope["sessionwarden"] = ctx
    scope["sessionwarden.middleware"] = mw
    record = session.record
    if record is None:
        await mw.app(scope, receive, send)
        return

    async def close(reason: str) -> None:
        await send(
            {
                "type": "websocket.close",
                "code": CLOSE_POLICY_VIOLATION,
                "reason": close_reason(reason),
            }
        )

    conn = Connection("websocket", facts, session.user_id, close, lineage=record.lineage)
    mw.watcher.watch(record.key, conn)
    try:
        await mw.app(scope, receive, send)
    finally:
        mw.watcher.unwatch(conn)


def close_reason(ended: str) -> str:
    """The close reason sent to the client for the watcher's reason ``ended``."""
    return CLOSE_REAUTHENTICATE if ended == STEP_UP_REQUIRED else CLOSE_SESSION_ENDED


def _origin_refusal(mw: SessionWardenMiddleware, ctx: RequestContext) -> Refusal | None:
    """Refuse a handshake from another origin, or from no browser unless the policy allows."""
    verdict = csrf.origin_verdict(ctx.facts, mw.policy.csrf)
    if verdict.reason == "no-browser-headers":
        if mw.policy.websocket.allow_non_browser:
            return None
        return Refusal(403, "cross-origin", "missing-origin")
    return None if verdict.ok else Refusal(403, "cross-origin", verdict.reason)


def _session_refusal(ctx: RequestContext) -> Refusal | None:
    """The guard's own refusal (throttled, plain HTTP), or a cookie that named no live session
    (the load cleared it: unknown, ended, expired, rotated out, revoked for risk, malformed)."""
    if ctx.refusal is not None:
        return ctx.refusal
    if ctx.clear_cookie:
        return Refusal(403, "session-ended", "no-live-session")
    return None


def _report(mw: SessionWardenMiddleware, ctx: RequestContext, refusal: Refusal) -> None:
    session = ctx.session
    record = session.record if session is not None else None
    mw.engine.emit(
        EventKind.WEBSOCKET_REFUSED,
        ctx.facts,
        mw.engine.clock.now(),
        key=record.key if record is not None else "",
        lineage=record.lineage if record is not None else "",
        user_id=record.user_id if record is not None else None,
        reason=refusal.reason,
        detail={"status": refusal.status, "error": refusal.error},
    )


async def _deny(
    mw: SessionWardenMiddleware,
    scope: Scope,
    receive: Receive,
    send: Send,
    ctx: RequestContext,
    refusal: Refusal,
) -> None:
    """Answer the handshake with the refusal as an HTTP response where the server can send one,
    else close it before accepting (the server answers 403)."""
    message = await receive()
    if message.get("type") != "websocket.connect":
        return  # the client went away first
    if _DENIAL not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})
        return
    hdrs, body = mw.guard.refuse(ctx, refusal)
    await send({"type": "websocket.http.response.start", "status": refusal.status, "headers": hdrs})
    await send({"type": "websocket.http.response.body", "body": body})


async def save_session(scope_or_websocket: Any) -> bool:
    """Write what the application changed in an open WebSocket's session (data, and
    ``last_seen`` at most once per touch interval). A logout ends the session (and so this
    connection at the next check). A login or an explicit rotation raises :class:`CookieNeeded`:
    only an HTTP response can carry the new cookie. Returns whether anything was written."""
    scope = getattr(scope_or_websocket, "scope", scope_or_websocket)
    mw = scope.get("sessionwarden.middleware")
    ctx = scope.get("sessionwarden")
    if mw is None or not isinstance(ctx, RequestContext) or ctx.session is None:
        raise RuntimeError("SessionWardenMiddleware is not installed on this app")
    written: bool = await mw.run(save_without_cookie(mw.engine, ctx.session, ctx.facts))
    return written
