"""Fingerprints and risk scoring: pure functions, no I/O, no state.

:func:`fingerprint` reduces a request to a few coarse, stable traits, :func:`assess` compares them
with the traits stored when the session was last seen, and :func:`action_for` turns the verdict
into what the policy says to do. A verdict can be reproduced from the stored fingerprint alone.

The traits are deliberately coarse. Exact IPs change all the time (mobile carriers, NAT pools,
privacy extensions), exact user-agent strings change with every browser update, so comparing them
exactly would mostly punish honest users. A /24 (IPv4) or /48 (IPv6) network (the defaults of
``MonitorPolicy.ipv4_prefix`` and ``ipv6_prefix``; /32 and /128 compare exact addresses), a
browser family with its major version and the preferred language change rarely for one person,
and together they still catch a cookie replayed from another machine. A trait the stored
fingerprint has and the request lacks counts as changed: leaving traits out must not be a way
around the checks.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from .facts import RequestFacts
from .policy import Action, MonitorPolicy
from .records import JSON

__all__ = [
    "REPLAY_ROTATED_RISK",
    "Assessment",
    "Risk",
    "action_for",
    "agent_family",
    "agent_label",
    "assess",
    "fingerprint",
    "is_vaguer",
    "network_of",
    "should_refresh",
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


#: How many user agents, client addresses and language headers keep their parsed traits: the
#: same few strings arrive on request after request, and a user agent's parse is dozens of
#: string searches. Keyed by at most :data:`UA_SCAN_LIMIT` (:data:`IP_SCAN_LIMIT`, 256)
#: characters, so the caches stay small whatever the headers hold.
_PARSED_CACHE_SIZE = 1024


def agent_family(user_agent: str) -> tuple[str, int]:
    """``(family, major version)`` of a user agent: a known browser or client by name, an
    unrecognised one as ``("other:<digest>", 0)``, a blank one as ``("other", 0)``.

    A family rather than the full string, because the full string changes with every minor
    update while a stolen cookie replayed from a script or another browser changes the family.
    An agent none of the rules knows (a bot, an API client, a rare browser) is named by a
    digest of its string with its version numbers left out: its own updates keep the name,
    another unrecognised agent gets another one, so a cookie replayed with a different
    unrecognised ``User-Agent`` is still a changed agent.
    """
    return _agent_family(user_agent[:UA_SCAN_LIMIT])


@functools.lru_cache(maxsize=_PARSED_CACHE_SIZE)
def _agent_family(ua: str) -> tuple[str, int]:
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
    return _unrecognised(ua), 0


#: The family of a blank user agent, and of every unrecognised one in fingerprints stored
#: before unrecognised agents were told apart (:func:`_agent_finding` accepts any of them).
OTHER_AGENT = "other"
#: What a version or build number is written with (``17_1``, ``2.7.1``): left out of the digest.
_NO_VERSIONS = str.maketrans("", "", "0123456789._")


def _unrecognised(ua: str) -> str:
    """``other:`` and 12 hex digits of a digest of ``ua`` without its digits, dots and
    underscores (versions, build numbers); :data:`OTHER_AGENT` when ``ua`` is blank."""
    text = ua.strip()
    if not text:
        return OTHER_AGENT
    raw = text.translate(_NO_VERSIONS).encode("utf-8", "surrogatepass")
    return f"{OTHER_AGENT}:{hashlib.blake2b(raw, digest_size=6).hexdigest()}"


# --------------------------------------------------------------------------------------------
# Network prefix
# --------------------------------------------------------------------------------------------

#: Longer than any textual address (45 characters plus a zone ID); longer input is junk.
IP_SCAN_LIMIT = 100
#: The default network sizes (``MonitorPolicy.ipv4_prefix`` / ``ipv6_prefix``).
V4_PREFIX = 24
V6_PREFIX = 48

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
    return _agent_label(user_agent[:UA_SCAN_LIMIT])


@functools.lru_cache(maxsize=_PARSED_CACHE_SIZE)
def _agent_label(head: str) -> str:
    family, major = _agent_family(head)
    if family.startswith(OTHER_AGENT):
        return head[:64]
    label = f"{family} {major}" if major else family
    for marker, platform in _PLATFORMS:
        if marker in head:
            return f"{label} on {platform}"[:64]
    return label[:64]


def parse_ip(ip: str) -> _Address | None:
    """The address, IPv4-mapped IPv6 unwrapped to IPv4 (dual-stack sockets report v4 clients so)."""
    if len(ip) > IP_SCAN_LIMIT:
        return None
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def prefix_of(addr: _Address, v4: int, v6: int) -> str:
    # Built from the integer value so an IPv6 zone ID ("fe80::1%eth0") cannot get in the way.
    if isinstance(addr, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Network((int(addr), v4), strict=False))
    return str(ipaddress.IPv6Network((int(addr), v6), strict=False))


def network_of(ip: str, v4_prefix: int = V4_PREFIX, v6_prefix: int = V6_PREFIX) -> str:
    """The client's network: by default /24 for IPv4, /48 for IPv6 (/32 and /128: the exact
    address), ``""`` for anything that is not an IP.

    A network rather than an address, because carriers and NAT pools move one user between
    neighbouring addresses constantly; moving to another network is what is worth noticing.
    """
    return _address_traits(ip, v4_prefix, v6_prefix)[1]


def _address_traits(ip: str, v4_prefix: int, v6_prefix: int) -> tuple[str, str]:
    """The client's address as stored in a fingerprint and its network (``("", "")`` for
    anything that is not an IP)."""
    if len(ip) > IP_SCAN_LIMIT:
        return "", ""
    return _parsed_address_traits(ip, v4_prefix, v6_prefix)


@functools.lru_cache(maxsize=_PARSED_CACHE_SIZE)
def _parsed_address_traits(ip: str, v4_prefix: int, v6_prefix: int) -> tuple[str, str]:
    addr = parse_ip(ip)
    if addr is None:
        return "", ""
    return str(addr), prefix_of(addr, v4_prefix, v6_prefix)


# --------------------------------------------------------------------------------------------
# Fingerprint
# --------------------------------------------------------------------------------------------

_LANG_SCAN_LIMIT = 256
#: BCP 47 tags in practice stay under this; anything longer is noise not worth storing.
_LANG_MAX = 35
_LANG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-*")


def _first_language(header: str) -> str:
    """The client's preferred language tag, lower-cased; ``""`` when absent or malformed."""
    return _language_of(header[:_LANG_SCAN_LIMIT])


