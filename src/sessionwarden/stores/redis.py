"""Redis store: many processes and hosts share sessions through one Redis (6.2 or later).

Layout (``P`` is the prefix, ``sw:`` by default):

* ``P s:<key>`` — one HASH per store key, holding exactly one of

  - a live record: ``c`` created_at (also the marker of a live record), ``l`` last_seen,
    ``e`` expires_at, ``r`` rotated_at, ``x`` csrf_secret, ``u`` user_id, ``a`` auth_at,
    ``i`` client_ip, ``g`` user_agent, ``F`` flags, ``d:<name>`` per data key, and the
    fingerprint one trait per field: ``0`` ip, ``1`` net, ``2`` ua, ``3`` uav, ``4`` lang,
    ``f:<name>`` any other trait (``f`` holds a fingerprint that is ``{}``). A meta field
    holding its default (``None``, ``""``, ``{}`` as in
    :class:`~sessionwarden.records.SessionRecord`) is left out;
  - an alias: ``@`` target (the marker), ``T`` at, ``G`` grace_until, ``U`` until, ``u`` user;
  - a tombstone: ``!`` reason (the marker), ``T`` at, ``U`` until, ``u`` user.

  Values: a time (``c l e r a T G U``) is its IEEE 754 double, 8 bytes big-endian (exact, and
  half the size of its shortest decimal); every other value is JSON, except that a non-empty
  string whose first character cannot start JSON text (not ``"{[-0-9tfn``) is stored as is
  (``dark``, ``Chrome 124 on Linux``). JSON text never passes for either (a time whose 8 bytes
  all look like number text is written as JSON number text instead), so older layouts, where
  every value was JSON and traits were ``f:<name>`` (or one JSON ``f``), are still read, and
  writing a fingerprint clears their fields. Nothing is ever unpickled or evaluated.
  The reverse does not hold: a process running an earlier version cannot read what this
  layout writes, so upgrade every process sharing a Redis before new ones write to it.

  So :meth:`RedisStore.get` is one HGETALL. Small hashes stay in Redis' compact listpack
  encoding as long as every value fits ``hash-max-listpack-value`` (64 bytes by default; raise
  it to about 256 if your user agents or data values are longer).
* ``P u:<user_id>`` — a sorted set of the user's live keys, each scored 0: age order comes from
  the records' ``c`` (older layouts scored by created_at; those scores are ignored). A key of 64
  lowercase hex digits (a keyed hash, as the core makes them) is held as byte 0xFF and its 32
  bytes, which no key can be as is (0xFF never occurs in UTF-8); other keys, and keys indexed by
  older layouts, as is. Members whose record is gone are pruned lazily
  (:meth:`~RedisStore.user_sessions`, cap enforcement, :meth:`~RedisStore.purge`).
* ``P a:<key>`` — the activity trail, a list of JSON entries trimmed to ``activity_max``; moved
  on rotation and deleted with the record.

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

import math
import struct
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
from .base import NotCached, StoreStats, StoreUnavailable
from .resp import BlockingReader, PipelinedReader, RespError, fast_path_target
from .tracking import MISS, InvalidationFeed, ReadCache

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
#: Fingerprint traits are stored one field each: sessionwarden's own traits under one-digit
#: names (a listpack keeps a name like ``0`` as a 2-byte integer), any other trait as
#: ``f:<name>``. Older layouts are still read: a single ``f`` field (one JSON value) and
#: ``f:<name>`` for every trait; writing a fingerprint clears them.
FP_PREFIX: Final = "f:"
FP_CODES: Final[dict[str, str]] = {"ip": "0", "net": "1", "ua": "2", "uav": "3", "lang": "4"}
_FP_TRAIT: Final[dict[str, str]] = {code: name for name, code in FP_CODES.items()}
#: The traits sessionwarden's fingerprint has, cleared when it changes.
FINGERPRINT_TRAITS: Final = tuple(FP_CODES)
LIVE: Final = "c"
ALIAS: Final = "@"
TOMB: Final = "!"
_AT, _GRACE, _UNTIL, _USER = "T", "G", "U", "u"
#: Fields holding a time (seconds since the epoch), stored as an 8-byte double (see ``_time``).
_TIME_CODES: Final = frozenset({"c", "l", "e", "r", "a"})

# -- Lua ----------------------------------------------------------------------------------------
# ARGV[1] is always the store's prefix. Times arrive and are stored as the Python side encodes
# them (an 8-byte double, or JSON number text): read with tnum(), and copied as is (a tombstone's
# time is the record's own bytes) so nothing is lost to Lua's number formatting. Other values are
# copied as stored; only a user ID is decoded (val()), to name its index.

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

-- a stored time: 8 bytes (a big-endian double) unless all of them could be JSON number text
local function tnum(v)
  if #v == 8 and string.find(v, '[^0-9eE.+-]') then
    return (struct.unpack('>d', v))
  end
  return tonumber(v)
end

-- a stored value other than a time: JSON, or a string stored as is
local function val(v)
  if string.find(v, '^[%%[{"0-9tfn-]') then return cjson.decode(v) end
  return v
end

local function ms_of(t)
  return math.ceil(tnum(t) * 1000)
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
local function ukey(user) return P .. 'u:' .. val(user) end

local function is_live(k) return redis.call('HEXISTS', skey(k), 'c') == 1 end

-- index members: a key that is 64 lowercase hex digits (a keyed hash, as the core makes them) is
-- kept as 0xFF and its 32 bytes (0xFF never occurs in UTF-8, so it cannot be a key as is); any
-- other key, and every key indexed by older layouts, as is
local function member(k)
  if #k == 64 and not string.find(k, '[^0-9a-f]') then
    return '\\255' .. (string.gsub(k, '..', function(h) return string.char(tonumber(h, 16)) end))
  end
  return k
end

local function key_of(m)
  if #m == 33 and string.byte(m, 1) == 255 then
    return (string.gsub(string.sub(m, 2), '.', function(c)
      return string.format('%%02x', string.byte(c))
    end))
  end
  return m
end

-- byte order (Lua's own string order follows the server's locale)
local function bytes_lt(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

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
local function bury(k, flat, until_t)
  local s = skey(k)
  redis.call('DEL', s, akey(k))
  hset(s, flat)
  expire_at(s, ms_of(until_t))
end

-- the index's members, each key once: {key, member} pairs (a duplicate member is removed)
local function index_members(idx)
  local out, seen = {}, {}
  for _, m in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    local k = key_of(m)
    if seen[k] then
      redis.call('ZREM', idx, m)
    else
      seen[k] = true
      out[#out + 1] = {k, m}
    end
  end
  return out
end

local function index_add(user, k, e_ms)
  local idx = ukey(user)
  local m = member(k)
  if redis.call('ZADD', idx, 0, m) == 1 and m ~= k then redis.call('ZREM', idx, k) end
  extend(idx, e_ms)
  return idx
end

local function index_rem(user, k)
  local m = member(k)
  if m == k then
    redis.call('ZREM', ukey(user), k)
  else
    redis.call('ZREM', ukey(user), m, k)
  end
end

-- evict the oldest live members beyond cap, never `keep`; prunes members no longer live.
-- Scores carry no order (older layouts scored by created_at): age comes from the records.
local function enforce_cap(idx, keep, cap, user, at, until_t, reason)
  local evicted = {}
  if cap <= 0 then return evicted end
  local live = {}
  for _, item in ipairs(index_members(idx)) do
    local c = redis.call('HGET', skey(item[1]), 'c')
    if c then
      live[#live + 1] = {tnum(c), item[1], item[2]}
    else
      redis.call('ZREM', idx, item[2])
    end
  end
  local excess = #live - cap
  if excess <= 0 then return evicted end
  table.sort(live, function(x, y)
    if x[1] ~= y[1] then return x[1] < y[1] end
    return bytes_lt(x[2], y[2])
  end)
  for _, item in ipairs(live) do
    if excess <= 0 then break end
    if item[2] ~= keep then
      bury(item[2], {'!', reason, 'T', at, 'U', until_t, 'u', user}, until_t)
      redis.call('ZREM', idx, item[3])
      evicted[#evicted + 1] = item[2]
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
"""

