-- A rotation's first step: the live record at the old key, its trail and a digest of both.
-- KEYS: s(old), a(old)
-- Returns false when the key holds no live record, else {digest, hash as a flat list, trail}.
local s, a = KEYS[1], KEYS[2]
if redis.call('HEXISTS', s, 'c') == 0 then return false end
return {state_digest(s, a), redis.call('HGETALL', s), redis.call('LRANGE', a, 0, -1)}
