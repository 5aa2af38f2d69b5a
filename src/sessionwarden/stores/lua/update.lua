-- KEYS: s(key)
-- Returns the record's hash as written (HGETALL), or 0 when key held no live record.
-- ARG: P, key, activity_max, activity_json ('' for none), n_set, set fields..., n_del, names...
local key, amax, entry = ARG[2], tonumber(ARG[3]), ARG[4]
local pos = 5
local sets, dels
sets, pos = take(pos + 1, tonumber(ARG[pos]))
dels, pos = take(pos + 1, tonumber(ARG[pos]))
local s = skey(key)
if redis.call('HEXISTS', s, 'c') == 0 then return 0 end
local reindex, new_e = false, nil
for i = 1, #sets, 2 do
  local f = sets[i]
  if f == 'u' then reindex = true end
  if f == 'e' then new_e = sets[i + 1] end
end
for _, f in ipairs(dels) do
  if f == 'u' then reindex = true end
end
local old_user = false
if reindex then old_user = redis.call('HGET', s, 'u') end
if #sets > 0 then hset(s, sets) end
if #dels > 0 then hdel(s, dels) end
local e_ms
if new_e then
  e_ms = ms_of(new_e)
  expire_at(s, e_ms)
  if redis.call('EXISTS', akey(key)) == 1 then expire_at(akey(key), e_ms) end
else
  e_ms = ms_of(redis.call('HGET', s, 'e'))
end
if reindex or new_e then
  local user = redis.call('HGET', s, 'u')
  if old_user and old_user ~= user then index_rem(old_user, key) end
  if user then index_add(user, key, e_ms) end
end
if append_activity(akey(key), amax, entry) then expire_at(akey(key), e_ms) end
return redis.call('HGETALL', s)
