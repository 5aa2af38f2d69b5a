-- A sign-in under the cap's "reject" (see redis_cluster.py): index the new key only while the
-- user has fewer than `cap` members besides the keys not counted (the new key, the one it moves
-- from, expired sessions), in one step, so parallel sign-ins never pass the cap together.
-- KEYS: u(user)
-- ARG: P, cap, new member, its score (created_at), keys not counted...
-- Returns 1 when indexed, 0 when refused (nothing written).
local idx = KEYS[1]
local cap, m, score = tonumber(ARG[2]), ARG[3], ARG[4]
local skip = {}
for i = 5, #ARG do skip[ARG[i]] = true end
local n = 0
for _, item in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
  if not skip[key_of(item)] then n = n + 1 end
end
if n >= cap then return 0 end
redis.call('ZADD', idx, score, m)
return 1
