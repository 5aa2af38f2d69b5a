"""Redis store: many processes and hosts share sessions through one Redis (6.2 or later).

Layout (``P`` is the prefix, ``sw:`` by default):

* ``P s:<key>`` — one HASH per store key, holding exactly one of

  - a live record: ``c`` created_at (also the marker of a live record), ``l`` last_seen,
    ``e`` expires_at, ``r`` rotated_at, ``x`` csrf_secret, ``u`` user_id, ``a`` auth_at,
    ``i`` client_ip, ``g`` user_agent, ``f`` fingerprint, ``F`` flags, and ``d:<name>`` per
    data key. Every value is JSON; a meta field holding its default (``None``, ``""``, ``{}``
    as in :class:`~sessionwarden.records.SessionRecord`) is left out;
  - an alias: ``@`` target (the marker), ``T`` at, ``G`` grace_until, ``U`` until, ``u`` user;
  - a tombstone: ``!`` reason (the marker), ``T`` at, ``U`` until, ``u`` user.

  So :meth:`RedisStore.get` is one HGETALL. Small hashes stay in Redis' compact listpack
  encoding as long as every value fits ``hash-max-listpack-value`` (64 bytes by default; raise
  it to about 256 if your user agents or data values are longer).
* ``P u:<user_id>`` — a sorted set of the user's live keys scored by created_at. Members whose
  record is gone are pruned lazily (:meth:`~RedisStore.user_sessions`, cap enforcement,
  :meth:`~RedisStore.purge`).
* ``P a:<key>`` — the activity trail, a list trimmed to ``activity_max``; moved on rotation and
  deleted with the record.

Every key expires with its deadline (PEXPIREAT at ``expires_at``, or ``until`` for aliases and
tombstones; a user index no earlier than its latest member), so Redis does most of the purging.
Deadlines come from the core's clock, which may differ from Redis' own (clock skew between hosts,
an injected clock): an expiry is therefore never set sooner than :data:`MIN_RETENTION_MS` after
Redis' current time, so an already-due item is still reported (as expired, as revoked) for a
while instead of vanishing mid-request. :meth:`~RedisStore.purge` removes items by their stored
deadline, exactly like the other stores.

Every multi-key step (insert with cap eviction, update, rotate, revoke, ...) is one Lua script,
hence atomic. Scripts derive some key names (a user's index, an evicted session) from stored
data. That is fine on a single Redis or with replicas; on Redis Cluster pass
``cluster_hash_tag=True``, which wraps the prefix in a hash tag (``{sw}:``) so all keys of a store
live in one slot: the scripts stay atomic, at the price of not sharding sessions across the
cluster (one slot, hence one primary, holds them all).

Any Redis failure surfaces as :class:`~sessionwarden.stores.base.StoreUnavailable` within about
``timeout`` seconds: socket and connect timeouts are ``timeout``, and a command is retried only
once, immediately, and only after a connection error (a dropped connection), never after a timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias, TypeVar, cast

import redis as redis_sync
import redis.asyncio as redis_async
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from ..records import (
    JSON,
    Alias,
    Lookup,
    RecordUpdate,
    SessionRecord,
    Tombstone,
    dumps,
    loads,
)
from .base import StoreStats, StoreUnavailable
from .resp import PipelinedReader, RespError, fast_path_target

__all__ = ["MIN_RETENTION_MS", "AsyncRedisStore", "RedisStore"]

T = TypeVar("T")

#: An expiry is never set sooner than this after Redis' own clock (see the module docstring).
MIN_RETENTION_MS: Final = 60_000
#: Seconds between PINGs on a connection that sat idle (catches connections dropped silently).
HEALTH_CHECK_INTERVAL: Final = 15
#: Keys examined per SCAN step by :meth:`RedisStore.stats`.
STATS_BATCH: Final = 1000

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
}
DATA_PREFIX: Final = "d:"
#: Fingerprint traits are stored one field each (``f:ip`` …); a single ``f`` field (one JSON
#: value) is still read. The traits sessionwarden's fingerprint has, cleared when it changes:
FP_PREFIX: Final = "f:"
FINGERPRINT_TRAITS: Final = ("ip", "net", "ua", "uav", "lang")
LIVE: Final = "c"
ALIAS: Final = "@"
TOMB: Final = "!"
_AT, _GRACE, _UNTIL, _USER = "T", "G", "U", "u"

# -- Lua ----------------------------------------------------------------------------------------
# ARGV[1] is always the store's prefix. Numbers arrive as JSON number text: compared with
# tonumber(), but written back (scores, tombstone times) as the original text so no precision is
# lost to Lua's number formatting.

_LUA_PRELUDE = """
local P = ARGV[1]
local MIN_MS = %(min_ms)d
local MAX_MS = 4503599627370496
local NOW_MS = nil

