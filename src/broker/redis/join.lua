-- herald's join script: its KEYS, ARGV and answer are documented at
-- scripts::JOIN (src/broker/redis/scripts.rs).
local fresh = redis.call('SET', KEYS[1], ARGV[1], 'NX')
local epoch = redis.call('GET', KEYS[1])
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
local floor = tonumber(ARGV[2])
if not fresh and epoch == ARGV[3] and seq < floor then
  -- Redis came back with older data than this node saw in its epoch.
  epoch = ARGV[1]
  fresh = true
  redis.call('SET', KEYS[1], epoch)
end
if seq < floor then
  seq = floor
  redis.call('SET', KEYS[2], ARGV[2])
end
if fresh then
  redis.call('SET', KEYS[3], string.format('%d', seq))
end
return {epoch, seq}
