-- The dispatcher offers a caller to an agent. Refused (0) unless the caller
-- still waits and the agent has no live offer: exactly one live offer per
-- agent. Refused (-1) when this dispatcher's epoch is over (fencing: a
-- dispatcher that lost its lease cannot offer).
-- ARGV: prefix, epoch, caller id, agent, offer id, node, message (JSON),
--       inbox maxlen
local p = ARGV[1]
if redis.call('GET', p .. 'epoch') ~= ARGV[2] then return -1 end
local key = p .. 'c:' .. ARGV[3]
if redis.call('HGET', key, 'state') ~= 'waiting' then return 0 end
local akey = p .. 'a:' .. ARGV[4]
local live = redis.call('HGET', akey, 'offer')
if live and live ~= '' then return 0 end
redis.call('HSET', key, 'state', 'ringing', 'offer', ARGV[5], 'agent', ARGV[4])
redis.call('HSET', akey, 'offer', ARGV[5], 'caller', ARGV[3])
redis.call('SADD', p .. 'agents', ARGV[4])
redis.call('XADD', p .. 'inbox:' .. ARGV[6], 'MAXLEN', '~', ARGV[8], '*', 'm', ARGV[7])
return 1
