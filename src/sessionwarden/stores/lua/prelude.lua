-- Shared by every script (sessionwarden.stores.redis_layout puts the helpers a script uses in
-- front of it, once, when it loads the scripts: a helper no script line names is left out, so a
-- call defines only what it runs).
--
-- The key layout comes from redis_layout.KEY_LAYOUT: its infixes of session hashes, activity
-- lists and user indexes and MIN_RETENTION_MS are written into the script as S_KIND, A_KIND,
-- U_KIND and MIN_MS when it is loaded, and ARGV[1] is the store's prefix (P). No key name is
-- spelled here. ARG is the script's own arguments, ARG[1] the prefix (it is ARGV).
-- Times arrive and are stored as the Python side encodes them (an 8-byte double, or JSON
-- number text): read with tnum(), and copied as is (a tombstone's time is the record's own
-- bytes) so nothing is lost to Lua's number formatting. Other values are copied as stored;
-- only a user ID is decoded (val()), to name its index, and the flags of a record a script ends,
-- to keep its lineage in the tombstone (lineage_of()). Hash fields: see the table in
-- redis_layout's docstring.
local P = ARGV[1]
local ARG = ARGV
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
  if string.find(v, '^[%[{"0-9tfn-]') then return cjson.decode(v) end
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
  redis.call('PEXPIREAT', key, string.format('%d', clamp(ms)))
end

-- never shortens: used for user indexes (expire no earlier than the latest member)
local function extend(key, ms)
  local target = clamp(ms)
  local pttl = redis.call('PTTL', key)
  if pttl == -1 or (pttl >= 0 and now_ms() + pttl < target) then
    redis.call('PEXPIREAT', key, string.format('%d', target))
  end
end

local function skey(k) return P .. S_KIND .. k end
local function akey(k) return P .. A_KIND .. k end
local function ukey(user) return P .. U_KIND .. val(user) end

