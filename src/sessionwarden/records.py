"""What a store keeps: session records, aliases left by rotation, tombstones left by revocation.

Records are plain data serialised as JSON (never pickle). Every field is named here once;
stores choose their layout (a row, a Redis hash) but keep these names and meanings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TypeAlias, cast

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None

#: The record's own fields other than ``key`` and ``data``, in a fixed order. A
#: :class:`RecordUpdate` names the ones it changes from this set.
META_FIELDS: tuple[str, ...] = (
    "created_at",
    "last_seen",
    "expires_at",
    "rotated_at",
    "csrf_secret",
    "user_id",
    "auth_at",
    "client_ip",
    "user_agent",
    "fingerprint",
    "flags",
    "dbsc",
)

_META_NAMES = frozenset(META_FIELDS)

#: The flag holding a session's lineage: a random value made with the session and carried
#: through every rotation (login included), so that its events can be correlated by one field.
LINEAGE_FLAG = "lineage"


@dataclass(slots=True)
class SessionRecord:
    """A live session, keyed by the keyed hash of its ID (never the ID itself).

    ``user_agent`` is a short description of the browser ("Firefox 128 on Linux", at most 64
    characters) for device lists, not the raw header. ``expires_at`` is computed by the core
    (the earlier of the idle and the absolute deadline); stores only honour it (TTL, purge) and
    never compute expiry themselves.
    """

    key: str
    created_at: float
    last_seen: float
    expires_at: float
    rotated_at: float
    csrf_secret: str
    user_id: str | None = None
    auth_at: float | None = None
    client_ip: str = ""
    user_agent: str = ""
    fingerprint: dict[str, JSON] | None = None
    flags: dict[str, JSON] = field(default_factory=dict)
    data: dict[str, JSON] = field(default_factory=dict)
    #: The device binding (:class:`~sessionwarden.dbsc_state.DbscState` as JSON), a field of
    #: its own so that no other write (flags, data) can drop or roll it back.
    dbsc: dict[str, JSON] | None = None

    def copy(self) -> SessionRecord:
        """An independent copy (scalars shared, containers copied): what a store hands out, so
        the caller may change it without touching what the store keeps."""
        fp = self.fingerprint
        flags = self.flags
        return SessionRecord(
            self.key,
            self.created_at,
            self.last_seen,
            self.expires_at,
            self.rotated_at,
            self.csrf_secret,
            self.user_id,
            self.auth_at,
            self.client_ip,
            self.user_agent,
            None if fp is None else clone_map(fp),
            clone_map(flags) if flags else {},
            clone_map(self.data),
            None if self.dbsc is None else clone_map(self.dbsc),
        )

    def updated(self, update: RecordUpdate, *, copy_values: bool = True) -> SessionRecord:
        """A new record: this one with ``update`` applied (this one is left as it is). What
        the update leaves alone is shared with this one, since a record is never changed once
        stored or read (the core copies before it changes one); what it sets is copied unless
        ``copy_values`` is off, so the caller keeps no hold on the new record. How stores that
        keep records write an update, and how the core follows its own rotation."""
        data = self.data
        if update.set_data or update.del_data:
            data = dict(data)  # the one container the update changes in place
        new = SessionRecord(
            self.key,
            self.created_at,
            self.last_seen,
            self.expires_at,
            self.rotated_at,
            self.csrf_secret,
            self.user_id,
            self.auth_at,
            self.client_ip,
            self.user_agent,
            self.fingerprint,
            self.flags,
            data,
            self.dbsc,
        )
        new.apply(update, copy_values=copy_values)
        return new

    @property
    def lineage(self) -> str:
        """The session's lineage (:data:`LINEAGE_FLAG`). A record written before lineages
        existed has none: its current key stands in, and the next write stores that key as its
        lineage, so the value stays the same through later rotations."""
        return lineage_or_key(self.flags.get(LINEAGE_FLAG), self.key)

    def meta(self) -> dict[str, JSON]:
        return {name: getattr(self, name) for name in META_FIELDS}

    def to_json(self) -> str:
        doc: dict[str, Any] = self.meta()
        doc["key"] = self.key
        doc["data"] = self.data
        return dumps(doc)

    @classmethod
    def from_parts(cls, key: str, meta: dict[str, Any], data: dict[str, Any]) -> SessionRecord:
        return cls(
            key=key,
            created_at=float(meta["created_at"]),
            last_seen=float(meta["last_seen"]),
            expires_at=float(meta["expires_at"]),
            rotated_at=float(meta["rotated_at"]),
            csrf_secret=str(meta["csrf_secret"]),
            user_id=None if meta.get("user_id") is None else str(meta["user_id"]),
            auth_at=None if meta.get("auth_at") is None else float(meta["auth_at"]),
            client_ip=str(meta.get("client_ip") or ""),
            user_agent=str(meta.get("user_agent") or ""),
            fingerprint=meta.get("fingerprint"),
            flags=dict(meta.get("flags") or {}),
            data=data,
            dbsc=meta.get("dbsc") or None,
        )

    @classmethod
    def from_json(cls, text: str) -> SessionRecord:
        doc = json.loads(text)
        return cls.from_parts(doc["key"], doc, doc.get("data") or {})

    def apply(self, update: RecordUpdate, *, copy_values: bool = False) -> None:
        """Apply a partial update in place (the reference semantics every store follows);
        ``copy_values``: take copies of the update's lists and dicts, not the objects."""
        for name, value in update.meta.items():
            if copy_values and type(value) not in _SCALARS:
                value = clone_json(value)  # a fingerprint, the flags, a binding: a container
            setattr(self, name, value)
        data = self.data
        data.update(clone_map(update.set_data) if copy_values else update.set_data)
        for name in update.del_data:
            data.pop(name, None)


