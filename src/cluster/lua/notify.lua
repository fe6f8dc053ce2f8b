-- The dispatcher tells a node something (an announcement, a caller's exit,
-- an agent's state); with `forget`, the caller's entry goes (they left the
-- queue without an agent). With an agent view, the agent's state is kept
-- for a dispatcher that takes over.
-- ARGV: prefix, epoch, node ('' for none), message (JSON), inbox maxlen,
--       caller id to forget (''), agent (''), agent view (JSON), agent home
local p = ARGV[1]
if redis.call('GET', p .. 'epoch') ~= ARGV[2] then return -1 end
if ARGV[6] ~= '' then
  local key = p .. 'c:' .. ARGV[6]
  local node = redis.call('HGET', key, 'node')
  redis.call('DEL', key)
  redis.call('SREM', p .. 'callers', ARGV[6])
  if node then redis.call('SREM', p .. 'n:' .. node .. ':callers', ARGV[6]) end
end
if ARGV[7] ~= '' then
  redis.call('HSET', p .. 'a:' .. ARGV[7], 'view', ARGV[8], 'home', ARGV[9])
  redis.call('SADD', p .. 'agents', ARGV[7])
end
if ARGV[3] ~= '' then
  redis.call('XADD', p .. 'inbox:' .. ARGV[3], 'MAXLEN', '~', ARGV[5], '*', 'm', ARGV[4])
end
return 1
