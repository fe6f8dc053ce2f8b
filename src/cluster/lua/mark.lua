-- A node marks one of its callers' places: held (offered to nobody for a
-- while) or a callback (the caller hung up to be called back), so that a
-- dispatcher taking over holds it too, and a reaper can hand the callback
-- to a live node. The dispatcher is told in the same step.
-- ARGV: prefix, caller id, held (JSON), callback (JSON, '-' to leave
--       alone), event (JSON), events maxlen
local p = ARGV[1]
local key = p .. 'c:' .. ARGV[2]
if redis.call('EXISTS', key) == 1 then
  redis.call('HSET', key, 'held', ARGV[3])
  if ARGV[4] ~= '-' then
    redis.call('HSET', key, 'callback', ARGV[4])
  end
end
redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[6], '*', 'e', ARGV[5])
return 1
