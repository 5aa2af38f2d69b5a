-- KEYS: u(user)
-- ARG: P
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
