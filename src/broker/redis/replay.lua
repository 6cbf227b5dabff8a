-- herald's replay script: its KEYS, ARGV and answer are documented at
-- scripts::REPLAY (src/broker/redis/scripts.rs).
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  return {'epoch', 0, 0, 0, '', {}}
end
local since = tonumber(ARGV[2])
local first = ARGV[3]
local ok = 'ok'
if epoch ~= ARGV[1] then
  -- Another epoch: its history from its start, after a `reset`.
  local base = redis.call('GET', KEYS[5]) or '0'
  since = tonumber(base)
  first = '(' .. base .. '-0'
  ok = 'moved'
end
local budget = tonumber(ARGV[4])
local overhead = tonumber(ARGV[5])
local page = tonumber(ARGV[6])
local keep = tonumber(ARGV[7])
local latest = tonumber(redis.call('GET', KEYS[2]) or '0')
if since > latest then
  return {'ahead', 0, 0, latest, epoch, {}}
end
local expired = latest
if redis.call('EXISTS', KEYS[3]) == 1 then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  expired = tonumber(redis.call('GET', KEYS[4]) or '0')
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - keep)) do
    expired = math.max(expired, tonumber(member))
  end
end
local used = 0
local found = {}
for i = 6, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[i])
    for j = 1, #info - 1, 2 do
      if info[j] == 'max-deleted-entry-id' then
        local dropped = tonumber(string.match(info[j + 1], '^(%d+)')) or 0
        if dropped > since then
          return {'dropped', i - 5, dropped, latest, epoch, {}}
        end
      end
    end
    if expired > since then
      local oldest = redis.call('XRANGE', KEYS[i], first, '+', 'COUNT', 1)
      if #oldest > 0 and tonumber(string.match(oldest[1][1], '^(%d+)')) <= expired then
        return {'dropped', i - 5, expired, latest, epoch, {}}
      end
    end
    local start = first
    while true do
      local entries = redis.call('XRANGE', KEYS[i], start, '+', 'COUNT', page)
      for _, entry in ipairs(entries) do
        local fields = entry[2]
        for k = 1, #fields - 1, 2 do
          if fields[k] == 'f' then
            used = used + #fields[k + 1] + overhead
            if used > budget then
              return {'over', 0, 0, latest, epoch, {}}
            end
            found[#found + 1] = {entry[1], fields[k + 1]}
          end
        end
      end
      if #entries < page then
        break
      end
      start = '(' .. entries[#entries][1]
    end
  elseif expired > since then
    return {'forgotten', i - 5, expired, latest, epoch, {}}
  end
end
return {ok, since, 0, latest, epoch, found}
