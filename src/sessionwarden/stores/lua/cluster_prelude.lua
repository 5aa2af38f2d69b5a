-- Shared by the Redis Cluster store's scripts (put after prelude.lua). Every script of that
-- store touches one session key's hash and trail (KEYS[1], KEYS[2]: one slot, the key's own hash
-- tag) or one user's index and pending evictions (KEYS[1], KEYS[2]: one slot, the user's tag);
-- what spans slots is sequenced by the Python side (see redis_cluster.py).

-- a digest of a session key's whole state (hash and trail), to detect any write in between
local function state_digest(s, a)
  local parts = {}
  for _, v in ipairs(redis.call('HGETALL', s)) do parts[#parts + 1] = #v .. ':' .. v end
  parts[#parts + 1] = '|'
  for _, v in ipairs(redis.call('LRANGE', a, 0, -1)) do parts[#parts + 1] = #v .. ':' .. v end
  return redis.sha1hex(table.concat(parts))
end

local function rpush_all(a, items) call_chunked('RPUSH', a, items) end

-- a stored user ID or alias target as text (false for none)
local function as_text(v)
  if not v then return false end
  return tostring(val(v))
end