# KEYS: s(key) [, u(user)]
# ARGV: P, key, cap, tomb_until, reason, field, value, ...
_LUA_INSERT = """
local key, cap, until_t, reason = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local flat = take(6, #ARGV - 5)
local rec = to_map(flat)
local s = skey(key)
if redis.call('HEXISTS', s, 'c') == 1 then
  local previous = redis.call('HGET', s, 'u')
  if previous then index_rem(previous, key) end
end
redis.call('DEL', s)
hset(s, flat)
local e_ms = ms_of(rec['e'])
expire_at(s, e_ms)
if not rec['u'] then return {} end
local idx = index_add(rec['u'], key, e_ms)
return enforce_cap(idx, key, cap, rec['u'], rec['l'], until_t, reason)
"""

# KEYS: s(old), s(new)
# ARGV: P, old, new, cap, tomb_until, reason, old_until, activity_max, activity_json,
#       n_old, old fields..., n_set, set fields..., n_del, del names...
_LUA_ROTATE = """
local old, new, cap, until_t, reason = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
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
if old_user then index_rem(old_user, old) end
-- the record moves to the new key (a live record there leaves its user's index, as on insert)
if old ~= new and redis.call('HEXISTS', sn, 'c') == 1 then
  local previous = redis.call('HGET', sn, 'u')
  if previous then index_rem(previous, new) end
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
  local idx = index_add(rec['u'], new, e_ms)
  for _, k in ipairs(enforce_cap(idx, new, cap, rec['u'], rec['l'], until_t, reason)) do
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
  if f == 'u' then reindex = true end
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
  if old_user and old_user ~= user then index_rem(old_user, key) end
  if user then index_add(user, key, e_ms) end
end
if append_activity(akey(key), amax, entry) then expire_at(akey(key), e_ms) end
return 1
"""

