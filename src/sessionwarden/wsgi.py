"""WSGI middleware: the same guard as the ASGI one, driven synchronously.

    app.wsgi_app = SessionWardenWSGI(app.wsgi_app, policy=policy, store="sqlite:///s.db")

The session is ``environ["sessionwarden.session"]``; the request context (CSP nonce, CSRF token)
is ``environ["sessionwarden"]``; why the session the request presented ended (``"idle"``,
``"signed-out"``, ...; see :mod:`sessionwarden.core.ended`) is
``environ["sessionwarden.session_ended"]`` (``None`` when it did not). The session is committed
when the application calls ``start_response``, before the status line is passed on, so a store
failure becomes a clean 503.

An application that raises before it starts its response gets a 500 with the security headers
and no detail of the error (nothing is committed), as on ASGI: ``start_response`` gets the 500
with the exception as ``exc_info``, the body is sent, then the exception is raised from the
response iterable for the server to log (the response is complete by then; a test client that
raises ``exc_info`` at once sees the exception as before). ``app_answers_errors`` says when an
error page of the application's own waits outside (Flask's debug mode: the Werkzeug debugger);
the exception then passes unchanged.
"""

from __future__ import annotations

import functools
import io
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from types import TracebackType
from typing import Any
from urllib.parse import quote

from .clock import Clock
from .core import HttpsRequired, ReauthenticationRequired, Session, SessionInfo, run_sync
from .events import EventSink
from .facts import RequestFacts
from .guard import Guard, Refusal, RefusalRenderer, RequestContext
from .headers import NOTHING_TO_DROP
from .policy import Policy
from .records import JSON
from .stores import SessionLimitReached, SessionStore, StoreUnavailable, open_store

StartResponse = Callable[..., Callable[[bytes], object]]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_STATUS = {
    200: "200 OK",
    303: "303 See Other",
    400: "400 Bad Request",
    308: "308 Permanent Redirect",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    405: "405 Method Not Allowed",
    409: "409 Conflict",
    413: "413 Payload Too Large",
    429: "429 Too Many Requests",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}


def _str_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]


