--[[
  idempotency_begin.lua — reserve an Idempotency-Key for one request, or tell why not.

  The first request with a key stores its fingerprint and a reservation token under a short
  lease; later requests with the same key see the stored answer (replay), the unfinished
  reservation (in progress) or a different fingerprint (mismatch). Check and reservation are one
  atomic step, so of two simultaneous requests exactly one is RESERVED.

  KEYS[1] record   hash: fp (request fingerprint), tok (token), status, body (once finished)

  ARGV[1] fingerprint   hex SHA-256 of method, path, query and body
  ARGV[2] token         random id of this request (only it may finish the record)
  ARGV[3] lease_ms      how long an unfinished reservation lives, ms

  Output: {code, status, body}
    code  0 RESERVED     this request goes ahead
          1 REPLAY       finished before: status and body of the first answer follow
          2 IN_PROGRESS  the first request has not finished yet
          3 MISMATCH     the key was used for a different request
]]
local record = KEYS[1]
local fingerprint = ARGV[1]
local token = ARGV[2]
local lease_ms = tonumber(ARGV[3])

local stored = redis.call('HMGET', record, 'fp', 'status', 'body')
if not stored[1] then
  redis.call('HSET', record, 'fp', fingerprint, 'tok', token)
  redis.call('PEXPIRE', record, lease_ms)
  return {0}
end
if stored[1] ~= fingerprint then
  return {3}
end
if not stored[2] then
  return {2}
end
return {1, stored[2], stored[3]}