# KEYS: s(key)
# ARGV: P, key, until, tombstone fields...
_LUA_REVOKE = """
local key, until_t = ARGV[2], ARGV[3]
local s = skey(key)
local user = false
if redis.call('HEXISTS', s, 'c') == 1 then
  user = redis.call('HGET', s, 'u')
elseif redis.call('HEXISTS', s, '@') == 0 then
  return 0
end
bury(key, take(4, #ARGV - 3), until_t)
if user then index_rem(user, key) end
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
if user then index_rem(user, key) end
return 1
"""

# KEYS: u(user)
# ARGV: P, has_keep ('1'/'0'), keep, until, tombstone fields...
_LUA_REVOKE_USER = """
local idx, has_keep, keep, until_t = KEYS[1], ARGV[2] == '1', ARGV[3], ARGV[4]
local flat = take(5, #ARGV - 4)
local revoked = {}
for _, item in ipairs(index_members(idx)) do
  local k = item[1]
  if not (has_keep and k == keep) then
    if is_live(k) then
      bury(k, flat, until_t)
      revoked[#revoked + 1] = k
    end
    redis.call('ZREM', idx, item[2])
  end
end
return revoked
"""

# KEYS: u(user)
# ARGV: P
_LUA_USER_SESSIONS = """
local idx = KEYS[1]
local out = {}
for _, item in ipairs(index_members(idx)) do
  local flat = redis.call('HGETALL', skey(item[1]))
  local live = false
  for i = 1, #flat, 2 do
    if flat[i] == 'c' then live = true break end
  end
  if live then
    out[#out + 1] = item[1]
    out[#out + 1] = flat
  else
    redis.call('ZREM', idx, item[2])
  end
end
return out
"""

