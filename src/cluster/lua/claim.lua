-- The dispatcher's lease. Taken when free: a new epoch (returned, > 0), so
-- whatever an earlier dispatcher still tries is refused. Renewed by its
-- holder while it dispatches (`renew`: -1). Held by another (0).
-- A node asking to `take` it that holds it already (its dispatcher stopped,
-- say on a failover, before the lease ran out) takes it again with a new
-- epoch: a lease held by a node that no longer dispatches must not be
-- renewed forever.
-- ARGV: prefix, node incarnation, lease ms, lowest epoch to hand out,
--       'renew' or 'take'
local p = ARGV[1]
local holder = redis.call('GET', p .. 'dispatcher')
if holder == ARGV[2] and ARGV[5] == 'renew' then
  redis.call('PEXPIRE', p .. 'dispatcher', ARGV[3])
  return -1
end
if holder == ARGV[2] then holder = false end
if holder then return 0 end
redis.call('SET', p .. 'dispatcher', ARGV[2], 'PX', ARGV[3])
local epoch = redis.call('INCR', p .. 'epoch')
if epoch < tonumber(ARGV[4]) then
  epoch = tonumber(ARGV[4])
  redis.call('SET', p .. 'epoch', epoch)
end
return epoch
