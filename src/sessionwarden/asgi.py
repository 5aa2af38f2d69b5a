"""Pure ASGI 3 middleware: no framework import, the whole policy in :mod:`sessionwarden.guard`.

    app = SessionWardenMiddleware(app, policy=Policy(secret_keys=(key,)), store="sqlite:///s.db")

The session is available as ``scope["session"]`` (Starlette's ``request.session`` works), the
request context as ``scope["sessionwarden"]``, and for templates ``scope["state"]["csp_nonce"]``
and ``scope["state"]["csrf_token"]`` (a callable returning a freshly masked token).
``scope["state"]["session_ended"]`` (Starlette's ``request.state.session_ended``) says why the
session the request presented ended (``"idle"``, ``"signed-out"``, ...; see
:mod:`sessionwarden.core.ended`), else ``None``. ``render_refusal`` renders the guard's refusal
pages (see :data:`sessionwarden.guard.RefusalRenderer`).
The session is committed when the application starts its response, before any header is sent,
so a store failure still becomes a clean 503 and a cookie is never issued for a session that was
not stored.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from collections.abc import Set as AbstractSet
from typing import Any, TypeVar

from .clock import Clock
from .core import (
    HttpsRequired,
    Outcome,
    ReauthenticationRequired,
    Session,
    SessionInfo,
    Steps,
    run_async,
)
from .events import EventSink
from .facts import RequestFacts
from .guard import Guard, Refusal, RefusalRenderer, RequestContext
from .headers import NOTHING_TO_DROP
from .live import Connection, SessionEnded, Watcher
from .policy import Policy
from .records import JSON
from .stores import AsyncSessionStore, SessionLimitReached, StoreUnavailable, open_async_store
from .websocket import serve_websocket

T = TypeVar("T")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _async_store(store: object) -> AsyncSessionStore:
    """``store`` when its methods are coroutines; a synchronous store is refused at once (its
    first write would otherwise fail inside a request), naming what to pass instead."""
    if inspect.iscoroutinefunction(getattr(store, "get", None)):
        return store  # type: ignore[return-value]
    name = type(store).__name__
    raise TypeError(
        f"SessionWardenMiddleware needs an asynchronous store, and {name} is synchronous: "
        f"pass InlineAsyncStore({name}(...)) (from sessionwarden import InlineAsyncStore) "
        "or a store URL such as 'memory://', 'sqlite:///sessions.db' or "
        "'redis://127.0.0.1:6379/0'"
    )


class SessionWardenMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        policy: Policy,
        store: AsyncSessionStore | str,
        clock: Clock | None = None,
        sink: EventSink | None = None,
        reauth_redirect: str | None = None,
        render_refusal: RefusalRenderer | None = None,
    ) -> None:
        self.app = app
        self.policy = policy
        self.store = open_async_store(store) if isinstance(store, str) else _async_store(store)
        self.guard = Guard(
            policy,
            clock=clock,
            sink=sink,
            render_refusal=render_refusal,
            reauth_redirect=reauth_redirect,
        )
        self.engine = self.guard.engine
        self.reauth_redirect = reauth_redirect
        #: Open WebSockets and event streams by session, closed when their session ends.
        self.watcher = Watcher(self.engine, self.run, policy.websocket.check_interval)
        # Starlette and FastAPI apps answer exceptions themselves; teach them ours (duck-typed:
        # no framework import here).
        add_handler = getattr(app, "add_exception_handler", None)
        if callable(add_handler):
            add_handler(ReauthenticationRequired, self._raised_exception_handler)
            add_handler(HttpsRequired, self._raised_exception_handler)

    def run(self, steps: Steps[T]) -> Awaitable[T]:
        """Run a core operation against the store (the one driver)."""
        return run_async(steps, self.store)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._not_http(scope, receive, send)
            return
        guard = self.guard
        facts = _facts(guard, scope)
        target = _target(scope, facts.path) if guard.may_redirect(facts) else ""
        try:
            ctx = await run_async(guard.begin(facts, target), self.store)
        except StoreUnavailable as exc:
            refusal = guard.store_failed(facts, exc, writing=False)
            await _drain_body(receive, self.policy.csrf.max_body_bytes)
            await _send_refusal(guard, send, RequestContext(facts), refusal)
            return
        if guard.outage.failing:  # the store answered: that may end an outage
            guard.store_ok(facts, wrote=False)
        if ctx.needs_form_token and ctx.refusal is None:
            receive = await self._check_form_body(receive, ctx)
        if ctx.answered:
            await _drain_body(receive, self.policy.csrf.max_body_bytes, ctx.refusal)
            await self._answer(send, ctx)
            return
        state = _install(scope, ctx, self)
        responder = _Responder(self, ctx, send)
        try:
            await self.app(scope, receive, responder)
        except (ReauthenticationRequired, HttpsRequired) as exc:
            if responder.started:
                raise
            await self._refuse_raised(send, ctx, exc)
        except Exception:
            if not responder.ended:  # else: the stream ended with its session (SessionEnded)
                if not responder.started and not _app_answers_errors(scope):
                    await _send_server_error(guard, send, ctx)
                raise  # for the server to log (it sends nothing more: the response is complete)
        finally:
            if responder.stream is not None:
                self.watcher.unwatch(responder.stream)
        # The request is over: let its objects go now. Servers keep the last scope of each
        # connection until the next request on it; left there, these objects would outlive
        # the request and feed the cyclic garbage collector's older generations (full
        # collections of the whole heap, tens of milliseconds each, under load). An exception
        # leaves them for error reporters.
        scope.pop("session", None)
        scope.pop("sessionwarden", None)
        state.pop("csp_nonce", None)
        state.pop("csrf_token", None)
        state.pop("session_ended", None)

    async def _not_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket (guarded when the policy says so) or anything else (lifespan: passed on)."""
        if scope["type"] == "websocket" and self.policy.websocket.enabled:
            await serve_websocket(self, scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _check_form_body(self, receive: Receive, ctx: RequestContext) -> Receive:
        """Check the token of a form body; the app gets the buffered body as it came."""
        try:
            body = await self._read_body(receive, ctx)
        except _BodyCut as cut:
            # The token is judged first (a refusal says why), but even a valid one never lets
            # the app run on part of a form.
            self.guard.check_form_body(ctx, cut.partial)
            self.guard.body_truncated(ctx)
            return receive
        if body is None:
            self.guard.body_too_large(ctx)
            return receive
        self.guard.check_form_body(ctx, body)
        return _replay(body, receive)

    # -- the application's calls (a "your devices" page, an admin screen) ------------------------
    async def list_sessions(
        self, user_id: str, current: Session | None = None
    ) -> list[SessionInfo]:
        """The user's live sessions, oldest first, ``current`` marked."""
        return await self.run(self.engine.list_sessions(user_id, current))

    async def revoke_session(self, user_id: str, ref: str, *, by: str = "user") -> bool:
        """End one of the user's sessions, named by its reference."""
        return await self.run(self.engine.revoke_session(user_id, ref, by=by))

    async def revoke_user(
        self, user_id: str, *, by: str = "admin", keep: Session | None = None
    ) -> list[str]:
        """End every session of the user (but ``keep``); returns the references ended."""
        return await self.run(self.engine.revoke_user(user_id, by=by, keep=keep))

    async def activity(self, session: Session) -> list[dict[str, JSON]]:
        """The session's recent activity trail (time, IP, user agent, path), oldest first."""
        if session.record is None:
            return []
        return await self.store.activity(session.record.key)

    async def purge(self) -> int:
        return await self.run(self.engine.purge())

    # -- helpers ------------------------------------------------------------------------------
    async def _answer(self, send: Send, ctx: RequestContext) -> None:
        """The guard's answer instead of the app's: a refusal, or a DBSC endpoint's answer
        committed like any response (see :meth:`Guard.answer`)."""
        guard = self.guard
        if ctx.refusal is not None:
            await _send_refusal(guard, send, ctx, ctx.refusal)
            return
        try:
            outcome = await self.run(guard.commit(ctx))
        except (StoreUnavailable, SessionLimitReached) as exc:
            await _send_refusal(guard, send, ctx, guard.commit_failed(ctx, exc))
            return
        if guard.outage.failing:
            guard.store_ok(ctx.facts, wrote=outcome.wrote)
        status, hdrs, body = guard.answer(ctx, outcome)
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})

    async def _refuse_raised(
        self, send: Send, ctx: RequestContext, exc: ReauthenticationRequired | HttpsRequired
    ) -> None:
        """Answer what the application raised (:meth:`Guard.refusal_for`: 401 or 303 to the
        sign-in page, 403 for a sign-in over plain HTTP); what the view stored in the session
        before raising (where to return to) is committed like any response."""
        guard = self.guard
        refusal = guard.refusal_for(ctx, exc, self.reauth_redirect)
        hdrs, body = self.guard.render(ctx, refusal)
        try:
            outcome = await self.run(guard.commit(ctx))
        except (StoreUnavailable, SessionLimitReached) as commit_exc:
            await _send_refusal(guard, send, ctx, guard.commit_failed(ctx, commit_exc))
            return
        hdrs, _ = _with_guard_headers(guard, ctx, outcome, hdrs)
        await send({"type": "http.response.start", "status": refusal.status, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})

    async def _raised_exception_handler(self, request: Any, exc: Exception) -> ASGIApp:
        """Registered on Starlette/FastAPI apps (their error middleware would otherwise turn
        :class:`ReauthenticationRequired` or :class:`HttpsRequired` into a 500 before this
        middleware sees it). Returns an ASGI response whose start passes through the session
        commit like any other."""
        ctx = get_context(request)
        assert isinstance(exc, ReauthenticationRequired | HttpsRequired)
        refusal = self.guard.refusal_for(ctx, exc, self.reauth_redirect)
        hdrs, body = self.guard.render(ctx, refusal)

        async def respond(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": refusal.status, "headers": hdrs})
            await send({"type": "http.response.body", "body": body})

        return respond

    async def _read_body(self, receive: Receive, ctx: RequestContext) -> bytes | None:
        """Buffer the body up to the configured limit; ``None`` when it is larger. Raises
        :class:`_BodyCut` when the client disconnects before the body's end."""
        limit = self.policy.csrf.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _BodyCut(b"".join(chunks))
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _BodyCut(Exception):
    """The client disconnected in the middle of the body."""

    def __init__(self, partial: bytes) -> None:
        super().__init__("request body cut by a disconnect")
        self.partial = partial


class _Responder:
    """The ``send`` the application gets: commits the session when the response starts and
    adds the headers. An object with slots rather than a closure: a closure would allocate a
    cell per captured variable on every request (work for the garbage collector)."""

    __slots__ = ("ctx", "ended", "middleware", "replaced", "send", "started", "stream")

    def __init__(self, middleware: SessionWardenMiddleware, ctx: RequestContext, send: Send):
        self.middleware = middleware
        self.ctx = ctx
        self.send = send
        self.started = False
        self.replaced = False
        #: An event stream of a session: watched, and ended with the session.
        self.stream: Connection | None = None
        self.ended = False

    def __call__(self, message: Message) -> Awaitable[None]:
        """The app's ``send``: the response's start goes through the commit; any other message
        goes on as it is, as the server's own awaitable (no coroutine of ours around it)."""
        if self.ended:
            raise SessionEnded("the session of this event stream ended")
        if self.replaced:
            return _dropped()  # the app's response was replaced by a refusal; drop its body
        if message["type"] == "http.response.start" and not self.started:
            return self._start(message)
        return self.send(message)

    async def _start(self, message: Message) -> None:
        """Commit the session, then send the response's start with the guard's headers."""
        self.started = True
        mw = self.middleware
        guard = mw.guard
        ctx = self.ctx
        try:
            outcome = await run_async(guard.commit(ctx), mw.store)
        except (StoreUnavailable, SessionLimitReached) as exc:
            self.replaced = True  # the app's response is replaced: its body is dropped
            await _send_refusal(guard, self.send, ctx, guard.commit_failed(ctx, exc))
            return
        if guard.outage.failing:
            guard.store_ok(ctx.facts, wrote=outcome.wrote)
        headers, content_type = _with_guard_headers(
            guard, ctx, outcome, message.get("headers") or []
        )
        message["headers"] = headers
        await self.send(message)
        if _is_event_stream(ctx, content_type, mw.policy.websocket.end_event_streams):
            self._watch(mw)

    def _watch(self, mw: SessionWardenMiddleware) -> None:
        session = self.ctx.session
        assert session is not None and session.record is not None
        record = session.record
        self.stream = Connection(
            "event-stream", self.ctx.facts, session.user_id, self._end, lineage=record.lineage
        )
        mw.watcher.watch(record.key, self.stream)

    async def _end(self, reason: str) -> None:
        """End the event stream: the client sees its end at once; the application's next
        ``send`` raises :class:`SessionEnded` (a disconnected client's does too)."""
        if self.ended:
            return
        self.ended = True
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})