local function now_ms()
  if not NOW_MS then
    local t = redis.call('TIME')
    NOW_MS = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return NOW_MS
end

local function ms_of(seconds_text)
  return math.ceil(tonumber(seconds_text) * 1000)
end

local function clamp(ms)
  local floor = now_ms() + MIN_MS
  if ms < floor then ms = floor end
  if ms > MAX_MS then ms = MAX_MS end
  return ms
end

local function expire_at(key, ms)
  redis.call('PEXPIREAT', key, string.format('%%d', clamp(ms)))
end

-- never shortens: used for user indexes (expire no earlier than the latest member)
local function extend(key, ms)
  local target = clamp(ms)
  local pttl = redis.call('PTTL', key)
  if pttl == -1 or (pttl >= 0 and now_ms() + pttl < target) then
    redis.call('PEXPIREAT', key, string.format('%%d', target))
  end
end

local function skey(k) return P .. 's:' .. k end
local function akey(k) return P .. 'a:' .. k end
local function ukey(user_json) return P .. 'u:' .. cjson.decode(user_json) end

local function is_live(k) return redis.call('HEXISTS', skey(k), 'c') == 1 end

local function hset(key, flat)
  local n = #flat
  local i = 1
  while i <= n do
    local j = math.min(i + 199, n)
    redis.call('HSET', key, unpack(flat, i, j))
    i = j + 1
  end
end

local function hdel(key, names)
  local n = #names
  local i = 1
  while i <= n do
    local j = math.min(i + 199, n)
    redis.call('HDEL', key, unpack(names, i, j))
    i = j + 1
  end
end

local function to_map(flat)
  local m = {}
  for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end
  return m
end

local function to_flat(m)
  local flat = {}
  for k, v in pairs(m) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  return flat
end

