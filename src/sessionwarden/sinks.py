"""Where events go: JSON log lines, Prometheus metrics, a callback, several sinks at once.

Every sink has one method, ``emit(event)``. :class:`JsonLogSink` writes the documented JSON line
schema through :mod:`logging`; :class:`PrometheusSink` counts events by kind and can expose a Redis
store's read cache (:meth:`PrometheusSink.watch`). :class:`~sessionwarden.events.CallbackSink`,
:class:`~sessionwarden.events.FanOut` and :class:`~sessionwarden.events.NullSink` live with the
event types and are re-exported here so every sink can be imported from one place.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .events import OUTCOME_OF, CallbackSink, Event, EventKind, FanOut, NullSink, iso_utc
from .records import JSON

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "EVENT_RECORD_ATTR",
    "LOG_SCHEMA_KEYS",
    "CallbackSink",
    "FanOut",
    "JsonFormatter",
    "JsonLogSink",
    "NullSink",
    "PrometheusSink",
    "log_level_for",
]

# --------------------------------------------------------------------------------------------
# JSON logging
# --------------------------------------------------------------------------------------------

#: The keys of every JSON log line, in order (those of :meth:`Event.to_dict`).
LOG_SCHEMA_KEYS: tuple[str, ...] = (
    "event",
    "outcome",
    "at",
    "time",
    "ref",
    "session",
    "user",
    "ip",
    "ua",
    "path",
    "reason",
    "detail",
)
#: Name of the :class:`logging.LogRecord` attribute carrying the event as a dict, for handlers
#: and formatters that want structured data instead of the message text.
EVENT_RECORD_ATTR = "sessionwarden_event"

_WARNING_KINDS = frozenset(
    {
        EventKind.REPLAY_REVOKED,
        EventKind.REPLAY_ROTATED,
        EventKind.UNKNOWN_ID,
        EventKind.MALFORMED_COOKIE,
        EventKind.COOKIE_TOSSING,
        EventKind.WRITE_AFTER_REVOKE,
        EventKind.CSRF_REFUSED,
        EventKind.CROSS_ORIGIN_REFUSED,
        EventKind.ANOMALY,
        EventKind.THROTTLED,
        EventKind.DBSC_PROOF_FAILED,
        EventKind.DBSC_MISSING_BOUND_COOKIE,
        EventKind.ALIAS_ACTION_REFUSED,
        EventKind.STEP_UP_REFUSED,
        EventKind.CLIENT_ADDRESS_MISSING,
        EventKind.WEBSOCKET_REFUSED,
        EventKind.HOST_REFUSED,
        EventKind.PROXY_HEADERS_IGNORED,
    }
)
_ERROR_KINDS = frozenset({EventKind.STORE_UNAVAILABLE})

#: Longer than any textual address (45 characters plus a zone ID); longer input is junk.
_IP_LOG_LIMIT = 100
_UA_LOG_LIMIT = 256
_PATH_LOG_LIMIT = 1024
_REASON_LOG_LIMIT = 256
_DETAIL_TEXT_LIMIT = 1024
_DETAIL_DEPTH_LIMIT = 6
_DETAIL_ITEMS_LIMIT = 64
#: A session ID is 43 base64url characters; a run that long in a log line is treated as a secret.
_TOKEN_RUN = 43
_TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
REDACTED = "[redacted]"


def log_level_for(kind: EventKind, base: int = logging.INFO) -> int:
    """Refusals, replays and anomalies are warnings and a store outage is an error, so an
    operator filtering on level sees attacks and breakage without the routine traffic."""
    if kind in _ERROR_KINDS:
        return max(base, logging.ERROR)
    if kind in _WARNING_KINDS:
        return max(base, logging.WARNING)
    return base


def _redact(text: str) -> str:
    """Replace every run of 43+ base64url characters (a session ID, a CSRF token) by
    ``[redacted]``. Events never carry one; this is the last line of defence if a caller
    put one in by mistake, because a log line leaking a live ID is a session handed out."""
    run_start = -1
    pieces: list[str] = []
    last = 0
    for i, ch in enumerate(text):
        if ch in _TOKEN_ALPHABET:
            if run_start < 0:
                run_start = i
            continue
        if run_start >= 0 and i - run_start >= _TOKEN_RUN:
            pieces.append(text[last:run_start])
            pieces.append(REDACTED)
            last = i
        run_start = -1
    if run_start >= 0 and len(text) - run_start >= _TOKEN_RUN:
        pieces.append(text[last:run_start])
        pieces.append(REDACTED)
        last = len(text)
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def _clean_text(text: str, limit: int) -> str:
    # Redact before truncating: cutting first could leave a shorter, unredacted piece of a token.
    return _redact(text)[:limit]


def _clean_json(value: object, depth: int) -> JSON:
    """A JSON-safe, bounded, redacted copy of a detail value; never raises on odd input."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _clean_text(value, _DETAIL_TEXT_LIMIT)
    if depth >= _DETAIL_DEPTH_LIMIT:
        return "[truncated]"
    if isinstance(value, Mapping):
        out: dict[str, JSON] = {}
        for n, (k, v) in enumerate(value.items()):
            if n >= _DETAIL_ITEMS_LIMIT:
                break
            out[_clean_text(str(k), _REASON_LOG_LIMIT)] = _clean_json(v, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_clean_json(v, depth + 1) for v in value[:_DETAIL_ITEMS_LIMIT]]
    return _clean_text(str(value), _DETAIL_TEXT_LIMIT)


