-- KEYS: session hashes (one SCAN step)
-- ARG: P, now
local now = tnum(ARG[2])
local live, tombs, aliases = 0, 0, 0
local users = {}
for _, k in ipairs(KEYS) do
  if redis.call('TYPE', k)['ok'] == 'hash' then
    local f = redis.call('HMGET', k, 'c', 'e', 'u', '@', '!', 'U')
    if f[1] then
      if tnum(f[2]) > now then
        live = live + 1
        if f[3] then users[#users + 1] = tostring(val(f[3])) end
      end
    elseif f[4] and tnum(f[6]) > now then
      aliases = aliases + 1
    elseif f[5] and tnum(f[6]) > now then
      tombs = tombs + 1
    end
  end
end
local out = {live, tombs, aliases}
for _, u in ipairs(users) do out[#out + 1] = u end
return out
