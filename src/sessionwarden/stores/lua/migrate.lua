-- KEYS: any keys under the prefix (one SCAN step)
-- ARG: P
-- Bring what earlier versions wrote to this layout; returns how many keys changed:
-- * a user index holding a 64-hex key as is gets its packed member instead (member());
-- * a live record holding fingerprint traits under their old names (f:ip, f:net, f:ua, f:uav,
--   f:lang) gets them under their one-digit fields (a value already there is kept).
-- Values need no rewriting: JSON written by earlier versions reads the same.
local OLD_TRAITS = {['f:ip'] = '0', ['f:net'] = '1', ['f:ua'] = '2', ['f:uav'] = '3', ['f:lang'] = '4'}
local changed = 0
for _, k in ipairs(KEYS) do
  local kind = kind_of(k)
  local ktype = redis.call('TYPE', k)['ok']
  local moved = false
  if kind == U_KIND and ktype == 'zset' then
    for _, m in ipairs(redis.call('ZRANGE', k, 0, -1)) do
      local packed = member(m)
      if packed ~= m then
        -- add first: the set never goes empty, so the key keeps its expiry
        redis.call('ZADD', k, 0, packed)
        redis.call('ZREM', k, m)
        moved = true
      end
    end
  elseif kind == S_KIND and ktype == 'hash' and redis.call('HEXISTS', k, 'c') == 1 then
    for old, new in pairs(OLD_TRAITS) do
      local v = redis.call('HGET', k, old)
      if v then
        if redis.call('HEXISTS', k, new) == 0 then redis.call('HSET', k, new, v) end
        redis.call('HDEL', k, old)
        moved = true
      end
    end
  end
  if moved then changed = changed + 1 end
end
return changed