# KEYS: any keys under the prefix (one SCAN step)
# ARGV: P, now
_LUA_PURGE = """
local now = tnum(ARGV[2])
local plen = #P
local removed = 0
for _, k in ipairs(KEYS) do
  local kind, rest = string.sub(k, plen + 1, plen + 2), string.sub(k, plen + 3)
  local ktype = redis.call('TYPE', k)['ok']
  if kind == 's:' and ktype == 'hash' then
    local f = redis.call('HMGET', k, 'c', 'e', 'u', '@', '!', 'U')
    local deadline = false
    if f[1] then deadline = f[2] elseif f[4] or f[5] then deadline = f[6] end
    if not deadline or tnum(deadline) == nil then
      -- not one of ours (or damaged): drop it
      redis.call('DEL', k, akey(rest))
      removed = removed + 1
    elseif tnum(deadline) <= now then
      redis.call('DEL', k, akey(rest))
      if f[1] and f[3] then index_rem(f[3], rest) end
      removed = removed + 1
    elseif redis.call('PTTL', k) == -1 then
      expire_at(k, ms_of(deadline))
    end
  elseif kind == 'u:' and ktype == 'zset' then
    local latest = nil
    for _, item in ipairs(index_members(k)) do
      local e = redis.call('HGET', skey(item[1]), 'e')
      if e and is_live(item[1]) then
        local ms = ms_of(e)
        if not latest or ms > latest then latest = ms end
      else
        redis.call('ZREM', k, item[2])
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
local now = tnum(ARGV[2])
local live, tombs, aliases = 0, 0, 0
local users = {}
for _, k in ipairs(KEYS) do
  if redis.call('TYPE', k)['ok'] == 'hash' then
    local f = redis.call('HMGET', k, 'c', 'e', 'u', '@', '!', 'U')
    if f[1] then
      if tnum(f[2]) > now then
        live = live + 1
        if f[3] then users[#users + 1] = tostring(val(f[3])) end
      end
    elseif f[4] and tnum(f[6]) > now then
      aliases = aliases + 1
    elseif f[5] and tnum(f[6]) > now then
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
    args: tuple[str | bytes | int, ...]


_Op: TypeAlias = Generator[_Call, Any, T]


def _command(*args: str | int) -> _Call:
    return _Call(None, (), args)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else str(value)


def _pairs(reply: Any) -> dict[str, bytes]:
    """A hash reply (dict from HGETALL, flat list from a script) as field name -> raw value."""
    if isinstance(reply, Mapping):
        return {_text(k): _raw(v) for k, v in reply.items()}
    items = list(reply or ())
    return {_text(items[i]): _raw(items[i + 1]) for i in range(0, len(items) - 1, 2)}


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


def _enc(value: JSON) -> str:
    """A non-time value as stored."""
    if type(value) is str and value and value[0] not in _JSON_START_CHARS:
        return value
    return dumps(value)


def _time_enc(value: float) -> bytes | str:
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


def _fingerprint_fields(fingerprint: Mapping[str, JSON]) -> list[str]:
    """A fingerprint as one short field per trait (``0`` for the IP, ``f:<name>`` for other
    traits): as one JSON value it would exceed Redis's compact-encoding limit for hash values
    (64 bytes by default) and triple the hash's memory."""
    flat: list[str] = []
    for name, value in fingerprint.items():
        flat += [FP_CODES.get(name) or FP_PREFIX + name, _enc(value)]
    return flat


#: The fields a fingerprint may occupy (in this layout or an older one), cleared when it changes.
_FP_FIELDS: Final = (
    "f",
    *FP_CODES.values(),
    *(FP_PREFIX + name for name in FINGERPRINT_TRAITS),
)