def _is_event_stream(ctx: RequestContext, content_type: bytes | None, enabled: bool) -> bool:
    """Whether a response of a stored session is a ``text/event-stream`` to watch."""
    if not enabled or content_type is None:
        return False
    session = ctx.session
    if session is None or session.record is None:
        return False
    return content_type.lstrip().lower().startswith(b"text/event-stream")


async def _dropped() -> None:
    """What the app's ``send`` awaits once its response was replaced: nothing is sent."""


def _facts(guard: Guard, scope: Scope) -> RequestFacts:
    client = scope.get("client")
    return guard.facts(
        method=scope.get("method", "GET"),
        scheme=scope.get("scheme", "http"),
        path=scope.get("path", "/"),
        peer_ip=client[0] if client else "",
        headers=scope.get("headers") or (),
    )


def _install(scope: Scope, ctx: RequestContext, middleware: SessionWardenMiddleware) -> Any:
    """Put the session and the request context where the app finds them; returns the
    scope's ``state``."""
    scope["session"] = ctx.session
    scope["sessionwarden"] = ctx
    scope["sessionwarden.middleware"] = middleware
    state = scope.get("state")
    if state is None:
        state = scope["state"] = {}
    state["csp_nonce"] = ctx.nonce
    state["csrf_token"] = ctx.csrf_token
    state["session_ended"] = ctx.session_ended
    return state


