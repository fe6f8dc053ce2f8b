-- Everything a dispatcher taking over needs, read at one point of the event
-- stream: the callers, the agents, the phones, and the last event id.
-- ARGV: prefix
local p = ARGV[1]
local callers = {}
for _, id in ipairs(redis.call('SMEMBERS', p .. 'callers')) do
  local f = redis.call('HGETALL', p .. 'c:' .. id)
  if #f > 0 then
    local e = { id = id }
    for i = 1, #f, 2 do e[f[i]] = f[i + 1] end
    table.insert(callers, e)
  end
end
local agents = {}
for _, id in ipairs(redis.call('SMEMBERS', p .. 'agents')) do
  local f = redis.call('HGETALL', p .. 'a:' .. id)
  local e = { id = id }
  for i = 1, #f, 2 do e[f[i]] = f[i + 1] end
  local phone = redis.call('GET', p .. 'phone:' .. id)
  if phone then e['phone'] = phone end
  table.insert(agents, e)
end
local last = redis.call('XREVRANGE', p .. 'events', '+', '-', 'COUNT', 1)
local last_id = '0-0'
if #last > 0 then last_id = last[1][1] end
local applied = redis.call('GET', p .. 'applied') or '0-0'
return cjson.encode({ callers = callers, agents = agents, last_id = last_id, applied = applied })