def _log_document(event: Event) -> dict[str, JSON]:
    at = event.at if isinstance(event.at, int | float) and math.isfinite(event.at) else None
    detail = _clean_json(event.detail, 0)
    return {
        "event": str(event.kind.value),
        "outcome": OUTCOME_OF[event.kind],
        "at": at,
        "time": None if at is None else iso_utc(at),
        "ref": _clean_text(str(event.ref), _REASON_LOG_LIMIT),
        "session": _clean_text(str(event.session), _REASON_LOG_LIMIT),
        "user": None if event.user_id is None else str(event.user_id)[:_REASON_LOG_LIMIT],
        "ip": _clean_text(str(event.client_ip), _IP_LOG_LIMIT),
        "ua": _clean_text(str(event.user_agent), _UA_LOG_LIMIT),
        "path": _clean_text(str(event.path), _PATH_LOG_LIMIT),
        "reason": _clean_text(str(event.reason), _REASON_LOG_LIMIT),
        "detail": detail if isinstance(detail, dict) else {"value": detail},
    }


def _json_line(doc: Mapping[str, JSON]) -> str:
    # ensure_ascii: U+2028 and friends are line breaks to some log shippers; escaped, one event
    # is always exactly one line.
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


class JsonLogSink:
    """Writes each event as one JSON object on one line through :mod:`logging`.

    Line schema (the keys of :meth:`Event.to_dict`, always all of them, in this order):

    ``event``  (str)        the event kind, e.g. ``"session.replay.revoked"``
    ``outcome`` (str)       ``success``, ``failure``, ``refused``, ``ended`` or ``notice``
                            (:data:`~sessionwarden.events.OUTCOMES`), decided by the kind
    ``at``     (float)      POSIX seconds (UTC)
    ``time``   (str)        the same instant as ISO 8601 in UTC,
                            ``"2026-01-31T12:00:00.000000Z"``
    ``ref``    (str)        short keyed-hash reference of the session, ``""`` when none; never
                            the session ID; changes at every rotation of the ID
    ``session`` (str)       short keyed hash of the session's lineage: the same for every
                            event of one session (creation, sign-in, every rotation, its end),
                            different between sessions, ``""`` when none
    ``user``   (str|null)   the signed-in user's ID
    ``ip``     (str)        client IP, resolved through trusted proxies only
    ``ua``     (str)        user agent, truncated to 256 characters
    ``path``   (str)        the request's route (its path), truncated to 1024 characters
    ``reason`` (str)        short machine-readable reason
    ``detail`` (object)     event-specific extras (bounded in size and depth)

    Levels: refusals, replays, throttling and anomalies at ``WARNING``, ``store.unavailable``
    at ``ERROR``, everything else at ``level`` (never below it). Any run of 43 or more base64url
    characters in a text field (except ``user``) is replaced by ``"[redacted]"``: events never
    carry a session ID or token, and this keeps it so even if a caller slips one into
    ``detail``. Non-ASCII is escaped so a line can never be split by a Unicode line separator.

    The log record also carries the document as ``record.sessionwarden_event`` for handlers
    that prefer structured data; :class:`JsonFormatter` prints the line as is.
    """

    __slots__ = ("_level", "_logger")

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self._logger = logger if logger is not None else logging.getLogger("sessionwarden.events")
        self._level = level

    @property
    def logger(self) -> logging.Logger:
        return self._logger

    def wants(self, kind: EventKind) -> bool:
        """Whether the logger takes this kind's level (no event is built for a muted one)."""
        return self._logger.isEnabledFor(log_level_for(kind, self._level))

    def emit(self, event: Event) -> None:
        level = log_level_for(event.kind, self._level)
        if not self._logger.isEnabledFor(level):
            return  # serialising costs more than the check; skip it for muted levels
        doc = _log_document(event)
        self._logger.log(level, "%s", _json_line(doc), extra={EVENT_RECORD_ATTR: doc})


