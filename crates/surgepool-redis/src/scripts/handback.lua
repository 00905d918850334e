-- Hands unfinished jobs back at drain: each is re-added at the stream's tail and its old entry
-- acked and deleted, so another machine can take it at once instead of waiting out a lease.
-- Atomic: the re-XADD and the XACK + XDEL are one step, so the job is never lost nor present
-- twice, even if this process dies mid-drain.
-- KEYS[1] stream. ARGV[1] group, then per job: entry id, job id, prior deliveries, payload.
-- Returns the number handed back (a job already settled elsewhere is skipped).
local n = 0
for i = 2, #ARGV, 4 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    redis.call('XDEL', KEYS[1], ARGV[i])
    redis.call('XADD', KEYS[1], '*', 'j', ARGV[i + 1], 'p', ARGV[i + 3], 'd', ARGV[i + 2])
    n = n + 1
  end
end
return n
