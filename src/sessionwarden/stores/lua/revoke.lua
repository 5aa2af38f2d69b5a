-- KEYS: s(key)
-- ARG: P, key, until, tombstone fields...
local key, until_t = ARG[2], ARG[3]
local s = skey(key)
local user = false
if redis.call('HEXISTS', s, 'c') == 1 then
  user = redis.call('HGET', s, 'u')
elseif redis.call('HEXISTS', s, '@') == 0 then
  return 0
end
bury(key, take(4, #ARG - 3), until_t)
if user then index_rem(user, key) end
return 1
