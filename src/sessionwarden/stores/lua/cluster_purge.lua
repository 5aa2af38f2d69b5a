-- Purge one session key by its stored deadline.
-- KEYS: s(key), a(key)
-- ARG: P, now
-- Returns {removed (0/1), user ID of a removed live record or false}.
local s, a = KEYS[1], KEYS[2]
local now = tnum(ARG[2])
if redis.call('EXISTS', s) == 0 then
  if redis.call('EXISTS', a) == 1 then redis.call('DEL', a) end
  return {0, false}
end
local f = redis.call('HMGET', s, 'c', 'e', 'u', '@', '!', 'U')
local deadline = false
if f[1] then deadline = f[2] elseif f[4] or f[5] then deadline = f[6] end
if not deadline or tnum(deadline) == nil or tnum(deadline) <= now then
  redis.call('DEL', s, a)
  if f[1] then return {1, as_text(f[3])} end
  return {1, false}
end
if redis.call('PTTL', s) == -1 then expire_at(s, ms_of(deadline)) end
if not f[1] then redis.call('DEL', a) end
return {0, false}
