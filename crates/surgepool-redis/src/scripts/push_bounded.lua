-- Pushes a batch of jobs only if the stream stays within its bound.
-- Atomic: the length check and the XADDs run as one step, so concurrent producers can never
-- overshoot the bound together (a check-then-XADD from the client could).
-- Acked entries are deleted (see ack.lua), so XLEN counts exactly the work not yet settled:
-- unread entries plus pending ones.
-- KEYS[1] stream. ARGV[1] max length, ARGV[2..] payloads.
-- Returns the new entry ids, or -1 when the batch does not fit.
local max = tonumber(ARGV[1])
local n = #ARGV - 1
if redis.call('XLEN', KEYS[1]) + n > max then
  return -1
end
local ids = {}
for i = 2, #ARGV do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'p', ARGV[i])
end
return ids
