-- Acknowledges finished jobs and deletes their entries (XACK then XDEL).
-- Atomic: an entry is never left acked-but-present (it would be counted twice: acked and still
-- in the stream) nor deleted while still pending. Deleting acked entries is the trimming: the
-- stream holds only unsettled work, so no MAXLEN (which could drop unread or pending work) is
-- ever used.
--
-- Idempotent per batch: the flags are kept under a receipt key, and a retry of the same batch
-- (its reply was lost: Redis killed after the write, a timeout) returns the first call's flags
-- instead of 0s, so the consumer counts its own acks as acked, not as settled elsewhere. The
-- previous batch's receipt (whose reply arrived) is deleted here, so a consumer keeps at most
-- one; the TTL covers a consumer that dies.
-- KEYS[1] stream, KEYS[2] this batch's receipt, KEYS[3] (optional) the previous receipt.
-- ARGV[1] group, ARGV[2] receipt TTL in ms, ARGV[3..] entry ids.
-- Returns one flag per id: 1 acked by this batch, 0 already settled elsewhere (a lease lapsed
-- and another consumer took the job over).
local receipt = redis.call('GET', KEYS[2])
if receipt then
  return cjson.decode(receipt)
end
if KEYS[3] then
  redis.call('DEL', KEYS[3])
end
local out = {}
for i = 3, #ARGV do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    redis.call('XDEL', KEYS[1], ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
redis.call('SET', KEYS[2], cjson.encode(out), 'PX', ARGV[2])
return out