@functools.lru_cache(maxsize=_PARSED_CACHE_SIZE)
def _language_of(head: str) -> str:
    first = head.split(",", 1)[0].split(";", 1)[0].strip()
    if not first or len(first) > _LANG_MAX or not _LANG_CHARS.issuperset(first):
        return ""
    return first.lower()


def fingerprint(
    facts: RequestFacts, v4_prefix: int = V4_PREFIX, v6_prefix: int = V6_PREFIX
) -> dict[str, JSON]:
    """The coarse traits of a request that are stored with its session and compared later;
    the network is the client's ``/v4_prefix`` or ``/v6_prefix``.

    Kept to five short values because it is written into every session record.
    """
    ip, net = _address_traits(facts.client_ip, v4_prefix, v6_prefix)
    family, major = agent_family(facts.user_agent)
    return {
        "ip": ip,
        "net": net,
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


#: One rule's verdict: its reason and the risk it contributes.
_Finding = tuple[str, Risk]


def _network_finding(
    stored: Mapping[str, JSON],
    current: Mapping[str, JSON],
    last_net_change_at: float | None,
    now: float,
    policy: MonitorPolicy,
) -> _Finding | None:
    # The stored address's network as the policy sizes it now, so a changed prefix size
    # applies to existing sessions at once (and is never itself taken for a move).
    old_ip = _text(stored, "ip")
    if old_ip:
        old_net = network_of(old_ip, policy.ipv4_prefix, policy.ipv6_prefix)
    else:
        old_net = _text(stored, "net")
    new_net = _text(current, "net")
    if not old_net or old_net == new_net:
        return None
    window = policy.network_switch_window
    recent = (
        last_net_change_at is not None
        and window > 0
        # A change stamped slightly in the future (clock skew between workers) is recent too.
        and now - last_net_change_at < window
    )
    return ("network-flapping", Risk.HIGH) if recent else ("network-changed", Risk.LOW)


def _agent_finding(
    stored: Mapping[str, JSON], current: Mapping[str, JSON], policy: MonitorPolicy
) -> _Finding | None:
    risk = Risk.HIGH if policy.agent_change_is_high else Risk.LOW
    old_ua = _text(stored, "ua")
    if not old_ua:
        return None
    new_ua = _text(current, "ua")
    if old_ua != new_ua and not (old_ua == OTHER_AGENT and new_ua.startswith(OTHER_AGENT)):
        return "agent-changed", risk
    old_v, new_v = _major(stored, "uav"), _major(current, "uav")
    if old_v and not new_v:
        return "agent-changed", risk  # the version left out
    if new_v < old_v:
        return "agent-downgraded", risk
    return None


def _language_finding(stored: Mapping[str, JSON], current: Mapping[str, JSON]) -> _Finding | None:
    old_lang = _text(stored, "lang")
    if old_lang and old_lang != _text(current, "lang"):
        return "language-changed", Risk.LOW
    return None


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

    A trait the stored fingerprint has and the request lacks (no network, no version, no
    language) counts as changed: otherwise a thief could get past every check by leaving traits
    out (``User-Agent: Chrome/`` and no ``Accept-Language``). A trait the stored fingerprint
    lacks is not compared. A stored fingerprint of the wrong shape (an older release, a
    hand-edited store) is read defensively and never raises.
    """
    if not stored:
        return _NO_RISK
    findings = [
        f
        for f in (
            _network_finding(stored, current, last_net_change_at, now, policy),
            _agent_finding(stored, current, policy),
            _language_finding(stored, current),
        )
        if f is not None
    ]
    if not findings:
        return _NO_RISK
    return Assessment(max(risk for _, risk in findings), tuple(reason for reason, _ in findings))


#: The traits compared by :func:`assess` (``ip`` travels with ``net``).
_TRAITS = ("ip", "net", "ua", "uav", "lang")


def is_vaguer(stored: Mapping[str, JSON], current: Mapping[str, JSON]) -> bool:
    """Whether ``current`` lacks a trait ``stored`` has."""
    return any(stored.get(t) and not current.get(t) for t in _TRAITS)


def should_refresh(stored: Mapping[str, JSON], current: Mapping[str, JSON], action: Action) -> bool:
    """Whether the request's fingerprint replaces the stored one.

    Only when the request is let through as it is (``allow`` or ``log``) after a network move,
    so the new network becomes the session's own and a later move back within the window is
    flapping. Never by a vaguer fingerprint: the traits it leaves out would never be compared
    again, so one tolerated request would turn off the checks for good.
    """
    return (
        action in ("allow", "log")
        and stored.get("net") != current.get("net")
        and not is_vaguer(stored, current)
    )


def action_for(assessment: Assessment, policy: MonitorPolicy) -> Action:
    """What the policy says to do about a verdict; no risk is always allowed."""
    if assessment.risk is Risk.HIGH:
        return policy.on_high
    if assessment.risk is Risk.LOW:
        return policy.on_low
    return "allow"
