-- A node takes one of its callers out of the queue (they hung up, the flow
-- moved on, or their call with an agent ended): the entry goes, a live offer
-- of theirs goes with it, and the dispatcher is told.
-- ARGV: prefix, caller id, event (JSON), events maxlen
-- Returns 1 when the caller was in the store.
local p = ARGV[1]
local key = p .. 'c:' .. ARGV[2]
local existed = redis.call('EXISTS', key)
if existed == 1 then
  local node = redis.call('HGET', key, 'node')
  local agent = redis.call('HGET', key, 'agent')
  if agent and agent ~= '' then
    local akey = p .. 'a:' .. agent
    if redis.call('HGET', akey, 'caller') == ARGV[2] then
      redis.call('HSET', akey, 'offer', '', 'caller', '')
    end
  end
  redis.call('DEL', key)
  redis.call('SREM', p .. 'callers', ARGV[2])
  if node then
    redis.call('SREM', p .. 'n:' .. node .. ':callers', ARGV[2])
  end
end
redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[4], '*', 'e', ARGV[3])
return existed
