--[[
  idempotency_begin.lua — reserve an Idempotency-Key for one request, or tell why not.

  The first request with a key stores its fingerprint, its headers digest and a reservation
  token under a short lease; later requests with the same key see a different fingerprint
  (mismatch), other authorising headers (other headers), the unfinished reservation (in
  progress) or the stored answer (replay) — checked in that order, so a request that is not the
  one answered learns nothing about the state of the one that is. Check and reservation are one
  atomic step, so of two simultaneous requests exactly one is RESERVED.

  KEYS[1] record   hash: fp (request fingerprint), hd (headers digest), tok (token), status,
                   body (once finished); its name carries the project and the API key's id

  ARGV[1] fingerprint   hex SHA-256 of method, path, query and body
  ARGV[2] token         random id of this request (only it may finish the record)
  ARGV[3] lease_ms      how long an unfinished reservation lives, ms
  ARGV[4] headers       hex SHA-256 of the headers that authorise the request beside the API key
                        (the signature headers of a single event; of no header elsewhere)

  Output: {code, status, body}
    code  0 RESERVED       this request goes ahead
          1 REPLAY         finished before: status and body of the first answer follow
          2 IN_PROGRESS    the first request has not finished yet
          3 MISMATCH       the key was used for a different request
          4 OTHER_HEADERS  the same request, sent with other authorising headers
]]
local record = KEYS[1]
local fingerprint = ARGV[1]
local token = ARGV[2]
local lease_ms = tonumber(ARGV[3])
local headers = ARGV[4]

local stored = redis.call('HMGET', record, 'fp', 'status', 'body', 'hd')
if not stored[1] then
  redis.call('HSET', record, 'fp', fingerprint, 'tok', token, 'hd', headers)
  redis.call('PEXPIRE', record, lease_ms)
  return {0}
end
if stored[1] ~= fingerprint then
  return {3}
end
if stored[4] ~= headers then
  return {4}
end
if not stored[2] then
  return {2}
end
return {1, stored[2], stored[3]}