def _record_fields(record: SessionRecord) -> list[str | bytes]:
    flat: list[str | bytes] = []
    for name, value in record.meta().items():
        code = META_CODES[name]
        if code in _TIME_CODES and value is not None:
            flat += [code, _time_enc(cast(float, value))]
        elif name == "fingerprint" and value:
            flat += _fingerprint_fields(cast(dict[str, JSON], value))
        elif not _is_default(name, value):
            flat += [code, _enc(value)]
    for name, value in record.data.items():
        flat += [DATA_PREFIX + name, _enc(value)]
    return flat


def _update_fields(update: RecordUpdate) -> tuple[list[str | bytes], list[str]]:
    sets: list[str | bytes] = []
    dels: list[str] = []
    for name, value in update.meta.items():
        code = META_CODES.get(name)
        if code is None:
            raise ValueError(f"unknown record field {name!r}")
        if name == "fingerprint":
            # the previous fingerprint's fields go (sessionwarden's own traits, under this
            # layout's names and older ones, and a whole-value ``f``), except those rewritten
            if value:
                new = _fingerprint_fields(cast(dict[str, JSON], value))
            elif _is_default(name, value):
                new = []
            else:
                new = [code, _enc(value)]
            sets += new
            dels += [d for d in _FP_FIELDS if d not in new[::2]]
            continue
        if code in _TIME_CODES and value is not None:
            sets += [code, _time_enc(cast(float, value))]
        elif _is_default(name, value):
            dels.append(code)
        else:
            sets += [code, _enc(value)]
    for name, value in update.set_data.items():
        sets += [DATA_PREFIX + name, _enc(value)]
    dels += [DATA_PREFIX + name for name in update.del_data]
    return sets, dels


def _marker_fields(item: Alias | Tombstone) -> list[str | bytes]:
    flat: list[str | bytes]
    if isinstance(item, Alias):
        flat = [
            ALIAS,
            _enc(item.target),
            _AT,
            _time_enc(item.at),
            _GRACE,
            _time_enc(item.grace_until),
        ]
    else:
        flat = [TOMB, _enc(item.reason), _AT, _time_enc(item.at)]
    flat += [_UNTIL, _time_enc(item.until)]
    if item.user_id is not None:
        flat += [_USER, _enc(item.user_id)]
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


def _decode(
    key: str, fields: Mapping[str, str | bytes], parse: Callable[[Any], Any] = _value
) -> Lookup:
    if LIVE in fields:
        meta: dict[str, Any] = {}
        data: dict[str, JSON] = {}
        fingerprint: dict[str, JSON] = {}
        for name, value in fields.items():
            meta_name = _CODE_META.get(name)
            if meta_name is not None:
                meta[meta_name] = _time(value) if name in _TIME_CODES else parse(value)
            elif name.startswith(DATA_PREFIX):
                data[name[len(DATA_PREFIX) :]] = parse(value)
            elif name in _FP_TRAIT:
                fingerprint[_FP_TRAIT[name]] = parse(value)
            elif name.startswith(FP_PREFIX):
                fingerprint[name[len(FP_PREFIX) :]] = parse(value)
        if fingerprint:
            meta["fingerprint"] = fingerprint
        return SessionRecord.from_parts(key, meta, data)
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
        )
    return None


class _Scalars:
    """:func:`_value` remembered by content for scalars: a session's fields come back
    byte-identical on every request until it is next written. (Safe between threads: dict
    reads and writes are atomic, and a value is the same whoever parsed it.)"""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[bytes, Any] = {}

    def parse(self, raw: bytes) -> Any:
        value = self._values.get(raw)
        if value is None:
            value = _value(raw)
            if type(value) in (dict, list):
                return value  # mutable: never shared between requests
            if len(self._values) >= _SCALAR_CACHE_SIZE:
                self._values.clear()
            self._values[raw] = value
        return value


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
            _time_enc(tombstone_until),
            _enc("evicted"),
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
            _time_enc(tombstone_until),
            _enc("evicted"),
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


