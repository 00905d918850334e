-- Settles a failed delivery: schedule a retry, or dead-letter after max_deliveries.
-- Atomic: the job leaves the stream (XACK + XDEL) and lands in the retry set or the
-- dead-letter stream in one step, so a crash or a restart in between can neither lose it nor
-- leave it in two places.
-- KEYS[1] stream, KEYS[2] retry sorted set, KEYS[3] dead-letter stream.
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] job id, ARGV[4] deliveries so far,
-- ARGV[5] max deliveries, ARGV[6] retry delay in ms, ARGV[7] payload, ARGV[8] error text.
-- Returns 0 (already settled elsewhere), 1 (retry scheduled) or 2 (dead-lettered).
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XDEL', KEYS[1], ARGV[2])
if tonumber(ARGV[4]) >= tonumber(ARGV[5]) then
  redis.call('XADD', KEYS[3], '*', 'j', ARGV[3], 'p', ARGV[7], 'd', ARGV[4], 'e', ARGV[8])
  return 2
end
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[6])
-- The member carries everything the mover needs; the job id keeps it unique.
redis.call('ZADD', KEYS[2], due, ARGV[4] .. '|' .. ARGV[3] .. '|' .. ARGV[7])
return 1
