-- A partial update of a live record (the index changes, if its user changed, follow in Python).
-- KEYS: s(key), a(key)
-- ARG: P, activity_max, activity_json ('' for none), n_set, set fields..., n_del, names...
-- Returns 0 when the key holds no live record, else {1, user ID before, user ID after,
-- created_at as decimal text (the index score)}; false for no user.
local s, a = KEYS[1], KEYS[2]
local amax, entry = tonumber(ARG[2]), ARG[3]
local sets, dels, pos
sets, pos = take(5, tonumber(ARG[4]))
dels, pos = take(pos + 1, tonumber(ARG[pos]))
if redis.call('HEXISTS', s, 'c') == 0 then return 0 end
local before = as_text(redis.call('HGET', s, 'u'))
local new_e = nil
for i = 1, #sets, 2 do
  if sets[i] == 'e' then new_e = sets[i + 1] end
end
if #sets > 0 then hset(s, sets) end
if #dels > 0 then hdel(s, dels) end
local f = redis.call('HMGET', s, 'e', 'u', 'c')
local e_ms = ms_of(f[1])
if new_e then
  expire_at(s, e_ms)
  if redis.call('EXISTS', a) == 1 then expire_at(a, e_ms) end
end
if append_activity(a, amax, entry) then expire_at(a, e_ms) end
return {1, before, as_text(f[2]), string.format('%.17g', tnum(f[3]))}
