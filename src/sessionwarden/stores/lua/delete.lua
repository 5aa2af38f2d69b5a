-- KEYS: s(key)
-- ARG: P, key
local key = ARG[2]
local s = skey(key)
local user = false
if redis.call('HEXISTS', s, 'c') == 1 then user = redis.call('HGET', s, 'u') end
redis.call('DEL', s, akey(key))
if user then index_rem(user, key) end
return 1
