-- The dispatcher ends an offer: withdrawn (the caller waits again) or
-- answered (the caller talks to the agent), and tells the caller's node.
-- Refused (-1) when this dispatcher's epoch is over; 0 when the offer was
-- no longer live (the message is still sent: the node hangs the leg up).
-- ARGV: prefix, epoch, caller id, agent, offer id, outcome (cancel |
--       answered | refused), node, message (JSON), inbox maxlen
local p = ARGV[1]
if redis.call('GET', p .. 'epoch') ~= ARGV[2] then return -1 end
local key = p .. 'c:' .. ARGV[3]
local akey = p .. 'a:' .. ARGV[4]
local live = redis.call('HGET', key, 'offer') == ARGV[5]
if live then
  if ARGV[6] == 'answered' then
    redis.call('HSET', key, 'state', 'talking', 'offer', '')
    redis.call('HSET', akey, 'offer', '', 'caller', ARGV[3])
  else
    redis.call('HSET', key, 'state', 'waiting', 'offer', '', 'agent', '')
  end
end
if ARGV[6] ~= 'answered' and redis.call('HGET', akey, 'offer') == ARGV[5] then
  redis.call('HSET', akey, 'offer', '', 'caller', '')
end
redis.call('XADD', p .. 'inbox:' .. ARGV[7], 'MAXLEN', '~', ARGV[9], '*', 'm', ARGV[8])
if live then return 1 end
return 0
