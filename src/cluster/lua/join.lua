-- A node queues one of its callers (or puts one back after the store lost
-- it): the shared entry and the request to the dispatcher, together.
-- ARGV: prefix, caller id, node, call, queue, language, options (JSON),
--       joined_ms, state (waiting | talking), agent ('' unless talking),
--       number, event (JSON), events maxlen, held (JSON), callback (JSON,
--       '' unless the caller is a callback)
local p = ARGV[1]
local key = p .. 'c:' .. ARGV[2]
local state, offer, agent = ARGV[9], '', ARGV[10]
if state ~= 'talking' and redis.call('HGET', key, 'state') == 'ringing' then
  -- An offer the dispatcher made before this was written stays live until
  -- the dispatcher withdraws it (it does on reading this), or a dispatcher
  -- taking over does: it must not be forgotten here.
  state = 'ringing'
  offer = redis.call('HGET', key, 'offer') or ''
  agent = redis.call('HGET', key, 'agent') or ''
end
redis.call('HSET', key, 'node', ARGV[3], 'call', ARGV[4], 'queue', ARGV[5],
  'language', ARGV[6], 'options', ARGV[7], 'joined_ms', ARGV[8],
  'state', state, 'offer', offer, 'agent', agent, 'number', ARGV[11],
  'held', ARGV[14], 'callback', ARGV[15])
redis.call('SADD', p .. 'callers', ARGV[2])
redis.call('SADD', p .. 'n:' .. ARGV[3] .. ':callers', ARGV[2])
if ARGV[9] == 'talking' and ARGV[10] ~= '' then
  redis.call('HSET', p .. 'a:' .. ARGV[10], 'offer', '', 'caller', ARGV[2])
  redis.call('SADD', p .. 'agents', ARGV[10])
end
redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[13], '*', 'e', ARGV[12])
return 1