-- which kind of key under the prefix `k` is (S_KIND, A_KIND, U_KIND or nil), and the rest of it
local function kind_of(k)
  local plen = #P
  for _, kind in ipairs({S_KIND, A_KIND, U_KIND}) do
    if string.sub(k, plen + 1, plen + #kind) == kind then
      return kind, string.sub(k, plen + #kind + 1)
    end
  end
  return nil, nil
end

local function is_live(k) return redis.call('HEXISTS', skey(k), 'c') == 1 end

-- index members: a key that is 64 lowercase hex digits (a keyed hash, as the core makes them) is
-- kept as 0xFF and its 32 bytes (0xFF never occurs in UTF-8, so it cannot be a key as is); any
-- other key as is (earlier versions indexed every key as is: `sessionwarden migrate`). Converted
-- 8 hex digits (4 bytes) at a time by tonumber and struct, without a Lua call per byte. (The
-- hex check is anchored: an unanchored search for a non-hex byte costs three times as much.)
local function member(k)
  if #k == 64 and string.find(k, '^[0-9a-f]*$') then
    local sub = string.sub
    return '\255' .. struct.pack('>I4I4I4I4I4I4I4I4',
      tonumber(sub(k, 1, 8), 16), tonumber(sub(k, 9, 16), 16),
      tonumber(sub(k, 17, 24), 16), tonumber(sub(k, 25, 32), 16),
      tonumber(sub(k, 33, 40), 16), tonumber(sub(k, 41, 48), 16),
      tonumber(sub(k, 49, 56), 16), tonumber(sub(k, 57, 64), 16))
  end
  return k
end

local function key_of(m)
  if #m == 33 and string.byte(m, 1) == 255 then
    return (string.format('%08x%08x%08x%08x%08x%08x%08x%08x',
      struct.unpack('>I4I4I4I4I4I4I4I4', m, 2)))
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

-- cmd(key, items[first..last]...) in calls of at most 200 items (Lua's unpack has a stack
-- limit); 200 is even, so field/value pairs never straddle two calls
local function call_range(cmd, key, items, first, last)
  local i = first
  while i <= last do
    local j = math.min(i + 199, last)
    redis.call(cmd, key, unpack(items, i, j))
    i = j + 1
  end
end

local function call_chunked(cmd, key, items) call_range(cmd, key, items, 1, #items) end

local function hset(key, flat) call_chunked('HSET', key, flat) end

-- HSET of field/value pairs the script was given, ARG[first..last], without copying them
local function hset_args(key, first, last) call_range('HSET', key, ARG, first, last) end

local function hdel(key, names) call_chunked('HDEL', key, names) end

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

-- read `count` items from ARG starting at `pos`; returns the list and the next position
local function take(pos, count)
  local out = {}
  for i = pos, pos + count - 1 do out[#out + 1] = ARG[i] end
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
  redis.call('ZADD', idx, 0, m)
  extend(idx, e_ms)
  return idx
end

local function index_rem(user, k)
  redis.call('ZREM', ukey(user), member(k))
end

-- the user's live sessions in the index: records whose deadline ('e') is after `now` (the time of
-- the write), as {time, key, member}, time being the record's field `field` ('c': created, 'l':
-- last seen); prunes members that are no longer records
local function cap_members(idx, now, field)
  local live = {}
  for _, item in ipairs(index_members(idx)) do
    local got = redis.call('HMGET', skey(item[1]), 'c', 'e', field)
    if not got[1] then
      redis.call('ZREM', idx, item[2])
    elseif tnum(got[2]) > now then
      live[#live + 1] = {tnum(got[3]), item[1], item[2]}
    end
  end
  return live
end

-- whether the user has `cap` live sessions already besides `k1` and `k2` (the session being
-- added, and the one it moves from): a sign-in refused at the cap is refused before any write
local function at_cap(user, cap, now, k1, k2)
  if cap <= 0 or not user then return false end
  local n = 0
  for _, item in ipairs(cap_members(ukey(user), tnum(now), 'c')) do
    if item[2] ~= k1 and item[2] ~= k2 then n = n + 1 end
  end
  return n >= cap
end

-- a record's lineage from its stored flags (field 'F'); false when it has none (a record written
-- before lineages: its key stands in, see records.lineage_or_key)
local function flags_lineage(flags)
  if flags then
    local ok, f = pcall(val, flags)
    if ok and type(f) == 'table' and type(f['lineage']) == 'string' and f['lineage'] ~= '' then
      return f['lineage']
    end
  end
  return false
end

-- the lineage of the live record at session key k: what the tombstone ending it keeps ('L')
local function lineage_of(k)
  return flags_lineage(redis.call('HGET', skey(k), 'F')) or k
end

-- evict the live members beyond cap, never `keep`: the oldest (mode 'c') or the least recently
-- seen (mode 'l'); mode 'r' (reject) refused before writing, so nothing is over. Prunes members
-- no longer records; expired ones do not count. Returns {key, lineage, key, lineage, ...}: each
-- evicted key and the lineage its tombstone keeps ('L').
local function enforce_cap(idx, keep, cap, user, at, until_t, reason, mode)
  local evicted = {}
  if cap <= 0 then return evicted end
  local live = cap_members(idx, tnum(at), mode == 'l' and 'l' or 'c')
  local excess = #live - cap
  if excess <= 0 then return evicted end
  table.sort(live, function(x, y)
    if x[1] ~= y[1] then return x[1] < y[1] end
    return bytes_lt(x[2], y[2])
  end)
  for _, item in ipairs(live) do
    if excess <= 0 then break end
    if item[2] ~= keep then
      local lineage = lineage_of(item[2])
      bury(item[2], {'!', reason, 'T', at, 'U', until_t, 'u', user, 'L', lineage}, until_t)
      redis.call('ZREM', idx, item[3])
      evicted[#evicted + 1] = item[2]
      evicted[#evicted + 1] = lineage
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