class JsonFormatter(logging.Formatter):
    """Formats log records as JSON lines, so an application can send our logger to stdout
    (or anything line-oriented) and keep every line machine-readable.

    Records from :class:`JsonLogSink` come out as the event line unchanged (the documented
    schema, nothing added). Any other record becomes
    ``{"at", "level", "logger", "message"}`` plus ``"exc"`` when it carries an exception.
    """

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(getattr(record, EVENT_RECORD_ATTR, None), dict):
            return record.getMessage()
        doc: dict[str, JSON] = {
            "at": record.created,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=True, default=str)


# --------------------------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------------------------


class PrometheusSink:
    """Counts events by kind (``<namespace>_events_total{kind}``) and exposes a gauge of live
    sessions (``<namespace>_live_sessions``).

    Uses a registry of its own unless given one (or ``use_default_registry=True``), so several
    apps or tests in one process do not collide on metric names; serve ``sink.registry``.
    Every kind is pre-created at zero so rates and alerts work before the first occurrence.
    ``prometheus-client`` is imported only here: it is the optional ``metrics`` extra.
    """

    __slots__ = ("_caches", "_events", "_live", "_namespace", "_registry")

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = "sessionwarden",
        *,
        use_default_registry: bool = False,
    ) -> None:
        try:
            import prometheus_client
        except ImportError as exc:
            raise ImportError(
                "PrometheusSink needs prometheus-client: pip install 'sessionwarden[metrics]'"
            ) from exc
        if registry is None:
            registry = (
                prometheus_client.REGISTRY
                if use_default_registry
                else prometheus_client.CollectorRegistry()
            )
        self._registry = registry
        self._namespace = namespace
        self._caches: _CacheCollector | None = None
        self._events = prometheus_client.Counter(
            "events",
            "Session events by kind (refusals, replays, anomalies, lifecycle).",
            labelnames=("kind",),
            namespace=namespace,
            registry=registry,
        )
        self._live = prometheus_client.Gauge(
            "live_sessions",
            "Live sessions, as last reported by the application.",
            namespace=namespace,
            registry=registry,
        )
        for kind in EventKind:
            self._events.labels(kind=kind.value)

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry

    def emit(self, event: Event) -> None:
        self._events.labels(kind=event.kind.value).inc()

    def set_live_sessions(self, n: int) -> None:
        self._live.set(max(n, 0))

    def watch(self, store: Any, name: str = "redis") -> None:
        """Expose a store's read cache, read at each scrape (labelled ``store=name``):
        ``<ns>_read_cache_hits_total``, ``_misses_total``, ``_entries``, ``_notices_up`` (1
        while the notice connection that keeps the cache exact is connected: alert on 0, the
        store then serves every read from Redis) and ``_notice_connects_total``.

        ``store``: a Redis store (``RedisStore``/``AsyncRedisStore``) with its read cache on, or
        its :class:`~sessionwarden.stores.tracking.ReadCache`."""
        from .stores.tracking import ReadCache

        cache = getattr(store, "read_cache", store)
        if not isinstance(cache, ReadCache):
            raise ValueError("this store has no read cache to watch")
        if self._caches is None:
            self._caches = _CacheCollector(self._namespace)
            self._registry.register(self._caches)
        self._caches.add(name, cache)


class _CacheCollector:
    """A custom collector: reads the watched caches' counters when Prometheus scrapes."""

    _FAMILIES = (
        ("hits", "counter", "Reads answered from the local read cache."),
        ("misses", "counter", "Reads the read cache could not answer."),
        ("entries", "gauge", "Sessions kept in the read cache."),
        ("notices_up", "gauge", "1 while the connection that keeps the read cache exact is up."),
        ("notice_connects", "counter", "Times that connection was (re)established."),
    )

    def __init__(self, namespace: str) -> None:
        self._prefix = f"{namespace}_read_cache"
        self._caches: dict[str, Any] = {}

    def add(self, name: str, cache: Any) -> None:
        if name in self._caches:
            raise ValueError(f"a read cache named {name!r} is already watched")
        self._caches[name] = cache

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        values: dict[str, list[tuple[str, float]]] = {f: [] for f, _, _ in self._FAMILIES}
        for name, cache in self._caches.items():
            s = cache.stats()
            values["hits"].append((name, s.hits))
            values["misses"].append((name, s.misses))
            values["entries"].append((name, s.entries))
            values["notices_up"].append((name, 1.0 if s.connected else 0.0))
            values["notice_connects"].append((name, s.connects))
        for suffix, kind, doc in self._FAMILIES:
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            metric = family(f"{self._prefix}_{suffix}", doc, labels=["store"])
            for name, value in values[suffix]:
                metric.add_metric([name], value)
            yield metric
