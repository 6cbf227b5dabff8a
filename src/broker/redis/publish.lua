-- herald's publish script: its KEYS, ARGV and answer are documented at
-- scripts::PUBLISH (src/broker/redis/scripts.rs).
local seq = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[5])
if seq <= floor then
  seq = floor + 1
  redis.call('SET', KEYS[1], seq)
end
local epoch = redis.call('GET', KEYS[7])
if not epoch then
  epoch = ARGV[9]
  redis.call('SET', KEYS[7], epoch)
  redis.call('SET', KEYS[8], seq - 1)
end
local frame = ARGV[1] .. seq .. ARGV[2]
local keep = tonumber(ARGV[6])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[8], seq .. '-0', 's', ARGV[4])
redis.call('PEXPIRE', KEYS[6], keep)
local width = tonumber(ARGV[7])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local expired
if redis.call('EXISTS', KEYS[4]) == 0 then
  expired = seq - 1
else
  expired = tonumber(redis.call('GET', KEYS[5]) or '0')
  local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - keep)
  if #old > 0 then
    for _, member in ipairs(old) do
      expired = math.max(expired, tonumber(member))
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - keep)
  end
end
local last = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
if #last == 2 and tonumber(last[2]) > now - width then
  redis.call('ZREM', KEYS[4], last[1])
  redis.call('ZADD', KEYS[4], last[2], seq)
else
  redis.call('ZADD', KEYS[4], now, seq)
end
redis.call('PEXPIRE', KEYS[4], keep)
redis.call('SET', KEYS[5], expired, 'PX', keep)
local size = tonumber(ARGV[3])
if size > 0 then
  local fresh = redis.call('EXISTS', KEYS[2]) == 0
  redis.call('XADD', KEYS[2], seq .. '-0', 'f', frame)
  if fresh and expired > 0 and expired < seq then
    redis.call('XSETID', KEYS[2], seq .. '-0', 'MAXDELETEDID', expired .. '-0')
  end
  local over = redis.call('XLEN', KEYS[2]) - size
  if over > 0 then
    for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', over)) do
      redis.call('XDEL', KEYS[2], entry[1])
    end
  end
  redis.call('PEXPIRE', KEYS[2], keep)
end
local nodes = redis.call('PUBLISH', KEYS[3], epoch .. '\n' .. ARGV[4] .. '\n' .. seq .. '\n' .. frame)
return {seq, nodes}