def _read_cache(
    target: tuple[str, int, int, str | None, str | None] | None,
    prefix: str,
    timeout: float,
    ttl: float,
    size: int,
) -> ReadCache | None:
    """The local read cache (:mod:`.tracking`) for session hashes, or ``None`` when it is off
    (``ttl`` 0) or the store was given a client rather than a plain ``redis://`` URL."""
    if ttl < 0 or size < 1:
        raise ValueError("read_cache_ttl must be >= 0 and read_cache_size >= 1")
    if target is None or ttl == 0:
        return None
    host, port, _db, username, password = target

    def feed(on_keys: Callable[[list[bytes] | None], None]) -> InvalidationFeed:
        return InvalidationFeed(
            host,
            port,
            username,
            password,
            key_prefix=prefix + "s:",
            timeout=timeout,
            on_keys=on_keys,
        )

    return ReadCache(feed, ttl=ttl, size=size)


def _forget(cache: ReadCache | None, ops: _Ops, keys: Sequence[str] | None) -> None:
    """After a write: drop the store keys it touched from the read cache (``None``: all)."""
    if cache is None:
        return
    if keys is None:
        cache.clear()
    else:
        cache.evict([ops.skey(key) for key in keys])


#: Seconds a session read stays in the local read cache by default (see :mod:`.tracking`).
READ_CACHE_TTL: Final = 2.0
#: Session reads the local read cache holds by default.
READ_CACHE_SIZE: Final = 10_000


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
        read_cache_ttl: float = READ_CACHE_TTL,
        read_cache_size: int = READ_CACHE_SIZE,
    ) -> None:
        self._ops = _Ops(prefix, cluster_hash_tag)
        if isinstance(url_or_client, str):
            retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
            self._client: redis_sync.Redis = redis_sync.Redis.from_url(
                url_or_client, retry=retry, **_client_options(timeout)
            )
            self._owned = True
            target = fast_path_target(url_or_client)
        else:
            self._client = url_or_client
            self._owned = False
            target = None
        self._parse = _Scalars().parse
        # The hot read (one HGETALL per request) goes over a lean connection per thread.
        self._fast = BlockingReader(*target, timeout=timeout) if target is not None else None
        #: The local read cache (``None`` when off); see :mod:`sessionwarden.stores.tracking`.
        self.read_cache = _read_cache(
            target, self._ops.prefix, timeout, read_cache_ttl, read_cache_size
        )
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
        written: list[str] = []
        try:
            call = next(op)
            while True:
                if call.script is not None:
                    written += call.keys
                call = op.send(self._call(call))
        except StopIteration as stop:
            return cast(T, stop.value)
        finally:
            if written and self.read_cache is not None:
                self.read_cache.evict(written)

    def get(self, key: str) -> Lookup:
        cache = self.read_cache
        if cache is None:
            return self._read(key)
        name = self._ops.skey(key)
        hit = cache.lookup(name)
        if hit is not MISS:
            return cast(Lookup, hit)
        ticket = cache.begin(name)
        found: Lookup = None
        try:
            found = self._read(key)
        finally:
            cache.complete(name, ticket, found)  # a failed read keeps nothing
        return found

    def insert(
        self, record: SessionRecord, *, max_per_user: int, tombstone_until: float
    ) -> list[str]:
        evicted = self._run(self._ops.insert(record, max_per_user, tombstone_until))
        _forget(self.read_cache, self._ops, evicted)
        return evicted

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
        evicted = self._run(
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
        _forget(self.read_cache, self._ops, evicted or [])
        return evicted

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
        revoked = self._run(self._ops.revoke_user(user_id, reason, at, until, keep))
        _forget(self.read_cache, self._ops, revoked)
        return revoked

    def activity(self, key: str) -> list[dict[str, JSON]]:
        return self._run(self._ops.activity(key))

    def purge(self, now: float, batch: int = 1000) -> int:
        removed = self._run(self._ops.purge(now, batch))
        _forget(self.read_cache, self._ops, None)
        return removed

    def stats(self, now: float) -> StoreStats:
        return self._run(self._ops.stats(now))

    def _read(self, key: str) -> Lookup:
        fast = self._fast
        if fast is None:
            return self._run(self._ops.get(key))
        try:
            reply = fast.hgetall(self._ops.skey(key))
        except RespError as exc:
            raise StoreUnavailable(f"redis unreachable: {exc}") from None
        return _decode(key, _flat_fields(reply), self._parse)

    def close(self) -> None:
        if self.read_cache is not None:
            self.read_cache.close()
        if self._fast is not None:
            self._fast.close()
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
        read_cache_ttl: float = READ_CACHE_TTL,
        read_cache_size: int = READ_CACHE_SIZE,
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
        self._parse = _Scalars().parse
        # The hot read (one HGETALL per request) goes over a lean pipelined connection.
        self._fast = PipelinedReader(*target, timeout=timeout) if target is not None else None
        #: The local read cache (``None`` when off); see :mod:`sessionwarden.stores.tracking`.
        self.read_cache = _read_cache(
            target, self._ops.prefix, timeout, read_cache_ttl, read_cache_size
        )
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
        written: list[str] = []
        try:
            call = next(op)
            while True:
                if call.script is not None:
                    written += call.keys
                call = op.send(await self._call(call))
        except StopIteration as stop:
            return cast(T, stop.value)
        finally:
            if written and self.read_cache is not None:
                self.read_cache.evict(written)

    async def get(self, key: str) -> Lookup:
        cache = self.read_cache
        if cache is None:
            return await self._read(key)
        name = self._ops.skey(key)
        hit = cache.lookup(name)
        if hit is not MISS:
            return cast(Lookup, hit)
        ticket = cache.begin(name)
        found: Lookup = None
        try:
            found = await self._read(key)
        finally:
            cache.complete(name, ticket, found)  # a failed read keeps nothing
        return found

    def get_cached(self, key: str) -> Lookup:
        """:meth:`get` answered from the local read cache, without I/O (the middleware tries
        this first); raises :class:`~sessionwarden.stores.base.NotCached` otherwise."""
        cache = self.read_cache
        if cache is None:
            raise NotCached
        hit = cache.lookup(self._ops.skey(key))
        if hit is MISS:
            raise NotCached
        return cast(Lookup, hit)

    async def _read(self, key: str) -> Lookup:
        fast = self._fast
        if fast is None:
            return await self._run(self._ops.get(key))
        try:
            reply = await fast.hgetall(self._ops.skey(key))
        except RespError as exc:
            raise StoreUnavailable(f"redis unreachable: {exc}") from None
        return _decode(key, _flat_fields(reply), self._parse)

    async def insert(
        self, record: SessionRecord, *, max_per_user: int, tombstone_until: float
    ) -> list[str]:
        evicted = await self._run(self._ops.insert(record, max_per_user, tombstone_until))
        _forget(self.read_cache, self._ops, evicted)
        return evicted

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
        evicted = await self._run(
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
        _forget(self.read_cache, self._ops, evicted or [])
        return evicted

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
        revoked = await self._run(self._ops.revoke_user(user_id, reason, at, until, keep))
        _forget(self.read_cache, self._ops, revoked)
        return revoked

    async def activity(self, key: str) -> list[dict[str, JSON]]:
        return await self._run(self._ops.activity(key))

    async def purge(self, now: float, batch: int = 1000) -> int:
        removed = await self._run(self._ops.purge(now, batch))
        _forget(self.read_cache, self._ops, None)
        return removed

    async def stats(self, now: float) -> StoreStats:
        return await self._run(self._ops.stats(now))

    async def close(self) -> None:
        if self.read_cache is not None:
            self.read_cache.close()
        if self._fast is not None:
            self._fast.close()
        if self._owned and not self._closed:
            self._closed = True
            await self._client.aclose()
