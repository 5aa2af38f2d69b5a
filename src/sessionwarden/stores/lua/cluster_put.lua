-- Write a record (a new session, or where a rotation moves one) over whatever is at its key.
-- KEYS: s(key), a(key)
-- ARG: P, activity_max, n_trail, trail entries..., entry ('' for none), record fields...
-- Returns the user ID of a live record that was there before (it leaves that index), or false.
local s, a = KEYS[1], KEYS[2]
local amax = tonumber(ARG[2])
local trail, pos = take(4, tonumber(ARG[3]))
local entry = ARG[pos]
local flat = take(pos + 1, #ARG - pos)
local previous = false
if redis.call('HEXISTS', s, 'c') == 1 then previous = as_text(redis.call('HGET', s, 'u')) end
redis.call('DEL', s, a)
hset(s, flat)
local e_ms = ms_of(to_map(flat)['e'])
expire_at(s, e_ms)
rpush_all(a, trail)
append_activity(a, amax, entry)
if redis.call('EXISTS', a) == 1 then expire_at(a, e_ms) end
return previous
