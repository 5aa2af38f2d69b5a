-- KEYS: s(key) [, u(user)]
-- ARG: P, key, cap, tomb_until, reason, mode ('c' evict oldest, 'l' least recently seen, 'r'
-- reject: -1, nothing written, when the user is at the cap), field, value, ...
-- Returns {evicted key, its lineage, ...}.
local key, cap, until_t, reason, mode = ARG[2], tonumber(ARG[3]), ARG[4], ARG[5], ARG[6]
local flat = take(7, #ARG - 6)
local rec = to_map(flat)
if mode == 'r' and at_cap(rec['u'], cap, rec['l'], key, key) then return -1 end
local s = skey(key)
if redis.call('HEXISTS', s, 'c') == 1 then
  local previous = redis.call('HGET', s, 'u')
  if previous then index_rem(previous, key) end
end
redis.call('DEL', s)
hset(s, flat)
local e_ms = ms_of(rec['e'])
expire_at(s, e_ms)
if not rec['u'] then return {} end
local idx = index_add(rec['u'], key, e_ms)
return enforce_cap(idx, key, cap, rec['u'], rec['l'], until_t, reason, mode)
