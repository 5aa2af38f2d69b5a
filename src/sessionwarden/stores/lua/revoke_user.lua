-- KEYS: u(user)
-- ARG: P, has_keep ('1'/'0'), keep, until, tombstone fields...
-- Returns {revoked key, its lineage, ...}: each tombstone keeps its record's lineage ('L').
local idx, has_keep, keep, until_t = KEYS[1], ARG[2] == '1', ARG[3], ARG[4]
local flat = take(5, #ARG - 4)
local n = #flat
local revoked = {}
for _, item in ipairs(index_members(idx)) do
  local k = item[1]
  if not (has_keep and k == keep) then
    if is_live(k) then
      local lineage = lineage_of(k)
      flat[n + 1], flat[n + 2] = 'L', lineage
      bury(k, flat, until_t)
      revoked[#revoked + 1] = k
      revoked[#revoked + 1] = lineage
    end
    redis.call('ZREM', idx, item[2])
  end
end
return revoked
