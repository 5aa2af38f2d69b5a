-- KEYS: s(key)
-- Returns the record's hash as written (HGETALL, which also keeps it tracked for the caller),
-- or 0 when key held no live record.
-- ARG: P, key, activity_max, activity_json ('' for none), n_set, set fields..., n_del, names...
-- A change of data alone costs HEXISTS, HSET (HDEL) and HGETALL; the expiry is read only when
-- something must follow it (a new trail, the user's index).
local key, amax, entry = ARG[2], tonumber(ARG[3]), ARG[4]
local sets, dels, pos
sets, pos = take(6, tonumber(ARG[5]))
dels = take(pos + 1, tonumber(ARG[pos]))
local s = KEYS[1]
if redis.call('HEXISTS', s, 'c') == 0 then return 0 end
local reindex, new_e = false, nil
for i = 1, #sets, 2 do
  local f = sets[i]
  if f == 'u' then reindex = true elseif f == 'e' then new_e = sets[i + 1] end
end
for _, f in ipairs(dels) do
  if f == 'u' then reindex = true end
end
local old_user = false
if reindex then old_user = redis.call('HGET', s, 'u') end
if #sets > 0 then hset(s, sets) end
if #dels > 0 then hdel(s, dels) end
local e_ms = nil
local function expiry()
  if not e_ms then e_ms = ms_of(new_e or redis.call('HGET', s, 'e')) end
  return e_ms
end
local a = akey(key)
local appended = 0
if entry ~= '' and amax > 0 then
  appended = redis.call('RPUSH', a, entry)
  if appended > amax then redis.call('LTRIM', a, -amax, -1) end
end
-- the trail expires with the record: set when it is created, moved when the record's is
if new_e then
  expire_at(s, expiry())
  if appended > 0 or redis.call('EXISTS', a) == 1 then expire_at(a, expiry()) end
elseif appended == 1 then
  expire_at(a, expiry())
end
if reindex or new_e then
  local user = redis.call('HGET', s, 'u')
  if old_user and old_user ~= user then index_rem(old_user, key) end
  if user then index_add(user, key, expiry()) end
end
return redis.call('HGETALL', s)
