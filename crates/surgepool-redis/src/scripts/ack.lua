-- Acknowledges finished jobs and deletes their entries (XACK then XDEL).
-- Atomic: an entry is never left acked-but-present (it would be counted twice: acked and still
-- in the stream) nor deleted while still pending. Deleting acked entries is the trimming: the
-- stream holds only unsettled work, so no MAXLEN (which could drop unread or pending work) is
-- ever used.
-- KEYS[1] stream. ARGV[1] group, ARGV[2..] entry ids.
-- Returns one flag per id: 1 acked by this call, 0 already settled elsewhere (a lease lapsed
-- and another consumer took the job over).
local out = {}
for i = 2, #ARGV do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    redis.call('XDEL', KEYS[1], ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
