-- Takes over jobs whose holder's lease lapsed (XAUTOCLAIM), and dead-letters the ones that
-- have now been delivered more than max_deliveries times: a poison job that crashes every
-- worker it reaches.
-- Atomic: the claim, the delivery count read (XPENDING) and the dead-lettering are one step,
-- so a job is never both handed to this consumer and dead-lettered, and never dropped.
-- KEYS[1] stream, KEYS[2] dead-letter stream.
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle ms (the lease), ARGV[4] cursor,
-- ARGV[5] count, ARGV[6] max deliveries.
-- Returns {next cursor, {{entry id, job id, payload, deliveries}, ...}, dead-lettered count}.
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local max = tonumber(ARGV[6])
local out = {}
local dead = 0
for _, e in ipairs(r[2]) do
  local id = e[1]
  local f = e[2]
  local j, p, d = id, '', 0
  for i = 1, #f, 2 do
    if f[i] == 'j' then j = f[i + 1]
    elseif f[i] == 'p' then p = f[i + 1]
    elseif f[i] == 'd' then d = tonumber(f[i + 1]) end
  end
  local pend = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  local deliveries = d + tonumber(pend[1][4])
  if deliveries > max then
    redis.call('XADD', KEYS[2], '*', 'j', j, 'p', p, 'd', deliveries - 1,
      'e', 'delivered more than max_deliveries times: its worker died each time')
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    dead = dead + 1
  else
    out[#out + 1] = {id, j, p, deliveries}
  end
end
-- Entries deleted while pending (Redis 7 lists them third) hold no data left to run; ack them
-- so they stop showing as pending. ack.lua and fail.lua never create them.
if r[3] then
  for _, id in ipairs(r[3]) do
    redis.call('XACK', KEYS[1], ARGV[1], id)
  end
end
return {r[1], out, dead}
