"""sessionwarden: server-side sessions that resist hijacking.

Strict, opaque, rotating session IDs kept only as keyed hashes; idle and absolute timeouts
enforced by the server; CSRF protection; security headers; anomaly detection and audit events;
memory, SQLite and Redis stores; ASGI and WSGI adapters.
"""

from .clock import Clock, ManualClock, SystemClock
from .core import (
    AliasActionRefused,
    Engine,
    HttpsRequired,
    ReauthenticationRequired,
    Session,
    SessionInfo,
    SessionValueError,
    StepUpRequired,
)
from .events import CallbackSink, Event, EventKind, EventSink, FanOut
from .facts import RequestFacts
from .policy import (
    CookiePolicy,
    CsrfPolicy,
    HeadersPolicy,
    HttpsPolicy,
    MonitorPolicy,
    Policy,
    RememberPolicy,
    RiskSignal,
    WebSocketPolicy,
    insecure_settings,
)
from .stores import (
    AsyncSessionStore,
    InlineAsyncStore,
    MemoryStore,
    SessionLimitReached,
    SessionStore,
    StoreUnavailable,
    open_async_store,
    open_store,
)

__all__ = [
    "AliasActionRefused",
    "AsyncSessionStore",
    "CallbackSink",
    "Clock",
    "CookiePolicy",
    "CsrfPolicy",
    "Engine",
    "Event",
    "EventKind",
    "EventSink",
    "FanOut",
    "HeadersPolicy",
    "HttpsPolicy",
    "HttpsRequired",
    "InlineAsyncStore",
    "ManualClock",
    "MemoryStore",
    "MonitorPolicy",
    "Policy",
    "ReauthenticationRequired",
    "RememberPolicy",
    "RequestFacts",
    "RiskSignal",
    "Session",
    "SessionInfo",
    "SessionLimitReached",
    "SessionStore",
    "SessionValueError",
    "StepUpRequired",
    "StoreUnavailable",
    "SystemClock",
    "WebSocketPolicy",
    "insecure_settings",
    "open_async_store",
    "open_store",
]

__version__ = "0.1.0"
