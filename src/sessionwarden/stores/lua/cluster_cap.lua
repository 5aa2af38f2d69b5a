-- The per-user cap, decided on the user's index alone: the members beyond `cap`, never `keep`,
-- move from the index to the pending evictions in one step, the oldest first (by score,
-- created_at) or in the order given (least recently seen first, as read just before; members
-- not in it, indexed since, go last); the caller then tombstones each in its own slot and clears
-- it from the pending evictions (any later index operation finishes what a crashed caller left
-- there). Members named as expired neither count nor move (their deadline ended them).
-- KEYS: u(user), v(user)
-- ARG: P, cap, keep, pending value (JSON: [at, until, user]), n, n expired keys, order...
-- Returns the keys moved, in eviction order.
local idx, pending = KEYS[1], KEYS[2]
local cap, keep, value = tonumber(ARG[2]), ARG[3], ARG[4]
local skip, rank = {}, {}
local pos = 6 + tonumber(ARG[5])
for i = 6, pos - 1 do skip[ARG[i]] = true end
for i = pos, #ARG do rank[ARG[i]] = i end
local flat = redis.call('ZRANGE', idx, 0, -1, 'WITHSCORES')
local items = {}
for i = 1, #flat, 2 do
  local k = key_of(flat[i])
  if not skip[k] then
    items[#items + 1] = {rank[k] or MAX_MS, tonumber(flat[i + 1]), k, flat[i]}
  end
end
local excess = #items - cap
local out = {}
if cap <= 0 or excess <= 0 then return out end
table.sort(items, function(x, y)
  if x[1] ~= y[1] then return x[1] < y[1] end
  if x[2] ~= y[2] then return x[2] < y[2] end
  return bytes_lt(x[3], y[3])
end)
for _, item in ipairs(items) do
  if excess <= 0 then break end
  if item[3] ~= keep then
    redis.call('ZREM', idx, item[4])
    redis.call('HSET', pending, item[3], value)
    out[#out + 1] = item[3]
    excess = excess - 1
  end
end
return out
