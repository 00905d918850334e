-- Moves retries that are due from the retry set back into the stream.
-- Atomic: ZRANGEBYSCORE, XADD and ZREM run as one step, so every consumer may run the mover
-- and each due job is still moved exactly once.
-- KEYS[1] stream, KEYS[2] retry sorted set. ARGV[1] how many to move at most.
-- Returns the number moved.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, m in ipairs(due) do
  local a = string.find(m, '|', 1, true)
  local b = string.find(m, '|', a + 1, true)
  local d = string.sub(m, 1, a - 1)
  local j = string.sub(m, a + 1, b - 1)
  local p = string.sub(m, b + 1)
  redis.call('XADD', KEYS[1], '*', 'j', j, 'p', p, 'd', d)
  redis.call('ZREM', KEYS[2], m)
end
return #due
