-- herald's catch-up script: its KEYS, ARGV and answer are documented at
-- scripts::CATCH_UP (src/broker/redis/scripts.rs).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {'epoch', 0, {}}
end
local after = tonumber(ARGV[2])
local latest = tonumber(redis.call('GET', KEYS[2]) or '0')
if latest <= after then
  return {'ok', latest, {}}
end
local oldest = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
if #oldest == 0 or tonumber(string.match(oldest[1][1], '^(%d+)')) > after + 1 then
  return {'lost', latest, {}}
end
local most = tonumber(ARGV[6])
local entries = redis.call('XRANGE', KEYS[3], ARGV[3], '+', 'COUNT', most + 1)
if #entries > most then
  return {'lost', latest, {}}
end
local budget = tonumber(ARGV[5])
local used = 0
local found = {}
for _, entry in ipairs(entries) do
  local name = entry[2][2]
  local frame = ''
  local kept = redis.call('XRANGE', ARGV[4] .. name, entry[1], entry[1])
  if #kept > 0 then
    frame = kept[1][2][2]
    used = used + #frame
    if used > budget then
      return {'lost', latest, {}}
    end
  end
  found[#found + 1] = {entry[1], name, frame}
end
return {'ok', latest, found}
