-- The per-user cap, decided on the user's index alone (scored by created_at): the oldest
-- members beyond `cap`, never `keep`, move from the index to the pending evictions in one step;
-- the caller then tombstones each in its own slot and clears it from the pending evictions
-- (any later index operation finishes what a crashed caller left there).
-- KEYS: u(user), v(user)
-- ARG: P, cap, keep, pending value (JSON: [at, until, user])
-- Returns the keys moved, oldest first.
local idx, pending = KEYS[1], KEYS[2]
local cap, keep, value = tonumber(ARG[2]), ARG[3], ARG[4]
local flat = redis.call('ZRANGE', idx, 0, -1, 'WITHSCORES')
local excess = #flat / 2 - cap
local out = {}
if cap <= 0 or excess <= 0 then return out end
local items = {}
for i = 1, #flat, 2 do
  items[#items + 1] = {tonumber(flat[i + 1]), key_of(flat[i]), flat[i]}
end
table.sort(items, function(x, y)
  if x[1] ~= y[1] then return x[1] < y[1] end
  return bytes_lt(x[2], y[2])
end)
for _, item in ipairs(items) do
  if excess <= 0 then break end
  if item[2] ~= keep then
    redis.call('ZREM', idx, item[3])
    redis.call('HSET', pending, item[2], value)
    out[#out + 1] = item[2]
    excess = excess - 1
  end
end
return out