-- read `count` items from ARGV starting at `pos`; returns the list and the next position
local function take(pos, count)
  local out = {}
  for i = pos, pos + count - 1 do out[#out + 1] = ARGV[i] end
  return out, pos + count
end

-- replace whatever is at session key k with a tombstone/alias (fields), expiring at until
local function bury(k, flat, until_text)
  local s = skey(k)
  redis.call('DEL', s, akey(k))
  hset(s, flat)
  expire_at(s, ms_of(until_text))
end

-- evict the oldest live members beyond cap, never `keep`; prunes members no longer live
local function enforce_cap(idx, keep, cap, user_json, at_text, until_text, reason_json)
  local evicted = {}
  if cap <= 0 then return evicted end
  local live = {}
  for _, m in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    if is_live(m) then
      live[#live + 1] = m
    else
      redis.call('ZREM', idx, m)
    end
  end
  local excess = #live - cap
  for _, m in ipairs(live) do
    if excess <= 0 then break end
    if m ~= keep then
      bury(m, {'!', reason_json, 'T', at_text, 'U', until_text, 'u', user_json}, until_text)
      redis.call('ZREM', idx, m)
      evicted[#evicted + 1] = m
      excess = excess - 1
    end
  end
  return evicted
end

-- append an entry to a trail bounded to amax (the newest kept); true when appended
local function append_activity(a, amax, entry)
  if entry == '' or amax <= 0 then return false end
  redis.call('RPUSH', a, entry)
  redis.call('LTRIM', a, -amax, -1)
  return true
end

local function index_add(user_json, k, score_text, e_ms)
  local idx = ukey(user_json)
  redis.call('ZADD', idx, score_text, k)
  extend(idx, e_ms)
  return idx
end
"""

# KEYS: s(key) [, u(user)]
# ARGV: P, key, cap, tomb_until, reason_json, field, value, ...
_LUA_INSERT = """
local key, cap, until_text, reason = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local flat = take(6, #ARGV - 5)
local rec = to_map(flat)
local s = skey(key)
if redis.call('HEXISTS', s, 'c') == 1 then
  local previous = redis.call('HGET', s, 'u')
  if previous then redis.call('ZREM', ukey(previous), key) end
end
redis.call('DEL', s)
hset(s, flat)
local e_ms = ms_of(rec['e'])
expire_at(s, e_ms)
if not rec['u'] then return {} end
local idx = index_add(rec['u'], key, rec['c'], e_ms)
return enforce_cap(idx, key, cap, rec['u'], rec['l'], until_text, reason)
"""

# KEYS: s(old), s(new)
# ARGV: P, old, new, cap, tomb_until, reason_json, old_until, activity_max, activity_json,
#       n_old, old fields..., n_set, set fields..., n_del, del names...
_LUA_ROTATE = """
local old, new, cap, until_text, reason = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local old_until, amax, entry = ARGV[7], tonumber(ARGV[8]), ARGV[9]
local pos = 10
local old_flat, sets, dels
old_flat, pos = take(pos + 1, tonumber(ARGV[pos]))
sets, pos = take(pos + 1, tonumber(ARGV[pos]))
dels, pos = take(pos + 1, tonumber(ARGV[pos]))
local so, sn = skey(old), skey(new)
if redis.call('HEXISTS', so, 'c') == 0 then return false end
local rec = to_map(redis.call('HGETALL', so))
local old_user = rec['u']
for i = 1, #sets, 2 do rec[sets[i]] = sets[i + 1] end
for _, name in ipairs(dels) do rec[name] = nil end
-- the old key becomes the alias or tombstone
redis.call('DEL', so)
hset(so, old_flat)
expire_at(so, ms_of(old_until))
if old_user then redis.call('ZREM', ukey(old_user), old) end
-- the record moves to the new key (a live record there leaves its user's index, as on insert)
if old ~= new and redis.call('HEXISTS', sn, 'c') == 1 then
  local previous = redis.call('HGET', sn, 'u')
  if previous then redis.call('ZREM', ukey(previous), new) end
end
redis.call('DEL', sn)
hset(sn, to_flat(rec))
local e_ms = ms_of(rec['e'])
expire_at(sn, e_ms)
local ao, an = akey(old), akey(new)
if ao ~= an and redis.call('EXISTS', ao) == 1 then redis.call('RENAME', ao, an) end
append_activity(an, amax, entry)
if redis.call('EXISTS', an) == 1 then expire_at(an, e_ms) end
local out = {'ok'}
if rec['u'] then
  local idx = index_add(rec['u'], new, rec['c'], e_ms)
  for _, k in ipairs(enforce_cap(idx, new, cap, rec['u'], rec['l'], until_text, reason)) do
    out[#out + 1] = k
  end
end
return out
"""

# KEYS: s(key)
# ARGV: P, key, activity_max, activity_json ('' for none), n_set, set fields..., n_del, names...
_LUA_UPDATE = """
local key, amax, entry = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local pos = 5
local sets, dels
sets, pos = take(pos + 1, tonumber(ARGV[pos]))
dels, pos = take(pos + 1, tonumber(ARGV[pos]))
local s = skey(key)
if redis.call('HEXISTS', s, 'c') == 0 then return 0 end
local reindex, new_e = false, nil
for i = 1, #sets, 2 do
  local f = sets[i]
  if f == 'u' or f == 'c' then reindex = true end
  if f == 'e' then new_e = sets[i + 1] end
end
for _, f in ipairs(dels) do
  if f == 'u' then reindex = true end
end
local old_user = false
if reindex then old_user = redis.call('HGET', s, 'u') end
if #sets > 0 then hset(s, sets) end
if #dels > 0 then hdel(s, dels) end
local e_ms
if new_e then
  e_ms = ms_of(new_e)
  expire_at(s, e_ms)
  if redis.call('EXISTS', akey(key)) == 1 then expire_at(akey(key), e_ms) end
else
  e_ms = ms_of(redis.call('HGET', s, 'e'))
end
if reindex or new_e then
  local user = redis.call('HGET', s, 'u')
  if old_user and old_user ~= user then redis.call('ZREM', ukey(old_user), key) end
  if user then index_add(user, key, redis.call('HGET', s, 'c'), e_ms) end
end
if append_activity(akey(key), amax, entry) then expire_at(akey(key), e_ms) end
return 1
"""

# KEYS: s(key)
# ARGV: P, key, until, tombstone fields...
_LUA_REVOKE = """
local key, until_text = ARGV[2], ARGV[3]
local s = skey(key)
local user = false
if redis.call('HEXISTS', s, 'c') == 1 then
  user = redis.call('HGET', s, 'u')
elseif redis.call('HEXISTS', s, '@') == 0 then
  return 0
end
bury(key, take(4, #ARGV - 3), until_text)
if user then redis.call('ZREM', ukey(user), key) end
return 1
"""

# KEYS: s(key)
# ARGV: P, key
_LUA_DELETE = """
local key = ARGV[2]
local s = skey(key)
local user = false
if redis.call('HEXISTS', s, 'c') == 1 then user = redis.call('HGET', s, 'u') end
redis.call('DEL', s, akey(key))
if user then redis.call('ZREM', ukey(user), key) end
return 1
"""

# KEYS: u(user)
# ARGV: P, has_keep ('1'/'0'), keep, until, tombstone fields...
_LUA_REVOKE_USER = """
local idx, has_keep, keep, until_text = KEYS[1], ARGV[2] == '1', ARGV[3], ARGV[4]
local flat = take(5, #ARGV - 4)
local revoked = {}
for _, m in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
  if not (has_keep and m == keep) then
    if is_live(m) then
      bury(m, flat, until_text)
      revoked[#revoked + 1] = m
    end
    redis.call('ZREM', idx, m)
  end
end
return revoked
"""

# KEYS: u(user)
# ARGV: P
_LUA_USER_SESSIONS = """
local idx = KEYS[1]
local out = {}
for _, m in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
  local flat = redis.call('HGETALL', skey(m))
  local live = false
  for i = 1, #flat, 2 do
    if flat[i] == 'c' then live = true break end
  end
  if live then
    out[#out + 1] = m
    out[#out + 1] = flat
  else
    redis.call('ZREM', idx, m)
  end
end
return out
"""

# KEYS: any keys under the prefix (one SCAN step)
# ARGV: P, now
_LUA_PURGE = """
local now = tonumber(ARGV[2])
local plen = #P
local removed = 0
for _, k in ipairs(KEYS) do
  local kind, rest = string.sub(k, plen + 1, plen + 2), string.sub(k, plen + 3)
  local ktype = redis.call('TYPE', k)['ok']
  if kind == 's:' and ktype == 'hash' then
    local f = redis.call('HMGET', k, 'c', 'e', 'u', '@', '!', 'U')
    local deadline = false
    if f[1] then deadline = f[2] elseif f[4] or f[5] then deadline = f[6] end
    if not deadline or tonumber(deadline) == nil then
      -- not one of ours (or damaged): drop it
      redis.call('DEL', k, akey(rest))
      removed = removed + 1
    elseif tonumber(deadline) <= now then
      redis.call('DEL', k, akey(rest))
      if f[1] and f[3] then redis.call('ZREM', ukey(f[3]), rest) end
      removed = removed + 1
    elseif redis.call('PTTL', k) == -1 then
      expire_at(k, ms_of(deadline))
    end
  elseif kind == 'u:' and ktype == 'zset' then
    local latest = nil
    for _, m in ipairs(redis.call('ZRANGE', k, 0, -1)) do
      local e = redis.call('HGET', skey(m), 'e')
      if e and is_live(m) then
        local ms = ms_of(e)
        if not latest or ms > latest then latest = ms end
      else
        redis.call('ZREM', k, m)
      end
    end
    if latest then extend(k, latest) end
  elseif kind == 'a:' and ktype == 'list' then
    if not is_live(rest) then redis.call('DEL', k) end
  end
end
return removed
"""

# KEYS: session hashes (one SCAN step)
# ARGV: P, now
_LUA_STATS = """
local now = tonumber(ARGV[2])
local live, tombs, aliases = 0, 0, 0
local users = {}
for _, k in ipairs(KEYS) do
  if redis.call('TYPE', k)['ok'] == 'hash' then
    local f = redis.call('HMGET', k, 'c', 'e', 'u', '@', '!', 'U')
    if f[1] then
      if tonumber(f[2]) > now then
        live = live + 1
        if f[3] then users[#users + 1] = f[3] end
      end
    elseif f[4] and tonumber(f[6]) > now then
      aliases = aliases + 1
    elseif f[5] and tonumber(f[6]) > now then
      tombs = tombs + 1
    end
  end
end
local out = {live, tombs, aliases}
for _, u in ipairs(users) do out[#out + 1] = u end
return out
"""

SCRIPTS: Final[dict[str, str]] = {
    name: (_LUA_PRELUDE % {"min_ms": MIN_RETENTION_MS}) + body
    for name, body in {
        "insert": _LUA_INSERT,
        "rotate": _LUA_ROTATE,
        "update": _LUA_UPDATE,
        "revoke": _LUA_REVOKE,
        "delete": _LUA_DELETE,
        "revoke_user": _LUA_REVOKE_USER,
        "user_sessions": _LUA_USER_SESSIONS,
        "purge": _LUA_PURGE,
        "stats": _LUA_STATS,
    }.items()
}

# -- the shared logic: operations as generators of Redis calls ------------------------------------


@dataclass(frozen=True, slots=True)
class _Call:
    """One round trip: a registered script (``script`` names it) or a plain command."""

    script: str | None
    keys: tuple[str, ...]
    args: tuple[str | int, ...]


_Op: TypeAlias = Generator[_Call, Any, T]


def _command(*args: str | int) -> _Call:
    return _Call(None, (), args)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else str(value)


def _pairs(reply: Any) -> dict[str, str]:
    """A hash reply (dict from HGETALL, flat list from a script) as ``str -> str``."""
    if isinstance(reply, Mapping):
        return {_text(k): _text(v) for k, v in reply.items()}
    items = list(reply or ())
    return {_text(items[i]): _text(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def _is_default(name: str, value: JSON) -> bool:
    if name not in _DEFAULTS:
        return False
    default = _DEFAULTS[name]
    return value is None if default is None else type(value) is type(default) and value == default


def _fingerprint_fields(fingerprint: Mapping[str, JSON]) -> list[str]:
    """A fingerprint as one short field per trait (``f:ip``, ``f:ua`` …): as one JSON value it
    would exceed Redis's compact-encoding limit for hash values (64 bytes by default) and
    triple the hash's memory."""
    flat: list[str] = []
    for name, value in fingerprint.items():
        flat += [FP_PREFIX + name, dumps(value)]
    return flat


def _record_fields(record: SessionRecord) -> list[str]:
    flat: list[str] = []
    for name, value in record.meta().items():
        if name == "fingerprint" and value:
            flat += _fingerprint_fields(cast(dict[str, JSON], value))
        elif not _is_default(name, value):
            flat += [META_CODES[name], dumps(value)]
    for name, value in record.data.items():
        flat += [DATA_PREFIX + name, dumps(value)]
    return flat


def _update_fields(update: RecordUpdate) -> tuple[list[str], list[str]]:
    sets: list[str] = []
    dels: list[str] = []
    for name, value in update.meta.items():
        code = META_CODES.get(name)
        if code is None:
            raise ValueError(f"unknown record field {name!r}")
        if name == "fingerprint" and value:
            new = cast(dict[str, JSON], value)
            sets += _fingerprint_fields(new)
            dels += [code] + [FP_PREFIX + k for k in FINGERPRINT_TRAITS if k not in new]
            continue
        if name == "fingerprint":  # None or {}: stored (or not) whole, no traits left behind
            dels += [FP_PREFIX + k for k in FINGERPRINT_TRAITS]
        if _is_default(name, value):
            dels.append(code)
        else:
            sets += [code, dumps(value)]
    for name, value in update.set_data.items():
        sets += [DATA_PREFIX + name, dumps(value)]
    dels += [DATA_PREFIX + name for name in update.del_data]
    return sets, dels


def _marker_fields(item: Alias | Tombstone) -> list[str]:
    if isinstance(item, Alias):
        flat = [ALIAS, dumps(item.target), _AT, dumps(item.at), _GRACE, dumps(item.grace_until)]
    else:
        flat = [TOMB, dumps(item.reason), _AT, dumps(item.at)]
    flat += [_UNTIL, dumps(item.until)]
    if item.user_id is not None:
        flat += [_USER, dumps(item.user_id)]
    return flat


_SCALAR_CACHE_SIZE: Final = 8192
_NUMBER_START: Final = frozenset(b"-0123456789")
_CONSTANTS: Final[dict[bytes, JSON]] = {b"null": None, b"true": True, b"false": False}


def _value(raw: bytes | str) -> Any:
    """One JSON field value, with fast paths for the shapes almost every field has (a plain
    string, a number): this runs for every field of every request's read."""
    if isinstance(raw, str):
        raw = raw.encode()
    if raw[:1] == b'"' and b"\\" not in raw and raw[-1:] == b'"' and len(raw) >= 2:
        return raw[1:-1].decode("utf-8")
    if raw[:1] and raw[0] in _NUMBER_START and b"e" not in raw and b"E" not in raw:
        try:
            return float(raw) if b"." in raw else int(raw)
        except ValueError:
            pass
    if raw in _CONSTANTS:
        return _CONSTANTS[raw]
    return loads(raw)


def _decode(
    key: str, fields: Mapping[str, str | bytes], parse: Callable[[Any], Any] = _value
) -> Lookup:
    if LIVE in fields:
        meta: dict[str, Any] = {}
        data: dict[str, JSON] = {}
        fingerprint: dict[str, JSON] = {}
        for name, value in fields.items():
            if name.startswith(DATA_PREFIX):
                data[name[len(DATA_PREFIX) :]] = parse(value)
            elif name.startswith(FP_PREFIX):
                fingerprint[name[len(FP_PREFIX) :]] = parse(value)
            elif name in _CODE_META:
                meta[_CODE_META[name]] = parse(value)
        if fingerprint:
            meta["fingerprint"] = fingerprint
        return SessionRecord.from_parts(key, meta, data)
    user = _value(fields[_USER]) if _USER in fields else None
    if ALIAS in fields:
        return Alias(
            key=key,
            target=str(_value(fields[ALIAS])),
            at=float(_value(fields[_AT])),
            grace_until=float(_value(fields[_GRACE])),
            until=float(_value(fields[_UNTIL])),
            user_id=user,
        )
    if TOMB in fields:
        return Tombstone(
            key=key,
            reason=str(_value(fields[TOMB])),
            at=float(_value(fields[_AT])),
            until=float(_value(fields[_UNTIL])),
            user_id=user,
        )
    return None


def _flat_fields(reply: list[bytes]) -> dict[str, bytes]:
    """A flat ``HGETALL`` reply as field name -> raw value (values decoded lazily)."""
    it = iter(reply)
    return {name.decode("utf-8"): value for name, value in zip(it, it, strict=False)}


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


def _count(values: Sequence[Any]) -> list[str]:
    return [str(len(values)), *values]


class _Ops:
    """Key layout and every operation, written once, as generators of :class:`_Call`.

    The sync and async stores only differ in how they run a :class:`_Call`.
    """

    __slots__ = ("prefix",)

    def __init__(self, prefix: str, cluster_hash_tag: bool) -> None:
        if not isinstance(prefix, str):
            raise TypeError("prefix must be a string")
        if cluster_hash_tag:
            if "{" in prefix or "}" in prefix:
                raise ValueError("prefix: no braces with cluster_hash_tag=True")
            prefix = "{" + (prefix.rstrip(":") or "sw") + "}:"
        self.prefix = prefix

    def skey(self, key: str) -> str:
        return f"{self.prefix}s:{key}"

    def akey(self, key: str) -> str:
        return f"{self.prefix}a:{key}"

    def ukey(self, user_id: str) -> str:
        return f"{self.prefix}u:{user_id}"

    def get(self, key: str) -> _Op[Lookup]:
        reply = yield _command("HGETALL", self.skey(key))
        return _decode(key, _pairs(reply))

    def insert(
        self, record: SessionRecord, max_per_user: int, tombstone_until: float
    ) -> _Op[list[str]]:
        keys = [self.skey(record.key)]
        if record.user_id is not None:
            keys.append(self.ukey(record.user_id))
        args = [
            self.prefix,
            record.key,
            str(int(max_per_user)),
            dumps(tombstone_until),
            dumps("evicted"),
            *_record_fields(record),
        ]
        reply = yield _Call("insert", tuple(keys), tuple(args))
        return [_text(k) for k in reply]

    def rotate(
        self,
        old_key: str,
        new_key: str,
        update: RecordUpdate,
        old_becomes: Alias | Tombstone,
        max_per_user: int,
        tombstone_until: float,
        activity_max: int,
    ) -> _Op[list[str] | None]:
        sets, dels = _update_fields(update)
        args = [
            self.prefix,
            old_key,
            new_key,
            str(int(max_per_user)),
            dumps(tombstone_until),
            dumps("evicted"),
            dumps(old_becomes.until),
            str(max(int(activity_max), 0)),
            "" if update.activity is None else dumps(update.activity),
            *_count(_marker_fields(old_becomes)),
            *_count(sets),
            *_count(dels),
        ]
        reply = yield _Call("rotate", (self.skey(old_key), self.skey(new_key)), tuple(args))
        if reply is None:
            return None
        return [_text(k) for k in list(reply)[1:]]

    def update(self, key: str, update: RecordUpdate, activity_max: int) -> _Op[bool]:
        sets, dels = _update_fields(update)
        entry = "" if update.activity is None else dumps(update.activity)
        args = [
            self.prefix,
            key,
            str(max(int(activity_max), 0)),
            entry,
            *_count(sets),
            *_count(dels),
        ]
        reply = yield _Call("update", (self.skey(key),), tuple(args))
        return bool(reply)

    def revoke(self, key: str, tombstone: Tombstone) -> _Op[bool]:
        args = [self.prefix, key, dumps(tombstone.until), *_marker_fields(tombstone)]
        reply = yield _Call("revoke", (self.skey(key),), tuple(args))
        return bool(reply)

    def delete(self, key: str) -> _Op[None]:
        yield _Call("delete", (self.skey(key),), (self.prefix, key))
        return None

    def user_sessions(self, user_id: str) -> _Op[list[SessionRecord]]:
        reply = yield _Call("user_sessions", (self.ukey(user_id),), (self.prefix,))
        items = list(reply or ())
        found: list[SessionRecord] = []
        for i in range(0, len(items) - 1, 2):
            record = _decode(_text(items[i]), _pairs(items[i + 1]))
            if isinstance(record, SessionRecord):
                found.append(record)
        return sorted(found, key=lambda r: (r.created_at, r.key))

    def revoke_user(
        self, user_id: str, reason: str, at: float, until: float, keep: str | None
    ) -> _Op[list[str]]:
        tomb = _marker_fields(Tombstone("", reason, at, until, user_id))
        args = [
            self.prefix,
            "0" if keep is None else "1",
            keep or "",
            dumps(until),
            *tomb,
        ]
        reply = yield _Call("revoke_user", (self.ukey(user_id),), tuple(args))
        return sorted(_text(k) for k in reply)

    def activity(self, key: str) -> _Op[list[dict[str, JSON]]]:
        reply = yield _command("LRANGE", self.akey(key), 0, -1)
        return [dict(loads(entry)) for entry in reply]

    def _scan(self, cursor: int, match: str, count: int) -> _Op[tuple[int, list[str]]]:
        reply = yield _command("SCAN", cursor, "MATCH", match, "COUNT", count)
        next_cursor, keys = reply
        return int(next_cursor), [_text(k) for k in keys]

    def purge(self, now: float, batch: int) -> _Op[int]:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        match = _glob_escape(self.prefix) + "*"
        removed = 0
        cursor = 0
        while True:
            cursor, keys = yield from self._scan(cursor, match, batch)
            for i in range(0, len(keys), batch):
                chunk = tuple(keys[i : i + batch])
                removed += int((yield _Call("purge", chunk, (self.prefix, dumps(float(now))))))
            if cursor == 0:
                return removed

    def stats(self, now: float) -> _Op[StoreStats]:
        match = _glob_escape(self.prefix) + "s:*"
        seen: set[str] = set()
        users: set[str] = set()
        live = tombs = aliases = 0
        cursor = 0
        while True:
            cursor, keys = yield from self._scan(cursor, match, STATS_BATCH)
            fresh = [k for k in dict.fromkeys(keys) if k not in seen]
            seen.update(fresh)
            for i in range(0, len(fresh), STATS_BATCH):
                chunk = tuple(fresh[i : i + STATS_BATCH])
                reply = yield _Call("stats", chunk, (self.prefix, dumps(float(now))))
                live += int(reply[0])
                tombs += int(reply[1])
                aliases += int(reply[2])
                users.update(_text(u) for u in reply[3:])
            if cursor == 0:
                return StoreStats(
                    live_sessions=live, users=len(users), tombstones=tombs, aliases=aliases
                )


def _unavailable(exc: BaseException) -> StoreUnavailable:
    """A message naming only the kind of failure (never keys, data or server text)."""
    reason = type(exc).__name__
    if isinstance(exc, ResponseError):
        code = str(exc).split(" ", 1)[0]
        if code.isascii() and code.isalpha() and code.isupper() and len(code) <= 16:
            reason = f"{reason} {code}"
    return StoreUnavailable(f"redis unreachable: {reason}")


_FAILURES: Final = (RedisError, OSError)


def _client_options(timeout: float) -> dict[str, Any]:
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "decode_responses": False,
    }


# -- the stores ---------------------------------------------------------------------------------


class RedisStore:
    """Synchronous Redis store (redis-py). Thread-safe: one client and pool per store."""

    def __init__(
        self,
        url_or_client: str | redis_sync.Redis,
        *,
        prefix: str = "sw:",
        timeout: float = 1.0,
        cluster_hash_tag: bool = False,
    ) -> None:
        self._ops = _Ops(prefix, cluster_hash_tag)
        if isinstance(url_or_client, str):
            retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
            self._client: redis_sync.Redis = redis_sync.Redis.from_url(
                url_or_client, retry=retry, **_client_options(timeout)
            )
            self._owned = True
        else:
            self._client = url_or_client
            self._owned = False
        self._scripts = {name: self._client.register_script(src) for name, src in SCRIPTS.items()}
        self._closed = threading.Event()

    @property
    def prefix(self) -> str:
        """The prefix every key of this store starts with (hash tag included)."""
        return self._ops.prefix

    def _call(self, call: _Call) -> Any:
        try:
            if call.script is None:
                return cast(Any, self._client).execute_command(*call.args)
            return self._scripts[call.script](keys=list(call.keys), args=list(call.args))
        except _FAILURES as exc:
            raise _unavailable(exc) from exc

    def _run(self, op: _Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(self._call(call))
        except StopIteration as stop:
            return cast(T, stop.value)

    def get(self, key: str) -> Lookup:
        return self._run(self._ops.get(key))

    def insert(
        self, record: SessionRecord, *, max_per_user: int, tombstone_until: float
    ) -> list[str]:
        return self._run(self._ops.insert(record, max_per_user, tombstone_until))

    def rotate(
        self,
        old_key: str,
        new_key: str,
        update: RecordUpdate,
        *,
        old_becomes: Alias | Tombstone,
        max_per_user: int,
        tombstone_until: float,
        activity_max: int = 0,
    ) -> list[str] | None:
        return self._run(
            self._ops.rotate(
                old_key,
                new_key,
                update,
                old_becomes,
                max_per_user,
                tombstone_until,
                activity_max,
            )
        )

    def update(self, key: str, update: RecordUpdate, *, activity_max: int = 0) -> bool:
        return self._run(self._ops.update(key, update, activity_max))

    def revoke(self, key: str, tombstone: Tombstone) -> bool:
        return self._run(self._ops.revoke(key, tombstone))

    def delete(self, key: str) -> None:
        self._run(self._ops.delete(key))

    def user_sessions(self, user_id: str) -> list[SessionRecord]:
        return self._run(self._ops.user_sessions(user_id))

    def revoke_user(
        self, user_id: str, *, reason: str, at: float, until: float, keep: str | None = None
    ) -> list[str]:
        return self._run(self._ops.revoke_user(user_id, reason, at, until, keep))

    def activity(self, key: str) -> list[dict[str, JSON]]:
        return self._run(self._ops.activity(key))

    def purge(self, now: float, batch: int = 1000) -> int:
        return self._run(self._ops.purge(now, batch))

    def stats(self, now: float) -> StoreStats:
        return self._run(self._ops.stats(now))

    def close(self) -> None:
        if self._owned and not self._closed.is_set():
            self._closed.set()
            self._client.close()


class AsyncRedisStore:
    """Asynchronous Redis store (``redis.asyncio``) for the ASGI middleware."""

    def __init__(
        self,
        url_or_client: str | redis_async.Redis,
        *,
        prefix: str = "sw:",
        timeout: float = 1.0,
        cluster_hash_tag: bool = False,
    ) -> None:
        self._ops = _Ops(prefix, cluster_hash_tag)
        if isinstance(url_or_client, str):
            retry = AsyncRetry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
            self._client: redis_async.Redis = redis_async.Redis.from_url(
                url_or_client, retry=retry, **_client_options(timeout)
            )
            self._owned = True
            target = fast_path_target(url_or_client)
        else:
            self._client = url_or_client
            self._owned = False
            target = None
        self._scalars: dict[bytes, Any] = {}
        # The hot read (one HGETALL per request) goes over a lean pipelined connection.
        self._fast = PipelinedReader(*target, timeout=timeout) if target is not None else None
        self._scripts = {name: self._client.register_script(src) for name, src in SCRIPTS.items()}
        self._closed = False

    @property
    def prefix(self) -> str:
        """The prefix every key of this store starts with (hash tag included)."""
        return self._ops.prefix

    async def _call(self, call: _Call) -> Any:
        try:
            if call.script is None:
                return await cast(Any, self._client).execute_command(*call.args)
            return await self._scripts[call.script](keys=list(call.keys), args=list(call.args))
        except _FAILURES as exc:
            raise _unavailable(exc) from exc

    async def _run(self, op: _Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(await self._call(call))
        except StopIteration as stop:
            return cast(T, stop.value)

    async def get(self, key: str) -> Lookup:
        fast = self._fast
        if fast is None:
            return await self._run(self._ops.get(key))
        try:
            reply = await fast.hgetall(self._ops.skey(key))
        except RespError as exc:
            raise StoreUnavailable(f"redis unreachable: {exc}") from None
        return _decode(key, _flat_fields(reply), self._parse)

    def _parse(self, raw: bytes) -> Any:
        """:func:`_value` remembered by content for scalars: a session's fields come back
        byte-identical on every request until it is next written."""
        value = self._scalars.get(raw)
        if value is None:
            value = _value(raw)
            if type(value) in (dict, list):
                return value  # mutable: never shared between requests
            if len(self._scalars) >= _SCALAR_CACHE_SIZE:
                self._scalars.clear()
            self._scalars[raw] = value
        return value

    async def insert(
        self, record: SessionRecord, *, max_per_user: int, tombstone_until: float
    ) -> list[str]:
        return await self._run(self._ops.insert(record, max_per_user, tombstone_until))

    async def rotate(
        self,
        old_key: str,
        new_key: str,
        update: RecordUpdate,
        *,
        old_becomes: Alias | Tombstone,
        max_per_user: int,
        tombstone_until: float,
        activity_max: int = 0,
    ) -> list[str] | None:
        return await self._run(
            self._ops.rotate(
                old_key,
                new_key,
                update,
                old_becomes,
                max_per_user,
                tombstone_until,
                activity_max,
            )
        )

    async def update(self, key: str, update: RecordUpdate, *, activity_max: int = 0) -> bool:
        return await self._run(self._ops.update(key, update, activity_max))

    async def revoke(self, key: str, tombstone: Tombstone) -> bool:
        return await self._run(self._ops.revoke(key, tombstone))

    async def delete(self, key: str) -> None:
        await self._run(self._ops.delete(key))

    async def user_sessions(self, user_id: str) -> list[SessionRecord]:
        return await self._run(self._ops.user_sessions(user_id))

    async def revoke_user(
        self, user_id: str, *, reason: str, at: float, until: float, keep: str | None = None
    ) -> list[str]:
        return await self._run(self._ops.revoke_user(user_id, reason, at, until, keep))

    async def activity(self, key: str) -> list[dict[str, JSON]]:
        return await self._run(self._ops.activity(key))

    async def purge(self, now: float, batch: int = 1000) -> int:
        return await self._run(self._ops.purge(now, batch))

    async def stats(self, now: float) -> StoreStats:
        return await self._run(self._ops.stats(now))

    async def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
        if self._owned and not self._closed:
            self._closed = True
            await self._client.aclose()
