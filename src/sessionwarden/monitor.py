"""Watching sessions: fingerprints, risk scoring, and the sinks that report what happened.

The scoring half is pure: :func:`fingerprint` reduces a request to a few coarse, stable traits,
:func:`assess` compares them with the traits stored when the session was last seen, and
:func:`action_for` turns the verdict into what the policy says to do. Nothing there does I/O or
keeps state, so a verdict can be reproduced from the stored fingerprint alone.

The traits are deliberately coarse. Exact IPs change all the time (mobile carriers, NAT pools,
privacy extensions), exact user-agent strings change with every browser update, so comparing them
exactly would mostly punish honest users. A /24 (IPv4) or /48 (IPv6) network, a browser family
with its major version and the preferred language change rarely for one person, and together they
still catch a cookie replayed from another machine.

The reporting half turns :class:`~sessionwarden.events.Event` values into JSON log lines and
Prometheus metrics, and holds the two small pieces of shared state the core needs across requests:
whether the store is in an outage (so it is reported once, not on every request) and how many
unknown session IDs each client has presented (so ID guessing is throttled).
"""

from __future__ import annotations

import enum
import ipaddress
import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .events import Event, EventKind
from .facts import RequestFacts
from .policy import Action, MonitorPolicy
from .records import JSON

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "EVENT_RECORD_ATTR",
    "LOG_SCHEMA_KEYS",
    "REPLAY_ROTATED_RISK",
    "Assessment",
    "JsonFormatter",
    "JsonLogSink",
    "OutageGate",
    "PrometheusSink",
    "Risk",
    "UnknownIdThrottle",
    "action_for",
    "agent_family",
    "assess",
    "fingerprint",
    "log_level_for",
    "network_of",
]

# --------------------------------------------------------------------------------------------
# User-agent parsing
# --------------------------------------------------------------------------------------------

#: User-agent headers are attacker-controlled and unbounded; real ones are well under this.
UA_SCAN_LIMIT = 512
_DIGITS = frozenset("0123456789")
#: Characters that may precede a product token; anything else means the name is a suffix of a
#: longer token (``Chrome/`` inside ``HeadlessChrome/``) and must not match.
_TOKEN_BOUNDARY = frozenset(" (;,")
#: A major version longer than this is junk; bounding it keeps the stored value small.
_MAJOR_DIGITS = 6

#: Families in the order they must be tested. The order is the whole trick: Edge, Opera and
#: Samsung Internet announce ``Chrome/`` too, and every Chromium or iOS browser announces
#: ``Safari/``, so the more specific token has to win first. Plain Safari is handled last.
_FAMILY_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("curl", ("curl",)),
    ("python-requests", ("python-requests",)),
    ("python-httpx", ("python-httpx",)),
    ("python-urllib", ("Python-urllib",)),
    ("HeadlessChrome", ("HeadlessChrome",)),
    ("Edge", ("Edg", "EdgA", "EdgiOS", "Edge")),
    ("Opera", ("OPR", "OPT", "OPiOS", "OPX")),
    ("Samsung Internet", ("SamsungBrowser",)),
    ("Firefox", ("Firefox", "FxiOS")),
    ("Chromium", ("Chromium",)),
    ("Chrome", ("Chrome", "CriOS")),
)


def _product_major(ua: str, name: str) -> int | None:
    """The major version after ``name/`` at a token boundary; ``None`` when the token is absent.

    Plain ``str.find`` scanning: linear in the (bounded) input, no backtracking to exploit.
    Only ASCII digits count, because ``str.isdigit`` accepts characters ``int`` rejects.
    """
    needle = name + "/"
    start = 0
    while True:
        at = ua.find(needle, start)
        if at < 0:
            return None
        if at == 0 or ua[at - 1] in _TOKEN_BOUNDARY:
            first = at + len(needle)
            end = first
            while end < len(ua) and end - first < _MAJOR_DIGITS and ua[end] in _DIGITS:
                end += 1
            return int(ua[first:end]) if end > first else 0
        start = at + 1


