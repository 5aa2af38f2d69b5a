-- A rotation's commit: the old key becomes the alias or tombstone, only if nothing was written
-- to it since the rotation read it (compare and set on the digest of its whole state).
-- KEYS: s(old), a(old)
-- ARG: P, digest, until, alias or tombstone fields...
-- Returns 1 (done), 2 (written in between: read again) or 0 (no longer a live record).
local s, a = KEYS[1], KEYS[2]
if redis.call('HEXISTS', s, 'c') == 0 then return 0 end
if state_digest(s, a) ~= ARG[2] then return 2 end
redis.call('DEL', s, a)
hset(s, take(4, #ARG - 3))
expire_at(s, ms_of(ARG[3]))
return 1
