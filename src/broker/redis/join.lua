-- herald's join script: its KEYS, ARGV and answer are documented at
-- scripts::JOIN (src/broker/redis/scripts.rs).
local fresh = redis.call('SET', KEYS[1], ARGV[1], 'NX')
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
if seq < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2])
  seq = tonumber(ARGV[2])
end
if fresh then
  redis.call('SET', KEYS[3], redis.call('GET', KEYS[2]) or '0')
end
return {redis.call('GET', KEYS[1]), seq}