def agent_family(user_agent: str) -> tuple[str, int]:
    """``(family, major version)`` of a user agent, ``("other", 0)`` when unrecognised.

    A family rather than the full string, because the full string changes with every minor
    update while a stolen cookie replayed from a script or another browser changes the family.
    """
    ua = user_agent[:UA_SCAN_LIMIT]
    for family, tokens in _FAMILY_RULES:
        for token in tokens:
            major = _product_major(ua, token)
            if major is not None:
                return family, major
    if ua.startswith("Opera/"):
        # Presto-era Opera reports a frozen "Opera/9.80"; the real version is in "Version/".
        return "Opera", _product_major(ua, "Version") or 0
    if _product_major(ua, "Safari") is not None and "Android" not in ua:
        # Safari's own version lives in "Version/"; "Safari/" carries the WebKit build.
        # Android's pre-Chrome stock browser also says "Safari/" but is not Safari.
        return "Safari", _product_major(ua, "Version") or 0
    return "other", 0


# --------------------------------------------------------------------------------------------
# Network prefix
# --------------------------------------------------------------------------------------------

#: Longer than any textual address (45 characters plus a zone ID); longer input is junk.
_IP_SCAN_LIMIT = 100
_V4_PREFIX = 24
_V6_PREFIX = 48
#: Unknown-ID throttling keys IPv6 clients by /64: one subscriber owns at least a /64, so a
#: per-address limit would be bypassed by rotating through it.
_V6_CLIENT_PREFIX = 64

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


_PLATFORMS: tuple[tuple[str, str], ...] = (
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
)


def agent_label(user_agent: str) -> str:
    """A short, readable name for a user agent ("Firefox 128 on Linux"), for device lists and
    activity trails: what a person recognises, at a fraction of the raw string's size (at most
    64 characters, so a Redis hash keeps its compact encoding)."""
    family, major = agent_family(user_agent)
    if family == "other":
        return user_agent[:64]
    label = f"{family} {major}" if major else family
    head = user_agent[:UA_SCAN_LIMIT]
    for marker, platform in _PLATFORMS:
        if marker in head:
            return f"{label} on {platform}"[:64]
    return label[:64]


def _parse_ip(ip: str) -> _Address | None:
    """The address, IPv4-mapped IPv6 unwrapped to IPv4 (dual-stack sockets report v4 clients so)."""
    if len(ip) > _IP_SCAN_LIMIT:
        return None
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _prefix_of(addr: _Address, v4: int, v6: int) -> str:
    # Built from the integer value so an IPv6 zone ID ("fe80::1%eth0") cannot get in the way.
    if isinstance(addr, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Network((int(addr), v4), strict=False))
    return str(ipaddress.IPv6Network((int(addr), v6), strict=False))


def network_of(ip: str) -> str:
    """The client's network: /24 for IPv4, /48 for IPv6, ``""`` for anything that is not an IP.

    A network rather than an address, because carriers and NAT pools move one user between
    neighbouring addresses constantly; moving to another network is what is worth noticing.
    """
    addr = _parse_ip(ip)
    return "" if addr is None else _prefix_of(addr, _V4_PREFIX, _V6_PREFIX)


# --------------------------------------------------------------------------------------------
# Fingerprint
# --------------------------------------------------------------------------------------------

_LANG_SCAN_LIMIT = 256
#: BCP 47 tags in practice stay under this; anything longer is noise not worth storing.
_LANG_MAX = 35
_LANG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-*")


def _first_language(header: str) -> str:
    """The client's preferred language tag, lower-cased; ``""`` when absent or malformed."""
    first = header[:_LANG_SCAN_LIMIT].split(",", 1)[0].split(";", 1)[0].strip()
    if not first or len(first) > _LANG_MAX or not _LANG_CHARS.issuperset(first):
        return ""
    return first.lower()


def fingerprint(facts: RequestFacts) -> dict[str, JSON]:
    """The coarse traits of a request that are stored with its session and compared later.

    Kept to five short values because it is written into every session record.
    """
    addr = _parse_ip(facts.client_ip)
    family, major = agent_family(facts.user_agent)
    return {
        "ip": "" if addr is None else str(addr),
        "net": "" if addr is None else _prefix_of(addr, _V4_PREFIX, _V6_PREFIX),
        "ua": family,
        "uav": major,
        "lang": _first_language(facts.accept_language),
    }


# --------------------------------------------------------------------------------------------
# Risk
# --------------------------------------------------------------------------------------------


class Risk(enum.IntEnum):
    """Ordered, so the verdict on several signals is simply the largest one."""

    NONE = 0
    LOW = 1
    HIGH = 2


#: A periodically rotated-out ID presented after its grace window: the browser that owns the
#: session already has the new ID, so whoever sends the old one most likely copied it.
REPLAY_ROTATED_RISK = Risk.HIGH


