-- Revoke, evict or delete one session key.
-- KEYS: s(key), a(key)
-- ARG: P, mode, until, tombstone fields...
-- mode 'revoke': a live record or an alias becomes the tombstone;
-- mode 'member' (revoke_user, evictions): a live record becomes the tombstone; an alias is left
--   alone and its target returned, so the caller follows it;
-- mode 'delete': whatever is there goes.
-- A tombstone over a live record keeps the record's stored lineage ('L'; the fields given name
-- the fallback, the key, for a record written before lineages).
-- Returns {1, user ID or false, the tombstone's lineage or false} when it wrote, {2, target} for
-- an alias to follow, {0} otherwise.
local s, a = KEYS[1], KEYS[2]
local mode = ARG[2]
local f = redis.call('HMGET', s, 'c', 'u', '@', 'F')
if mode == 'delete' then
  redis.call('DEL', s, a)
  if f[1] then return {1, as_text(f[2])} end
  return {0}
end
if not f[1] then
  if f[3] and mode == 'member' then return {2, as_text(f[3])} end
  if not f[3] then return {0} end
end
local stone = to_map(take(4, #ARG - 3))
stone['L'] = (f[1] and flags_lineage(f[4])) or stone['L']
redis.call('DEL', s, a)
hset(s, to_flat(stone))
expire_at(s, ms_of(ARG[3]))
return {1, as_text(f[2]), stone['L'] or false}
