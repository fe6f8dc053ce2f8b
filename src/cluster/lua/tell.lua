-- A request to the dispatcher that changes no shared entry by itself (an
-- offer's result, an agent's state request); with a phone contact, the
-- contact is stored (or removed) too, so that any node can ring the agent.
-- ARGV: prefix, event (JSON), events maxlen, agent ('' if none),
--       contact (JSON, '' to remove, '-' to leave alone), contact ttl ms
local p = ARGV[1]
if ARGV[4] ~= '' and ARGV[5] ~= '-' then
  local key = p .. 'phone:' .. ARGV[4]
  if ARGV[5] == '' then
    redis.call('DEL', key)
  else
    redis.call('SET', key, ARGV[5], 'PX', ARGV[6])
  end
end
redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[2])
return 1