@dataclass(frozen=True, slots=True)
class Assessment:
    """The verdict and every reason behind it, so logs explain the action that was taken."""

    risk: Risk
    reasons: tuple[str, ...] = ()


_NO_RISK = Assessment(Risk.NONE, ())


def _text(fp: Mapping[str, JSON], key: str) -> str:
    value = fp.get(key)
    return value if isinstance(value, str) else ""


def _major(fp: Mapping[str, JSON], key: str) -> int:
    value = fp.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(value, 0)


def assess(
    stored: Mapping[str, JSON] | None,
    current: Mapping[str, JSON],
    *,
    last_net_change_at: float | None,
    now: float,
    policy: MonitorPolicy,
) -> Assessment:
    """Compare the fingerprint stored with a session with the current request's.

    Rules, each contributing a reason; the risk is the highest of them:

    * network changed, previous change at least ``network_switch_window`` ago: LOW
      (``network-changed``): people move between home, office and mobile;
    * network changed again within the window: HIGH (``network-flapping``): one person does not
      alternate between two places within minutes, two people sharing a cookie do;
    * agent family changed, or the same family went *down* a major version: HIGH, or LOW when
      ``policy.agent_change_is_high`` is off (``agent-changed`` / ``agent-downgraded``);
      an upgrade is benign since browsers update themselves;
    * preferred language changed: LOW (``language-changed``).

    A trait that is unknown on either side (empty network, version 0) is not compared: missing
    information is not evidence. A stored fingerprint of the wrong shape (an older release, a
    hand-edited store) is read defensively and never raises.
    """
    if not stored:
        return _NO_RISK
    reasons: list[str] = []
    risk = Risk.NONE

    old_net, new_net = _text(stored, "net"), _text(current, "net")
    if old_net and new_net and old_net != new_net:
        window = policy.network_switch_window
        recent = (
            last_net_change_at is not None
            and window > 0
            # A change stamped slightly in the future (clock skew between workers) is recent too.
            and now - last_net_change_at < window
        )
        if recent:
            reasons.append("network-flapping")
            risk = max(risk, Risk.HIGH)
        else:
            reasons.append("network-changed")
            risk = max(risk, Risk.LOW)

    agent_risk = Risk.HIGH if policy.agent_change_is_high else Risk.LOW
    old_ua, new_ua = _text(stored, "ua"), _text(current, "ua")
    if old_ua and new_ua and old_ua != new_ua:
        reasons.append("agent-changed")
        risk = max(risk, agent_risk)
    elif old_ua and old_ua == new_ua:
        old_v, new_v = _major(stored, "uav"), _major(current, "uav")
        if old_v and new_v and new_v < old_v:
            reasons.append("agent-downgraded")
            risk = max(risk, agent_risk)

    old_lang, new_lang = _text(stored, "lang"), _text(current, "lang")
    if old_lang and new_lang and old_lang != new_lang:
        reasons.append("language-changed")
        risk = max(risk, Risk.LOW)

    return Assessment(risk, tuple(reasons)) if reasons else _NO_RISK


def action_for(assessment: Assessment, policy: MonitorPolicy) -> Action:
    """What the policy says to do about a verdict; no risk is always allowed."""
    if assessment.risk is Risk.HIGH:
        return policy.on_high
    if assessment.risk is Risk.LOW:
        return policy.on_low
    return "allow"


# --------------------------------------------------------------------------------------------
# JSON logging
# --------------------------------------------------------------------------------------------

#: The keys of every JSON log line, in order (those of :meth:`Event.to_dict`).
LOG_SCHEMA_KEYS: tuple[str, ...] = (
    "event",
    "at",
    "ref",
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
    }
)
_ERROR_KINDS = frozenset({EventKind.STORE_UNAVAILABLE})

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
        "at": at,
        "ref": _clean_text(str(event.ref), _REASON_LOG_LIMIT),
        "user": None if event.user_id is None else str(event.user_id)[:_REASON_LOG_LIMIT],
        "ip": _clean_text(str(event.client_ip), _IP_SCAN_LIMIT),
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
    ``at``     (float)      POSIX seconds
    ``ref``    (str)        short keyed-hash reference of the session, ``""`` when none; never
                            the session ID
    ``user``   (str|null)   the signed-in user's ID
    ``ip``     (str)        client IP, resolved through trusted proxies only
    ``ua``     (str)        user agent, truncated to 256 characters
    ``path``   (str)        request path, truncated to 1024 characters
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


# --------------------------------------------------------------------------------------------
# Store outage reporting
# --------------------------------------------------------------------------------------------


