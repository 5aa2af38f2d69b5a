-- KEYS: any keys under the prefix (one SCAN step)
-- ARG: P, now
local now = tnum(ARG[2])
local removed = 0
for _, k in ipairs(KEYS) do
  local kind, rest = kind_of(k)
  local ktype = redis.call('TYPE', k)['ok']
  if kind == S_KIND and ktype == 'hash' then
    local f = redis.call('HMGET', k, 'c', 'e', 'u', '@', '!', 'U')
    local deadline = false
    if f[1] then deadline = f[2] elseif f[4] or f[5] then deadline = f[6] end
    if not deadline or tnum(deadline) == nil then
      -- not one of ours (or damaged): drop it
      redis.call('DEL', k, akey(rest))
      removed = removed + 1
    elseif tnum(deadline) <= now then
      redis.call('DEL', k, akey(rest))
      if f[1] and f[3] then index_rem(f[3], rest) end
      removed = removed + 1
    elseif redis.call('PTTL', k) == -1 then
      expire_at(k, ms_of(deadline))
    end
  elseif kind == U_KIND and ktype == 'zset' then
    local latest = nil
    for _, item in ipairs(index_members(k)) do
      local e = redis.call('HGET', skey(item[1]), 'e')
      if e and is_live(item[1]) then
        local ms = ms_of(e)
        if not latest or ms > latest then latest = ms end
      else
        redis.call('ZREM', k, item[2])
      end
    end
    if latest then extend(k, latest) end
  elseif kind == A_KIND and ktype == 'list' then
    if not is_live(rest) then redis.call('DEL', k) end
  end
end
return removed
