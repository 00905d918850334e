-- Renews the lease of live jobs this consumer still holds (XCLAIM ... JUSTID resets their
-- idle time without counting a delivery), so a slow job is not stolen from a live worker.
-- Atomic: ownership is checked and renewed in one step, so a job that another consumer has
-- already reclaimed (our lease lapsed) is never pulled back.
-- KEYS[1] stream. ARGV[1] group, ARGV[2] consumer, ARGV[3..] entry ids.
-- Returns the number renewed.
local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    n = n + 1
  end
end
return n
