"""The Redis store's layout: key names, hash fields, value encoding, and the Lua scripts.

Keys (``P`` is the store's prefix, ``sw:`` by default; the kinds are :data:`KEY_LAYOUT`, the one
table both the Python side and every script use: it is written into each script as its
constants when the scripts are loaded, see ``lua/prelude.lua``):

=====================  =========  ===========================================================
key                    type       holds
=====================  =========  ===========================================================
``P s:<key>``          HASH       one session key: a live record, an alias or a tombstone
``P u:<user_id>``      ZSET       the user's live keys, each scored 0 (age comes from ``c``)
``P a:<key>``          LIST       the activity trail, JSON entries trimmed to ``activity_max``
=====================  =========  ===========================================================

Fields of a ``P s:<key>`` hash (:data:`META_CODES`, :data:`FP_CODES` and the marker fields):

===========  ====================================  =========================
field        holds                                 in
===========  ====================================  =========================
``c``        created_at (marks a live record)      record
``l``        last_seen                             record
``e``        expires_at                            record
``r``        rotated_at                            record
``x``        csrf_secret                           record
``u``        user_id                               record, alias, tombstone
``a``        auth_at                               record
``i``        client_ip                             record
``g``        user_agent                            record
``F``        flags                                 record
``D``        DBSC binding (JSON)                   record
``f``        the fingerprint, when it is ``{}``    record
``0``-``4``  fingerprint ip, net, ua, uav, lang    record
``f:<n>``    any other fingerprint trait           record
``d:<n>``    data key ``<n>``                      record
``@``        target (marks an alias)               alias
``!``        reason (marks a tombstone)            tombstone
``T``        at                                    alias, tombstone
``G``        grace_until                           alias
``U``        until                                 alias, tombstone
``L``        the ended session's lineage (as is;   tombstone
             none in one of an earlier version)
===========  ====================================  =========================

A meta field holding its default (``None``, ``""``, ``{}`` as in
:class:`~sessionwarden.records.SessionRecord`) is left out. Values: a time (``c l e r a T G U``)
is its IEEE 754 double, 8 bytes big-endian (exact, and half the size of its shortest decimal);
every other value is JSON, except that a non-empty string whose first character cannot start
JSON text (not ``"{[-0-9tfn``) is stored as is (``dark``, ``Chrome 124 on Linux``). JSON text
never passes for either (a time whose 8 bytes all look like number text is written as JSON
number text instead), so values written as JSON by earlier versions read the same. Nothing is
ever unpickled or evaluated. So a read is one HGETALL. Small hashes stay in Redis' compact
listpack encoding as long as every value fits ``hash-max-listpack-value`` (64 bytes by default;
raise it to about 256 if your user agents or data values are longer).

In a user index, a key of 64 lowercase hex digits (a keyed hash, as the core makes them) is held
as byte 0xFF and its 32 bytes, which no key can be as is (0xFF never occurs in UTF-8); other keys
as is. Members whose record is gone are pruned lazily.

The scripts live in ``lua/`` next to this module: the key layout's constants and the helpers of
``prelude.lua`` that an operation's script uses are put in front of it, once, when this module
is imported (a call defines only the helpers it can run); the stores register them
with redis-py's ``register_script`` (EVALSHA, loading the script when Redis does not know it).
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Final, cast

from ..records import JSON, Alias, Lookup, RecordUpdate, SessionRecord, Tombstone, dumps, loads

#: An expiry is never set sooner than this after Redis' own clock (see the store's docstring).
MIN_RETENTION_MS: Final = 60_000


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """The kinds of key under a store's prefix. Python names every key from this, and every
    script has it as constants (written into the source when the scripts are loaded; a call
    passes only the prefix, see :meth:`script_args`)."""

    session: str = "s:"
    activity: str = "a:"
    user: str = "u:"

    def script_args(self, prefix: str) -> tuple[str, ...]:
        """The arguments every script call starts with (``ARGV[1]``: the prefix)."""
        return (prefix,)


KEY_LAYOUT: Final = KeyLayout()

# -- field names --------------------------------------------------------------------------------

#: Meta field name -> hash field. ``c`` (created_at) marks a live record.
META_CODES: Final[dict[str, str]] = {
    "created_at": "c",
    "last_seen": "l",
    "expires_at": "e",
    "rotated_at": "r",
    "csrf_secret": "x",
    "user_id": "u",
    "auth_at": "a",
    "client_ip": "i",
    "user_agent": "g",
    "fingerprint": "f",
    "flags": "F",
    "dbsc": "D",
}
_CODE_META: Final[dict[str, str]] = {code: name for name, code in META_CODES.items()}
#: Optional meta fields and the default that is not stored.
_DEFAULTS: Final[dict[str, JSON]] = {
    "user_id": None,
    "auth_at": None,
    "client_ip": "",
    "user_agent": "",
    "fingerprint": None,
    "flags": {},
    "dbsc": None,
}
DATA_PREFIX: Final = "d:"
#: Fingerprint traits are stored one field each: sessionwarden's own traits under one-digit
#: names (a listpack keeps a name like ``0`` as a 2-byte integer), any other trait as
#: ``f:<name>``.
FP_PREFIX: Final = "f:"
FP_CODES: Final[dict[str, str]] = {"ip": "0", "net": "1", "ua": "2", "uav": "3", "lang": "4"}
_FP_TRAIT: Final[dict[str, str]] = {code: name for name, code in FP_CODES.items()}
#: The traits sessionwarden's fingerprint has, cleared when it changes.
FINGERPRINT_TRAITS: Final = tuple(FP_CODES)
LIVE: Final = "c"
ALIAS: Final = "@"
TOMB: Final = "!"
_AT, _GRACE, _UNTIL, _USER, _LINEAGE = "T", "G", "U", "u", "L"
#: Fields holding a time (seconds since the epoch), stored as an 8-byte double (see ``_time``).
_TIME_CODES: Final = frozenset({"c", "l", "e", "r", "a"})


def text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else str(value)


def pairs(reply: Any) -> dict[str, bytes]:
    """A hash reply (dict from HGETALL, flat list from a script) as field name -> raw value."""
    if isinstance(reply, Mapping):
        return {text(k): _raw(v) for k, v in reply.items()}
    items = list(reply or ())
    return {text(items[i]): _raw(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def ended_pairs(reply: Any) -> dict[str, str]:
    """A script's ``{key, lineage, key, lineage, ...}`` answer (the sessions it ended) as
    key -> lineage, in the script's order."""
    items = list(reply or ())
    return {text(items[i]): text(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def _raw(value: Any) -> bytes:
    return bytes(value) if isinstance(value, bytes | bytearray) else str(value).encode("utf-8")


def _is_default(name: str, value: JSON) -> bool:
    if name not in _DEFAULTS:
        return False
    default = _DEFAULTS[name]
    return value is None if default is None else type(value) is type(default) and value == default


# -- value encoding -------------------------------------------------------------------------------
# A value is JSON, except two cheaper spellings that JSON text can never be mistaken for (so data
# written by older layouts, all JSON, reads the same):
# * a non-empty string whose first character cannot start a JSON text is stored as is (``dark``
#   rather than ``"dark"``); other strings (``"42"``, ``"true"``, ``""``) stay JSON;
# * a time is 8 bytes, its IEEE 754 double big-endian (exact, 10 bytes in a listpack where the
#   shortest decimal takes about 20). JSON number text has only ``0-9 + - . e E``; in the rare
#   case where all 8 bytes are among those, the time is stored as JSON number text instead.

#: Bytes a JSON text can start with (as written by :func:`~sessionwarden.records.dumps`).
_JSON_START: Final = frozenset(b'"{[-0123456789tfn')
_JSON_START_CHARS: Final = frozenset('"{[-0123456789tfn')
_NUMBER_CHARS: Final = b"0123456789+-.eE"
_DOUBLE: Final = struct.Struct(">d")

#: Values whose read gives them back as they are (their own type, equal); any other value
#: (a list, a dict, a subclass) reads as the decoding of its encoding.
_PLAIN: Final = frozenset({str, int, float, bool, type(None)})


def _as_read(value: Any, raw: str) -> Any:
    """What a read of the field ``value`` was stored in as ``raw`` gives back."""
    return value if type(value) in _PLAIN else _value(raw)


def enc(value: JSON) -> str:
    """A non-time value as stored."""
    if type(value) is str:
        if value and value[0] not in _JSON_START_CHARS:
            return value
    elif type(value) is int:
        return str(value)  # JSON's text for an integer (bool is not int here)
    return dumps(value)


def time_enc(value: float) -> bytes | str:
    """A time as stored (see above); non-finite times are refused, as JSON refuses them."""
    number = float(value)
    if not math.isfinite(number):
        return dumps(number)  # raises ValueError
    packed = _DOUBLE.pack(number)
    if not packed.translate(None, _NUMBER_CHARS):
        return dumps(value)
    return packed


def _time(raw: bytes | str) -> float:
    """A stored time: an 8-byte double, or JSON number text (older layouts)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) == 8 and raw.translate(None, _NUMBER_CHARS):
        return float(_DOUBLE.unpack(raw)[0])
    return float(loads(raw))


def _fingerprint_fields(
    fingerprint: Mapping[str, JSON], written: Parts | None = None
) -> list[str]:
    """A fingerprint as one short field per trait (``0`` for the IP, ``f:<name>`` for other
    traits): as one JSON value it would exceed Redis's compact-encoding limit for hash values
    (64 bytes by default) and triple the hash's memory. ``written``: as in
    :func:`update_fields`."""
    flat: list[str] = []
    for name, value in fingerprint.items():
        code = FP_CODES.get(name)
        raw = enc(value)
        flat += [code or FP_PREFIX + name, raw]
        if written is not None:
            written[_TRAIT if code else _EXTRA_TRAIT][name] = _as_read(value, raw)
    return flat


#: The fields sessionwarden's own fingerprint may occupy, cleared when it changes (earlier
#: versions kept its traits under ``f:<name>``: ``sessionwarden migrate`` moves them).
_FP_FIELDS: Final = ("f", *FP_CODES.values())


def record_fields(record: SessionRecord) -> list[str | bytes]:
    flat: list[str | bytes] = []
    for name, value in record.meta().items():
        code = META_CODES[name]
        if code in _TIME_CODES and value is not None:
            flat += [code, time_enc(cast(float, value))]
        elif name == "fingerprint" and value:
            flat += _fingerprint_fields(cast(dict[str, JSON], value))
        elif not _is_default(name, value):
            flat += [code, enc(value)]
    for name, value in record.data.items():
        flat += [DATA_PREFIX + name, enc(value)]
    return flat


def update_fields(
    update: RecordUpdate, written: Parts | None = None
) -> tuple[list[str | bytes], list[str]]:
    """The hash fields ``update`` sets (name, value, ...) and those it deletes. ``written``
    (from :func:`new_parts`): also put each set field's value there as a read of the field
    would give it, by where :func:`decode` puts it, so the caller can build the record it wrote
    (:meth:`Scalars.record`) without decoding what it sent."""
    sets: list[str | bytes] = []
    dels: list[str] = []
    meta = None if written is None else written[_META]
    items: Iterable[tuple[str, Any]] = update.meta.items()
    for name, value in items:
        code = META_CODES.get(name)
        if code is None:
            raise ValueError(f"unknown record field {name!r}")
        if code in _TIME_CODES and value is not None:
            sets += [code, time_enc(value)]
            if meta is not None:
                meta[name] = float(value)
        elif name == "fingerprint":
            _fingerprint_update(value, sets, dels, written)
        elif name in _DEFAULTS and _is_default(name, value):
            dels.append(code)
        else:
            raw = enc(value)
            sets += [code, raw]
            if meta is not None:
                meta[name] = _as_read(value, raw)
    _data_update(update, sets, dels, None if written is None else written[_DATA])
    return sets, dels


def _fingerprint_update(
    value: Any, sets: list[str | bytes], dels: list[str], written: Parts | None
) -> None:
    """:func:`update_fields` of a new fingerprint: the previous fingerprint's fields go
    (sessionwarden's own traits and a whole-value ``f``), except those rewritten."""
    if value:
        new = _fingerprint_fields(value, written)
    elif _is_default("fingerprint", value):
        new = []
    else:
        new = ["f", enc(value)]
        if written is not None:
            written[_META]["fingerprint"] = _as_read(value, new[1])
    sets += new
    dels += [d for d in _FP_FIELDS if d not in new[::2]]


def _data_update(
    update: RecordUpdate,
    sets: list[str | bytes],
    dels: list[str],
    data: dict[str, Any] | None,
) -> None:
    """:func:`update_fields` of the data keys (``data``: the written part)."""
    for name, value in update.set_data.items():
        raw = enc(value)
        sets += [DATA_PREFIX + name, raw]
        if data is not None:
            data[name] = _as_read(value, raw)
    if update.del_data:
        dels += [DATA_PREFIX + name for name in update.del_data]
        if data is not None:
            for name in update.del_data:
                data.pop(name, None)


def marker_fields(item: Alias | Tombstone) -> list[str | bytes]:
    flat: list[str | bytes]
    if isinstance(item, Alias):
        flat = [
            ALIAS,
            enc(item.target),
            _AT,
            time_enc(item.at),
            _GRACE,
            time_enc(item.grace_until),
        ]
    else:
        flat = [TOMB, enc(item.reason), _AT, time_enc(item.at)]
        if item.lineage:
            flat += [_LINEAGE, item.lineage]
    flat += [_UNTIL, time_enc(item.until)]
    if item.user_id is not None:
        flat += [_USER, enc(item.user_id)]
    return flat


_SCALAR_CACHE_SIZE: Final = 8192
_NUMBER_START: Final = frozenset(b"-0123456789")
_CONSTANTS: Final[dict[bytes, JSON]] = {b"null": None, b"true": True, b"false": False}


def _value(raw: bytes | str) -> Any:
    """One stored (non-time) value, with fast paths for the shapes almost every field has (a
    plain string, a number): this runs for every field of every request's read."""
    if isinstance(raw, str):
        raw = raw.encode()
    if raw[:1] == b'"' and b"\\" not in raw and raw[-1:] == b'"' and len(raw) >= 2:
        return raw[1:-1].decode("utf-8")
    if raw and raw[0] not in _JSON_START:
        return raw.decode("utf-8")  # a string stored as is
    if raw[:1] and raw[0] in _NUMBER_START and b"e" not in raw and b"E" not in raw:
        try:
            return float(raw) if b"." in raw else int(raw)
        except ValueError:
            pass
    if raw in _CONSTANTS:
        return _CONSTANTS[raw]
    return loads(raw)


#: Where a live record's hash field goes: the meta fields, the data, the fingerprint's traits, the
#: traits stored under ``f:<name>`` (never over a trait's own field), or nowhere (unknown).
_META, _DATA, _TRAIT, _EXTRA_TRAIT, _UNKNOWN = 0, 1, 2, 3, None
_FieldSpec = tuple[int | None, str, bool]
#: A live record's values by where they go (``_META``, ``_DATA``, ``_TRAIT``, ``_EXTRA_TRAIT``).
Parts = tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]


def new_parts() -> Parts:
    """Empty :data:`Parts` (for :func:`update_fields` and :meth:`Scalars.record`)."""
    return ({}, {}, {}, {})

#: Hash field name -> (where its value goes, its name there, whether it holds a time): worked out
#: once per name (:func:`_field_spec`), as a session's fields come back with the same names on
#: every request.
_FIELD_SPECS: dict[str, _FieldSpec] = {}


def _field_spec(name: str) -> _FieldSpec:
    meta = _CODE_META.get(name)
    spec: _FieldSpec
    if meta is not None:
        spec = (_META, meta, name in _TIME_CODES)
    elif name in _FP_TRAIT:
        spec = (_TRAIT, _FP_TRAIT[name], False)
    elif name.startswith(DATA_PREFIX):
        spec = (_DATA, name[len(DATA_PREFIX) :], False)
    elif name.startswith(FP_PREFIX):
        spec = (_EXTRA_TRAIT, name[len(FP_PREFIX) :], False)
    else:
        spec = (_UNKNOWN, name, False)
    if len(_FIELD_SPECS) >= _SCALAR_CACHE_SIZE:
        _FIELD_SPECS.clear()
    _FIELD_SPECS[name] = spec
    return spec


def decode(key: str, fields: Mapping[str, str | bytes], scalars: Scalars | None = None) -> Lookup:
    """What a hash holds (``scalars``: remember parsed values by content, see
    :class:`Scalars`; without it nothing is remembered beyond this call)."""
    if LIVE in fields:
        return (Scalars() if scalars is None else scalars).record(key, fields)
    user = _value(fields[_USER]) if _USER in fields else None
    if ALIAS in fields:
        return Alias(
            key=key,
            target=str(_value(fields[ALIAS])),
            at=_time(fields[_AT]),
            grace_until=_time(fields[_GRACE]),
            until=_time(fields[_UNTIL]),
            user_id=user,
        )
    if TOMB in fields:
        return Tombstone(
            key=key,
            reason=str(_value(fields[TOMB])),
            at=_time(fields[_AT]),
            until=_time(fields[_UNTIL]),
            user_id=user,
            lineage=text(fields.get(_LINEAGE, b"")),  # as is: it may look like a number
        )
    return None


class Scalars:
    """:func:`_value` and :func:`_time` remembered by content for scalars: a session's fields
    come back byte-identical on every request until it is next written. (Safe between threads:
    dict reads and writes are atomic, and a value is the same whoever parsed it.)"""

    __slots__ = ("_times", "_values")

    def __init__(self) -> None:
        self._values: dict[bytes | str, Any] = {}
        self._times: dict[bytes | str, float] = {}

    def time(self, raw: bytes | str) -> float:
        value = self._times.get(raw)
        if value is None:
            value = _time(raw)
            if len(self._times) >= _SCALAR_CACHE_SIZE:
                self._times.clear()
            self._times[raw] = value
        return value

    def parse(self, raw: bytes | str) -> Any:
        value = self._values.get(raw)
        if value is None:
            value = _value(raw)
            if type(value) in (dict, list):
                return value  # mutable: never shared between requests
            if len(self._values) >= _SCALAR_CACHE_SIZE:
                self._values.clear()
            self._values[raw] = value
        return value

    def record(
        self, key: str, fields: Mapping[str, str | bytes], written: Parts | None = None
    ) -> SessionRecord:
        """The live record a hash holds: each field's value as :meth:`time` or :meth:`parse`
        gives it (a value remembered is looked up here, without the call). ``written``: the
        values of the hash's other fields, already as a read gives them (see
        :func:`update_fields`; taken over, not copied)."""
        times, values, specs = self._times, self._values, _FIELD_SPECS
        parts = new_parts() if written is None else written
        for name, raw in fields.items():
            where, out, is_time = specs.get(name) or _field_spec(name)
            if where is None:
                continue
            if is_time:
                value = times.get(raw)
                if value is None:
                    value = self.time(raw)
            else:
                value = values.get(raw)
                if value is None:
                    value = self.parse(raw)
            parts[where][out] = value
        meta, data, fingerprint, extra = parts
        for name, value in extra.items():
            fingerprint.setdefault(name, value)
        if fingerprint:
            meta["fingerprint"] = fingerprint
        return SessionRecord.from_parts(key, meta, data)


def flat_fields(reply: list[bytes]) -> dict[str, bytes]:
    """A flat ``HGETALL`` reply as field name -> raw value (values decoded lazily)."""
    it = iter(reply)
    # names and values taken in turn from one iterator, without a Python-level loop
    return dict(zip(map(bytes.decode, it), it, strict=False))


def glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


# -- the scripts ----------------------------------------------------------------------------------

_OPERATIONS: Final = (
    "insert",
    "rotate",
    "update",
    "revoke",
    "delete",
    "revoke_user",
    "user_sessions",
    "purge",
    "stats",
    "migrate",
)


def _lua_string(value: str) -> str:
    """``value`` as a Lua string literal (every byte outside printable ASCII as ``\\ddd``)."""
    out = []
    for byte in value.encode("utf-8"):
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in "\\'" else f"\\{byte:03d}")
    return "'" + "".join(out) + "'"


def _layout_lua() -> str:
    """The key layout as the scripts' constants (see ``lua/prelude.lua``)."""
    kinds = (KEY_LAYOUT.session, KEY_LAYOUT.activity, KEY_LAYOUT.user)
    return (
        "local S_KIND, A_KIND, U_KIND = " + ", ".join(_lua_string(k) for k in kinds) + "\n"
        f"local MIN_MS = {int(MIN_RETENTION_MS)}\n"
    )


_DEFINITION: Final = re.compile(r"^local function ([A-Za-z_][A-Za-z0-9_]*)\b", re.MULTILINE)


def _helpers(prelude: str) -> tuple[str, list[tuple[str, str]]]:
    """A prelude split into its head (what comes before the first helper) and its helpers,
    ``(name, source)`` in order; a helper's source starts with the comment lines above it."""
    starts: list[tuple[int, str]] = []
    for match in _DEFINITION.finditer(prelude):
        start = match.start()
        while True:  # take the comment lines just above the definition along
            above = prelude.rfind("\n", 0, max(start - 1, 0)) + 1
            if start == 0 or not prelude[above:start].startswith("--"):
                break
            start = above
        starts.append((start, match.group(1)))
    head = prelude[: starts[0][0]] if starts else prelude
    ends = [s for s, _ in starts[1:]] + [len(prelude)]
    return head, [(name, prelude[s:e]) for (s, name), e in zip(starts, ends, strict=True)]


def _used(body: str, helpers: list[tuple[str, str]]) -> str:
    """The helpers ``body`` names, with those they name in turn, in the prelude's order."""
    wanted: set[str] = set()
    text_in = body
    while True:
        found = {
            name
            for name, _ in helpers
            if name not in wanted and re.search(rf"\b{name}\b", text_in)
        }
        if not found:
            break
        wanted |= found
        text_in = "\n".join(src for name, src in helpers if name in found)
    return "".join(src for name, src in helpers if name in wanted)


def load_scripts(names: Sequence[str], preludes: Sequence[str] = ("prelude",)) -> dict[str, str]:
    """Operation name -> its Lua source: the key layout's constants, the ``preludes``' heads
    and the helpers the script uses (see ``lua/prelude.lua``), then ``lua/<name>.lua``."""
    lua = files(__package__).joinpath("lua")
    heads: list[str] = []
    helpers: list[tuple[str, str]] = []
    for prelude in preludes:
        head, found = _helpers(lua.joinpath(f"{prelude}.lua").read_text(encoding="utf-8"))
        heads.append(head)
        helpers += found
    start = _layout_lua() + "".join(heads)
    scripts = {}
    for name in names:
        body = lua.joinpath(f"{name}.lua").read_text(encoding="utf-8")
        scripts[name] = start + _used(body, helpers) + "\n" + body
    return scripts


#: Operation name -> the Lua source run for it (the prelude, then the operation's script).
SCRIPTS: Final[dict[str, str]] = load_scripts(_OPERATIONS)
