-- The dispatcher's lease. Taken when free: a new epoch (returned, > 0), so
-- whatever an earlier dispatcher still tries is refused. Renewed by its
-- holder (-1). Held by another (0).
-- ARGV: prefix, node incarnation, lease ms, lowest epoch to hand out
local p = ARGV[1]
local holder = redis.call('GET', p .. 'dispatcher')
if holder == ARGV[2] then
  redis.call('PEXPIRE', p .. 'dispatcher', ARGV[3])
  return -1
end
if holder then return 0 end
redis.call('SET', p .. 'dispatcher', ARGV[2], 'PX', ARGV[3])
local epoch = redis.call('INCR', p .. 'epoch')
if epoch < tonumber(ARGV[4]) then
  epoch = tonumber(ARGV[4])
  redis.call('SET', p .. 'epoch', epoch)
end
return epoch
