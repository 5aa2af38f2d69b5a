-- KEYS: s(old), s(new)
-- Returns false when old held no live record, -1 when the cap refuses (mode 'r'; nothing is
-- written), else {the fields the new key kept from the old one (its hash is these and the set
-- fields, which the caller sent; the key is read after its last write, so it stays tracked for
-- the caller), evicted key, its lineage, ...}.
-- ARG: P, old, new, cap, tomb_until, reason, old_until, activity_max, activity_json, mode,
--       n_old, old fields..., n_set, set fields..., n_del, del names...
-- The old hash moves to the new key (RENAME) and takes the set fields and deletions there, so
-- the fields it keeps are neither rewritten nor sent back.
local old, new, cap, until_t, reason = ARG[2], ARG[3], tonumber(ARG[4]), ARG[5], ARG[6]
local old_until, amax, entry, mode = ARG[7], tonumber(ARG[8]), ARG[9], ARG[10]
-- where in ARG the old key's fields (o1..o2), the set fields (s1..s2) and the deleted names
-- (d1..d2) are: read in place, not copied
local o1 = 12
local o2 = o1 + tonumber(ARG[11]) - 1
local s1 = o2 + 2
local s2 = s1 + tonumber(ARG[o2 + 1]) - 1
local d1 = s2 + 2
local d2 = d1 + tonumber(ARG[s2 + 1]) - 1
local so, sn = skey(old), skey(new)
local stored = redis.call('HGETALL', so)
local rec = to_map(stored)
if not rec['c'] then return false end
local old_user = rec['u']
local gone = {}
for i = s1, s2, 2 do
  local name = ARG[i]
  rec[name] = ARG[i + 1]
  gone[name] = true
end
local dropped = {}
for i = d1, d2 do
  local name = ARG[i]
  if rec[name] then dropped[#dropped + 1] = name end
  rec[name] = nil
  gone[name] = true
end
if mode == 'r' and at_cap(rec['u'], cap, rec['l'], old, new) then return -1 end
local kept = {}
for i = 1, #stored, 2 do
  if not gone[stored[i]] then
    kept[#kept + 1] = stored[i]
    kept[#kept + 1] = stored[i + 1]
  end
end
if old_user then index_rem(old_user, old) end
-- the record moves to the new key (a live record there leaves its user's index, as on insert)
if old ~= new then
  if redis.call('HEXISTS', sn, 'c') == 1 then
    local previous = redis.call('HGET', sn, 'u')
    if previous then index_rem(previous, new) end
  end
  redis.call('RENAME', so, sn)
end
hset_args(sn, s1, s2)
hdel(sn, dropped)
local e_ms = ms_of(rec['e'])
expire_at(sn, e_ms)
-- the old key becomes the alias or tombstone
if old ~= new then
  hset_args(so, o1, o2)
  expire_at(so, ms_of(old_until))
end
local ao, an = akey(old), akey(new)
if ao ~= an and redis.call('EXISTS', ao) == 1 then redis.call('RENAME', ao, an) end
if append_activity(an, amax, entry) or redis.call('EXISTS', an) == 1 then expire_at(an, e_ms) end
redis.call('EXISTS', sn)  -- the last write of sn ended its tracking: a read tracks it again
local out = {kept}
if rec['u'] then
  local idx = index_add(rec['u'], new, e_ms)
  for _, v in ipairs(enforce_cap(idx, new, cap, rec['u'], rec['l'], until_t, reason, mode)) do
    out[#out + 1] = v
  end
end
return out
