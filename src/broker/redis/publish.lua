-- herald's publish script: its KEYS, ARGV and answer are documented at
-- scripts::PUBLISH (src/broker/redis/scripts.rs).
-- Numbers are written with string.format('%d'): Lua's own conversion
-- gives 1e+14 past 10^14.
local function int(n)
  return string.format('%d', n)
end
-- With an idempotency key (KEYS[9]) already used in its window: that
-- publish's seq, and nothing else is done.
local keyed = KEYS[9] ~= nil
if keyed then
  local first = redis.call('GET', KEYS[9])
  if first then
    return {tonumber(first), 0, 1, 0}
  end
end
local seq = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[5])
local epoch = redis.call('GET', KEYS[7])
local fresh = false
if not epoch or (seq <= floor and epoch == ARGV[10]) then
  -- Redis lost its data, or came back with older data than this node saw
  -- in its epoch: a new epoch.
  epoch = ARGV[9]
  fresh = true
  redis.call('SET', KEYS[7], epoch)
end
if seq <= floor then
  seq = floor + 1
  redis.call('SET', KEYS[1], int(seq))
end
if fresh then
  redis.call('SET', KEYS[8], int(seq - 1))
end
local id = int(seq)
local frame = ARGV[1] .. id .. ARGV[2]
local keep = tonumber(ARGV[6])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[8], id .. '-0', 's', ARGV[4])
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
  redis.call('ZADD', KEYS[4], last[2], id)
else
  redis.call('ZADD', KEYS[4], now, id)
end
redis.call('PEXPIRE', KEYS[4], keep)
redis.call('SET', KEYS[5], int(expired), 'PX', keep)
local size = tonumber(ARGV[3])
if size > 0 then
  local new = redis.call('EXISTS', KEYS[2]) == 0
  redis.call('XADD', KEYS[2], id .. '-0', 'f', frame)
  if new and expired > 0 and expired < seq then
    redis.call('XSETID', KEYS[2], id .. '-0', 'MAXDELETEDID', int(expired) .. '-0')
  end
  local over = redis.call('XLEN', KEYS[2]) - size
  if over > 0 then
    for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', over)) do
      redis.call('XDEL', KEYS[2], entry[1])
    end
  end
  redis.call('PEXPIRE', KEYS[2], keep)
end
local evicted = 0
if keyed then
  -- Remembered for the window; the index (score: when the key expires)
  -- drops expired members and keeps at most ARGV[12], oldest out first.
  local window = tonumber(ARGV[11])
  redis.call('SET', KEYS[9], id, 'PX', window)
  redis.call('ZREMRANGEBYSCORE', KEYS[10], '-inf', int(now))
  redis.call('ZADD', KEYS[10], int(now + window), ARGV[13])
  local over = redis.call('ZCARD', KEYS[10]) - tonumber(ARGV[12])
  if over > 0 then
    for _, member in ipairs(redis.call('ZRANGE', KEYS[10], 0, over - 1)) do
      redis.call('DEL', ARGV[14] .. member)
    end
    redis.call('ZREMRANGEBYRANK', KEYS[10], 0, over - 1)
    evicted = over
  end
  redis.call('PEXPIRE', KEYS[10], window)
end
local nodes = redis.call('PUBLISH', KEYS[3], epoch .. '\n' .. ARGV[4] .. '\n' .. id .. '\n' .. frame)
return {seq, nodes, 0, evicted}
