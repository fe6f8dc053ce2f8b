-- A node's heartbeat lapsed: its callers leave the shared queue (their calls
-- died with the node), agents ringing for or talking to them are freed, and
-- the dispatcher is told. Idempotent: only the first reaper gets the callers
-- (to write their records); a node that is alive is left alone (empty).
-- Callbacks are not lost with the node (their callers had hung up): each
-- goes to the reaper's inbox, to be carried out from its original place.
-- ARGV: prefix, node incarnation, events maxlen, reaper's incarnation,
--       inbox maxlen
local p = ARGV[1]
local inc = ARGV[2]
if redis.call('EXISTS', p .. 'node:' .. inc) == 1 then return '[]' end
local set = p .. 'n:' .. inc .. ':callers'
local ids = redis.call('SMEMBERS', set)
local lost = {}
local wire = {}
for _, id in ipairs(ids) do
  local key = p .. 'c:' .. id
  local f = redis.call('HGETALL', key)
  local e = {}
  for i = 1, #f, 2 do e[f[i]] = f[i + 1] end
  if e['agent'] and e['agent'] ~= '' then
    local akey = p .. 'a:' .. e['agent']
    if redis.call('HGET', akey, 'caller') == id then
      redis.call('HSET', akey, 'offer', '', 'caller', '')
    end
  end
  redis.call('DEL', key)
  redis.call('SREM', p .. 'callers', id)
  e['id'] = id
  local ok, cb = pcall(cjson.decode, e['callback'] or '')
  if ok and type(cb) == 'table' and type(cb['ticket']) == 'string' then
    local message = cjson.encode({ type = 'adopt_callback', ticket = cb['ticket'] })
    redis.call('XADD', p .. 'inbox:' .. ARGV[4], 'MAXLEN', '~', ARGV[5], '*', 'm', message)
  else
    table.insert(lost, e)
  end
  -- The call as text: a Lua number would round call ids above 2^53.
  table.insert(wire, { node = e['node'] or inc, call = e['call'] or '0' })
end
redis.call('DEL', set)
redis.call('SREM', p .. 'nodes', inc)
redis.call('DEL', p .. 'inbox:' .. inc)
if #wire > 0 then
  local event = cjson.encode({ type = 'node_lost', node = inc, callers = wire })
  redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[3], '*', 'e', event)
end
if #lost == 0 then return '[]' end
return cjson.encode(lost)