class SessionWardenWSGI:
    def __init__(
        self,
        app: WSGIApp,
        *,
        policy: Policy,
        store: SessionStore | str,
        clock: Clock | None = None,
        sink: EventSink | None = None,
        reauth_redirect: str | None = None,
        render_refusal: RefusalRenderer | None = None,
        app_answers_errors: Callable[[], bool] | None = None,
    ) -> None:
        self.app = app
        self.app_answers_errors = app_answers_errors
        self.policy = policy
        self.store: SessionStore = open_store(store) if isinstance(store, str) else store
        self.guard = Guard(
            policy,
            clock=clock,
            sink=sink,
            render_refusal=render_refusal,
            reauth_redirect=reauth_redirect,
        )
        self.engine = self.guard.engine
        self.reauth_redirect = reauth_redirect

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        guard = self.guard
        facts = environ_facts(guard, environ)
        try:
            target = _target(environ) if guard.may_redirect(facts) else ""
            ctx = run_sync(guard.begin(facts, target), self.store)
        except StoreUnavailable as exc:
            refusal = guard.store_failed(facts, exc, writing=False)
            return _refuse(guard, start_response, RequestContext(facts), refusal)
        guard.store_ok(facts, wrote=False)

        if ctx.needs_form_token and ctx.refusal is None:
            self._check_form_body(environ, ctx)
        if ctx.refusal is not None:
            return _refuse(guard, start_response, ctx, ctx.refusal)
        if ctx.dbsc_answer is not None:
            return self._answer(start_response, ctx)

        environ["sessionwarden.session"] = ctx.session
        environ["sessionwarden"] = ctx
        environ["sessionwarden.session_ended"] = ctx.session_ended
        environ["sessionwarden.middleware"] = self
        response = _Response(self, ctx, start_response)
        try:
            result = self.app(environ, response.start)
        except (ReauthenticationRequired, HttpsRequired) as exc:
            return self._refuse_raised(start_response, ctx, exc)
        except Exception:
            if response.started or self._errors_answered_outside():
                raise
            return _server_error(guard, start_response, ctx, _exc_info())
        if response.started:
            if response.failed is not None:
                _close(result)
                return _refuse(guard, start_response, ctx, response.failed)
            return result
        # The app will call start_response lazily, at its first iteration (PEP 3333 allows it).
        return response.lazy(result)

    def _errors_answered_outside(self) -> bool:
        return self.app_answers_errors is not None and self.app_answers_errors()

    def _check_form_body(self, environ: dict[str, Any], ctx: RequestContext) -> None:
        """Check the token of a form body; the app reads the buffered body as it came."""
        body, complete = self._read_body(environ)
        if body is None:
            self.guard.body_too_large(ctx)
            return
        self.guard.check_form_body(ctx, body)
        if not complete:
            self.guard.body_truncated(ctx)
            return
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))

    # -- the application's calls (a "your devices" page, an admin screen) ------------------------
    def list_sessions(self, user_id: str, current: Session | None = None) -> list[SessionInfo]:
        """The user's live sessions, oldest first, ``current`` marked."""
        return run_sync(self.engine.list_sessions(user_id, current), self.store)

    def revoke_session(self, user_id: str, ref: str, *, by: str = "user") -> bool:
        """End one of the user's sessions, named by its reference."""
        return run_sync(self.engine.revoke_session(user_id, ref, by=by), self.store)

    def revoke_user(
        self, user_id: str, *, by: str = "admin", keep: Session | None = None
    ) -> list[str]:
        """End every session of the user (but ``keep``); returns the references ended."""
        return run_sync(self.engine.revoke_user(user_id, by=by, keep=keep), self.store)

    def activity(self, session: Session) -> list[dict[str, JSON]]:
        """The session's recent activity trail (time, IP, user agent, path), oldest first."""
        return [] if session.record is None else self.store.activity(session.record.key)

    def purge(self) -> int:
        return run_sync(self.engine.purge(), self.store)

    # -- helpers ------------------------------------------------------------------------------
    def _answer(self, start_response: StartResponse, ctx: RequestContext) -> list[bytes]:
        """A DBSC endpoint's answer, committed like any response (see :meth:`Guard.answer`)."""
        guard = self.guard
        try:
            outcome = run_sync(guard.commit(ctx), self.store)
        except (StoreUnavailable, SessionLimitReached) as exc:
            return _refuse(guard, start_response, ctx, guard.commit_failed(ctx, exc))
        guard.store_ok(ctx.facts, wrote=outcome.wrote)
        status, hdrs, body = guard.answer(ctx, outcome)
        start_response(_STATUS.get(status, f"{status} OK"), _str_headers(hdrs))
        return [body]

    def _read_body(self, environ: dict[str, Any]) -> tuple[bytes | None, bool]:
        """The buffered body (``None`` when over the limit) and whether it is complete: a
        stream that ends before its Content-Length is a truncated body."""
        limit = self.policy.csrf.max_body_bytes
        stream = environ.get("wsgi.input")
        if stream is None:
            return b"", True
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        if length > limit:
            return None, True
        declared = length >= 0
        if not declared:
            # No length: only a server that marks the input as terminated (chunked bodies) can
            # be read to its end; anything else would block until the client hangs up.
            if not environ.get("wsgi.input_terminated"):
                return b"", True
            length = limit + 1
        body, ended = _read_up_to(stream, length)
        if len(body) > limit:
            return None, True
        return body, ended and (not declared or len(body) == length)

    def _refuse_raised(
        self,
        start_response: StartResponse,
        ctx: RequestContext,
        exc: ReauthenticationRequired | HttpsRequired,
    ) -> list[bytes]:
        """Answer what the application raised (:meth:`Guard.refusal_for`: 401 or 303 to the
        sign-in page, 403 for a sign-in over plain HTTP); what the view stored in the session
        before raising (where to return to) is committed like any response."""
        guard = self.guard
        refusal = guard.refusal_for(ctx, exc, self.reauth_redirect)
        hdrs, body = guard.render(ctx, refusal)
        try:
            outcome = run_sync(guard.commit(ctx), self.store)
        except (StoreUnavailable, SessionLimitReached) as commit_exc:
            return _refuse(guard, start_response, ctx, guard.commit_failed(ctx, commit_exc))
        add, drop = guard.response_headers(ctx, outcome, {n for n, _ in hdrs})
        kept = [(n, v) for n, v in hdrs if n not in drop]
        start_response(_STATUS.get(refusal.status, str(refusal.status)), _str_headers(kept + add))
        return [body]


def environ_facts(guard: Guard, environ: Mapping[str, Any]) -> RequestFacts:
    """The request's facts from a WSGI environ: the headers the guard reads, handed over as
    ASGI would send them (lower-case latin-1 bytes). Each is looked up by its CGI name
    (``HTTP_`` and the name in capitals, ``_`` for ``-``: how PEP 3333 servers name them),
    not found by scanning the whole environ."""
    headers: list[tuple[bytes, bytes]] = []
    for key, name in _environ_keys(guard.wanted_headers):
        value = environ.get(key)
        if value is not None:
            headers.append((name, value.encode("latin-1", "replace")))
    if environ.get("CONTENT_TYPE"):
        headers.append((b"content-type", environ["CONTENT_TYPE"].encode("latin-1", "replace")))
    return guard.facts(
        method=environ.get("REQUEST_METHOD", "GET"),
        scheme=environ.get("wsgi.url_scheme", "http"),
        path=_script_path(environ).encode("latin-1", "replace").decode("utf-8", "replace"),
        peer_ip=environ.get("REMOTE_ADDR", ""),
        headers=headers,
    )


@functools.lru_cache(maxsize=16)
def _environ_keys(wanted: frozenset[bytes]) -> tuple[tuple[str, bytes], ...]:
    """The environ key of each header name in ``wanted`` (a guard's, fixed for its life),
    with the name: ``x-csrf-token`` is ``HTTP_X_CSRF_TOKEN``. A name no server could hand over
    that way (one with ``_``, which the key's ``_`` would turn into ``-``) has none."""
    keys = []
    for name in sorted(wanted):
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        if key[5:].replace("_", "-").lower().encode("latin-1") == name:
            keys.append((key, name))
    return tuple(keys)