@dataclass(slots=True)
class RecordUpdate:
    """The part of a session a request changed: only this is written (no lost updates).

    ``meta`` maps names from :data:`META_FIELDS` to new values; ``set_data`` and ``del_data``
    touch only the named data keys, so two concurrent requests writing different keys both win.
    ``activity`` (when given) is appended to the session's bounded activity trail.
    """

    meta: dict[str, JSON] = field(default_factory=dict)
    set_data: dict[str, JSON] = field(default_factory=dict)
    del_data: tuple[str, ...] = ()
    activity: dict[str, JSON] | None = None

    def __post_init__(self) -> None:
        if self.meta and not _META_NAMES.issuperset(self.meta):
            unknown = set(self.meta).difference(META_FIELDS)
            raise ValueError(f"RecordUpdate.meta: unknown fields {sorted(unknown)}")

    def is_empty(self) -> bool:
        return not (self.meta or self.set_data or self.del_data or self.activity)


@dataclass(frozen=True, slots=True)
class Alias:
    """What a periodically rotated-out ID becomes: for ``grace_until`` it still reaches
    ``target`` (concurrent in-flight requests keep working); after that, until ``until``, it is
    remembered as rotated-out so a replay is reported."""

    key: str
    target: str
    at: float
    grace_until: float
    until: float
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class Tombstone:
    """What a revoked, logged-out or rotated-out ID becomes: refused, and recognised if replayed.

    ``lineage`` is the ended session's lineage (:attr:`SessionRecord.lineage`), so that the
    events of a replay of its ID name the session it was; ``""`` when unknown (a tombstone
    written by an earlier version)."""

    key: str
    reason: str
    at: float
    until: float
    user_id: str | None = None
    lineage: str = ""


Lookup: TypeAlias = SessionRecord | Alias | Tombstone | None


def lineage_or_key(stored: object, key: str) -> str:
    """A record's lineage from its stored ``lineage`` flag (``stored``: the flag's value, or
    ``None``); a record written before lineages existed has none and its ``key`` stands in
    (:attr:`SessionRecord.lineage`). Stores that read the flag themselves use this too."""
    return stored if isinstance(stored, str) and stored else key


#: The types of JSON's scalars: a value of exactly one of these is immutable and never copied.
#: Anything else (lists, dicts, and subclasses of any JSON type) goes through :func:`clone_json`.
_SCALARS = frozenset((str, int, float, bool, type(None)))
#: The one type of a key JSON keeps as it is.
_STR = frozenset((str,))


def clone_json(value: JSON) -> JSON:
    """A copy of a JSON value as a JSON round trip gives it back, so that a store keeping
    records in memory hands back what a store keeping JSON does: a tuple comes back as a list,
    a subclass of ``str``, ``int`` or ``float`` (``markupsafe.Markup``, an enum member) as the
    plain value, a key that is not a string as JSON spells it. Much cheaper than
    ``loads(dumps(value))`` or ``copy.deepcopy`` for plain lists, dicts and scalars: only an odd
    value goes through JSON."""
    if isinstance(value, dict):
        if not _STR.issuperset(map(type, value)):
            return cast(JSON, loads(dumps(value)))  # keys JSON turns into strings
        return clone_map(value)
    if isinstance(value, list):
        return [v if type(v) in _SCALARS else clone_json(v) for v in value]
    if type(value) in _SCALARS:
        return value
    return cast(JSON, loads(dumps(value)))  # a tuple, a subclass of a scalar type


def clone_map(mapping: dict[str, Any]) -> dict[str, Any]:
    """A copy of a mapping of JSON values under string keys (a record's data, flags,
    fingerprint: the core names them) as :func:`clone_json` copies them; scalars (almost all
    of them) are shared."""
    copy = dict(mapping)  # scalars only (checked in C): the shallow copy is a full one
    if not _SCALARS.issuperset(map(type, mapping.values())):
        for name, value in mapping.items():
            if type(value) not in _SCALARS:
                copy[name] = clone_json(value)
    return copy


#: The one encoder of every stored JSON value (compact, UTF-8, no NaN); made once, since
#: ``json.dumps`` with options builds a new encoder per call. ``encode`` keeps no state between
#: calls, so it is shared by every thread.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def loads(text: str | bytes) -> Any:
    return json.loads(text)