def _with_guard_headers(
    guard: Guard, ctx: RequestContext, outcome: Outcome, app_headers: Any
) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
    """The app's response headers with the guard's added (and the ones it replaces dropped),
    and the app's ``Content-Type`` (``None`` when it set none), read on the same pass."""
    headers = list(app_headers)
    watched = guard.response_header_names
    content_type: bytes | None = None
    ours = False
    vary: list[bytes] = []
    for name, value in headers:
        name = name.lower()
        if name == b"content-type":
            if content_type is None:
                content_type = value
        elif name in watched:
            ours = True
            if name == b"vary":
                vary.append(value)
    # The app set one of ours: tell the guard all its names (else: none of them matter).
    existing: AbstractSet[bytes] = (
        {name.lower() for name, _ in headers} if ours else NOTHING_TO_DROP
    )
    add, drop = guard.response_headers(ctx, outcome, existing, b", ".join(vary))
    if drop:
        headers = [(n, v) for n, v in headers if n.lower() not in drop]
    headers.extend(add)
    return headers, content_type


async def _drain_body(receive: Receive, limit: int, refusal: Refusal | None = None) -> None:
    """Before answering in the application's place: read what is left of the request body, at
    most ``limit`` bytes, and drop it. A server may otherwise end the connection under the
    answer: hypercorn (0.16 to 0.18 at least), over HTTP/2, ends the whole connection, every
    other request on it included, when body data arrives for a stream it has answered
    (``KeyError`` in its ``_handle_events``), and over HTTP/1.1 with TLS closes it and reports
    the body that kept coming as an error of the application (``APPLICATION_DATA_AFTER_CLOSE_
    NOTIFY``). A body already read (a form checked for its token) is the buffered one, read at
    once; a request without a body ends at the first message. A body found larger than the
    limit (``refusal`` 413) is not read on: reading it is what the limit refuses."""
    if refusal is not None and refusal.status == 413:
        return
    size = 0
    while size <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client is gone
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _send_refusal(guard: Guard, send: Send, ctx: RequestContext, refusal: Refusal) -> None:
    hdrs, body = guard.refuse(ctx, refusal)
    await send({"type": "http.response.start", "status": refusal.status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


def _app_answers_errors(scope: Scope) -> bool:
    """Whether an error page of the application's own waits outside this middleware: a
    Starlette or FastAPI app that runs it as a middleware entry (the app put itself in
    ``scope["app"]`` first) in debug mode (its traceback page) or with a handler for 500 or
    ``Exception``. Its error middleware then answers, as before, without our headers."""
    app = scope.get("app")
    if app is None:
        return False
    if getattr(app, "debug", False) is True:
        return True
    handlers = getattr(app, "exception_handlers", None)
    return isinstance(handlers, dict) and (500 in handlers or Exception in handlers)


async def _send_server_error(guard: Guard, send: Send, ctx: RequestContext) -> None:
    """An app that raised before starting its response gets a 500 with the security headers
    and no detail of the error, as Starlette's default error middleware answers (a bare ASGI
    app has none; a Starlette app installing this middleware as an entry has it outside,
    where its 500 would miss our headers). Nothing is committed. A failed send (the client is
    gone) must not hide the app's exception."""
    with contextlib.suppress(Exception):
        await _send_refusal(guard, send, ctx, Refusal(500, "internal-error"))


def _target(scope: Scope, path: str) -> str:
    """The request target (path and query) as the client sent it."""
    target = (scope.get("raw_path") or b"").decode("latin-1") or path
    if qs := scope.get("query_string"):
        target = f"{target}?{qs.decode('latin-1')}"
    return target


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the buffered body to the app once, unchanged, then defers."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _installed(scope_or_request: Any, name: str, kind: type[T]) -> T:
    """``scope[name]`` of an ASGI scope or of a Starlette/FastAPI request, checked to be what the
    middleware put there."""
    scope = getattr(scope_or_request, "scope", scope_or_request)
    value = scope.get(name)
    if not isinstance(value, kind):
        raise RuntimeError("SessionWardenMiddleware is not installed on this app")
    return value


def get_session(scope_or_request: Any) -> Session:
    """The session of an ASGI scope or of a Starlette/FastAPI request."""
    return _installed(scope_or_request, "session", Session)


def get_middleware(scope_or_request: Any) -> SessionWardenMiddleware:
    """The middleware serving a request (for :meth:`SessionWardenMiddleware.list_sessions` …)."""
    return _installed(scope_or_request, "sessionwarden.middleware", SessionWardenMiddleware)


def get_context(scope_or_request: Any) -> RequestContext:
    """The request's context: its CSP nonce, a CSRF token maker, the facts the guard used, and
    ``session_ended``: why the session the request presented ended, if it did."""
    return _installed(scope_or_request, "sessionwarden", RequestContext)
