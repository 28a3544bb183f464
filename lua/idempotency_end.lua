--[[
  idempotency_end.lua — finish a reservation made by idempotency_begin.lua: keep the answer for
  replays, or release the key so a retry runs again (the request had no effect); or renew the
  lease of a reservation whose request is still running (its holder is alive).

  KEYS[1] record   as in idempotency_begin.lua

  ARGV[1] token    the reservation token given to idempotency_begin.lua
  ARGV[2] mode     "store" | "release" | "renew"
  ARGV[3] status   HTTP status of the answer (store only); lease_ms (renew only)
  ARGV[4] body     answer body bytes (store only)
  ARGV[5] ttl_s    how long the answer is kept, s (store only)

  Output: {code}
    code  0 done
         -20 LEASE_LOST  the reservation expired (or belongs to another request): nothing changed
]]
local record = KEYS[1]
local token = ARGV[1]
local mode = ARGV[2]

if redis.call('HGET', record, 'tok') ~= token then
  return {-20}
end
if mode == 'release' then
  redis.call('DEL', record)
  return {0}
end
if mode == 'renew' then
  redis.call('PEXPIRE', record, tonumber(ARGV[3]))
  return {0}
end
redis.call('HSET', record, 'status', ARGV[3], 'body', ARGV[4])
redis.call('HDEL', record, 'tok')
redis.call('EXPIRE', record, tonumber(ARGV[5]))
return {0}