def _script_path(environ: Mapping[str, Any]) -> str:
    # PEP 3333 hands the path over as latin-1 decoded bytes; ASGI gives UTF-8 text.
    path: str = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    return path


def _target(environ: dict[str, Any]) -> str:
    """The request target (path and query) as the client sent it."""
    target: str | None = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if not target:
        target = quote(_script_path(environ).encode("latin-1", "replace"))
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
    return target


def _refuse(
    guard: Guard, start_response: StartResponse, ctx: RequestContext, refusal: Refusal
) -> list[bytes]:
    hdrs, body = guard.refuse(ctx, refusal)
    start_response(_STATUS.get(refusal.status, str(refusal.status)), _str_headers(hdrs))
    return [body]


def _exc_info() -> ExcInfo:
    """The exception being handled, as ``start_response`` takes it."""
    kind, exc, tb = sys.exc_info()
    assert kind is not None and exc is not None
    return kind, exc, tb


def _server_error(
    guard: Guard, start_response: StartResponse, ctx: RequestContext, exc_info: ExcInfo
) -> Iterator[bytes]:
    """The 500 of an app that raised before starting its response: the security headers, no
    detail of the error, nothing committed; then the app's exception, for the server to log
    (it sends nothing more: the response is complete). ``start_response`` gets ``exc_info``, as
    PEP 3333 asks of an error handler: a server replaces any headers not yet sent, a test
    client raises it at once."""
    hdrs, body = guard.refuse(ctx, Refusal(500, "internal-error"))
    start_response(_STATUS[500], _str_headers(hdrs), exc_info)
    yield body
    raise exc_info[1]


def _read_up_to(stream: Any, length: int) -> tuple[bytes, bool]:
    """Up to ``length`` bytes, and whether the stream ended cleanly: a short read is retried
    until the stream ends (some servers' inputs return less than asked before their end); a
    stream that fails (a malformed chunked body, a reset connection) is a truncated body."""
    chunks: list[bytes] = []
    size = 0
    while size < length:
        try:
            chunk: bytes = stream.read(length - size)
        except (OSError, ValueError):
            return b"".join(chunks), False
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), True


def _existing(guard: Guard, headers: list[tuple[str, str]]) -> tuple[AbstractSet[bytes], bytes]:
    """The lower-case names of the app's headers when one of them is a name the guard may set
    (else none of them matters to it: :meth:`Guard.response_headers`), as on ASGI, and the
    app's ``Vary`` values."""
    names = [n.lower().encode("latin-1") for n, _ in headers]
    if guard.response_header_names.isdisjoint(names):
        return NOTHING_TO_DROP, b""
    vary = [v for n, v in headers if n.lower() == "vary"]
    return set(names), ", ".join(vary).encode("latin-1")


def _discard(data: bytes) -> None:
    del data


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


class _Response:
    """The ``start_response`` handed to the app: commits the session exactly once, before the
    status line goes out, and turns a store failure into a 503 whenever the app starts."""

    __slots__ = ("ctx", "failed", "headers", "mw", "start_response", "started")

    def __init__(self, mw: SessionWardenWSGI, ctx: RequestContext, start_response: StartResponse):
        self.mw = mw
        self.ctx = ctx
        self.start_response = start_response
        self.started = False
        self.failed: Refusal | None = None
        self.headers: tuple[list[tuple[bytes, bytes]], AbstractSet[bytes]] | None = None

    def start(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        self.started = True
        guard = self.mw.guard
        if self.headers is None and self.failed is None:
            try:
                outcome = run_sync(guard.commit(self.ctx), self.mw.store)
            except (StoreUnavailable, SessionLimitReached) as exc:
                self.failed = guard.commit_failed(self.ctx, exc)
            else:
                guard.store_ok(self.ctx.facts, wrote=outcome.wrote)
                self.headers = guard.response_headers(self.ctx, outcome, *_existing(guard, headers))
        if self.failed is not None or self.headers is None:
            return _discard
        add, drop = self.headers
        if drop:
            headers = [(n, v) for n, v in headers if n.lower().encode("latin-1") not in drop]
        return self.start_response(status, headers + _str_headers(add), exc_info)

    def lazy(self, result: Iterable[bytes]) -> Iterator[bytes]:
        iterator = iter(result)
        try:
            try:
                first = next(iterator, None)
            except Exception:
                if self.started or self.mw._errors_answered_outside():
                    raise
                yield from _server_error(self.mw.guard, self.start_response, self.ctx, _exc_info())
                return
            if self.failed is not None:
                _close(result)
                yield from _refuse(self.mw.guard, self.start_response, self.ctx, self.failed)
                return
            if first is not None:
                yield first
            yield from iterator
        finally:
            _close(result)


def get_session(environ: dict[str, Any]) -> Session:
    session = environ.get("sessionwarden.session")
    if not isinstance(session, Session):
        raise RuntimeError("SessionWardenWSGI is not installed on this app")
    return session