class OutageGate:
    """Remembers whether the store is failing, so an outage is reported once, not per request.

    During an outage every request fails the same way; a ``store.unavailable`` event each time
    would flood logs and alerting exactly when an operator needs them readable. Shared between
    the threads of a WSGI server, hence the lock.
    """

    __slots__ = ("_down_since", "_lock", "failing")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None
        #: Whether an outage is in progress. Read without the lock so the healthy path (every
        #: request) costs no lock; it is a hint, :meth:`success` decides under the lock.
        self.failing = False

    def failure(self, now: float) -> bool:
        """Record a failed store call; ``True`` when this starts an outage (emit the event)."""
        with self._lock:
            if self._down_since is not None:
                return False
            self._down_since = now
            self.failing = True
            return True

    def success(self) -> bool:
        """Record a working store call; ``True`` when this ends an outage (emit recovered)."""
        with self._lock:
            if self._down_since is None:
                return False
            self._down_since = None
            self.failing = False
            return True

    @property
    def down_since(self) -> float | None:
        """When the current outage started, ``None`` while the store works."""
        with self._lock:
            return self._down_since


# --------------------------------------------------------------------------------------------
# Unknown-ID throttling
# --------------------------------------------------------------------------------------------

THROTTLE_WINDOW = 60.0


@dataclass(slots=True)
class _Window:
    start: float
    count: int


def _client_key(ip: str) -> str:
    """The unit a limit applies to: an IPv4 address or an IPv6 /64 (see ``_V6_CLIENT_PREFIX``)."""
    addr = _parse_ip(ip)
    if addr is None:
        return ip.strip()[:_IP_SCAN_LIMIT]
    if isinstance(addr, ipaddress.IPv4Address):
        return str(addr)
    return _prefix_of(addr, _V4_PREFIX, _V6_CLIENT_PREFIX)


class UnknownIdThrottle:
    """Counts unknown session IDs per client in fixed one-minute windows.

    Why: a client presenting many IDs the store has never issued is guessing (or replaying a
    dump). 256-bit IDs make guessing hopeless anyway; the limit keeps it from also costing a
    store look-up per guess and makes it visible. A fixed window is enough here: its worst case
    (twice the limit across a window boundary) is still negligible against 2**256.

    Memory is bounded: at most ``max_tracked`` clients are remembered; beyond that the client
    whose window started first is forgotten (expired windows go first). Clients with no known
    address (``""``) are not throttled, because they would all share one bucket and one guesser
    would lock everybody out. ``limit_per_minute=0`` disables throttling. Thread-safe.
    """

    __slots__ = ("_limit", "_lock", "_max", "_windows")

    def __init__(self, limit_per_minute: int, *, max_tracked: int = 10_000) -> None:
        if limit_per_minute < 0:
            raise ValueError("limit_per_minute: must be >= 0 (0 disables)")
        if max_tracked < 1:
            raise ValueError("max_tracked: must be >= 1")
        self._limit = limit_per_minute
        self._max = max_tracked
        self._lock = threading.Lock()
        # Ordered by window start (oldest first), so expiry and eviction both pop from the front.
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def _expire(self, now: float) -> None:
        windows = self._windows
        while windows:
            first = next(iter(windows.values()))
            if now - first.start < THROTTLE_WINDOW:
                break
            windows.popitem(last=False)

    def hit(self, ip: str, now: float) -> bool:
        """Count one unknown-ID presentation; ``True`` when the client is over the limit (429)."""
        if self._limit == 0:
            return False
        key = _client_key(ip)
        if not key:
            return False
        with self._lock:
            self._expire(now)
            window = self._windows.get(key)
            if window is None or now - window.start >= THROTTLE_WINDOW:
                window = _Window(now, 0)
                self._windows[key] = window
                self._windows.move_to_end(key)
                while len(self._windows) > self._max:
                    self._windows.popitem(last=False)
            window.count += 1
            return window.count > self._limit

    def blocked(self, ip: str, now: float) -> bool:
        """``True`` while the client's current window is over the limit, without counting."""
        if self._limit == 0:
            return False
        key = _client_key(ip)
        if not key:
            return False
        with self._lock:
            window = self._windows.get(key)
            return (
                window is not None
                and now - window.start < THROTTLE_WINDOW
                and window.count > self._limit
            )

    def __len__(self) -> int:
        """How many clients are tracked (bounded by ``max_tracked``)."""
        with self._lock:
            return len(self._windows)
