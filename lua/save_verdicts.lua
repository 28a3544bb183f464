--[[
  save_verdicts.lua — store a batch of ONE project's verdicts in one call, in one hash per kind
  and time bucket (not one key per verdict: one reply, one EXPIREAT per hash, and a hash field
  costs less memory than a key with its own TTL).

  Allow verdicts go to KEYS[1] (kept for a short while: as long as a caller may look them up),
  every other verdict to KEYS[2] (kept for approvals); the durable record of every verdict is the
  `verdicts` Kafka topic. Field = event id, value = the verdict JSON.
  An event id belongs to ONE agent per project (the gateway binds ids per project): a verdict is
  written where neither current bucket holds its id yet, or holds the same agent's (a
  redelivered event is answered again). Another agent's verdict is never overwritten; across
  older buckets lua/verdict_get.lua answers the id's first agent only (earliest decided_at), so a
  later intruder is never served.
  All keys share the project's verdict hash tag {v:<project>}: Cluster-safe.

  KEYS[1]  allow bucket       hash (ratchet.store.keys.Keys.verdict_bucket(project, "a", i))
  KEYS[2]  non-allow bucket   hash (ratchet.store.keys.Keys.verdict_bucket(project, "n", i))
  ARGV[1]  expire-at of KEYS[1], Unix seconds (end of its bucket + the allow TTL)
  ARGV[2]  expire-at of KEYS[2], Unix seconds (end of its bucket + the verdict TTL)
  ARGV[3]  kinds: one character per verdict, "a" (allow → KEYS[1]) or "n" (→ KEYS[2])
  ARGV[4..] per verdict i: event id (ARGV[2 + 2i]), verdict JSON (ARGV[3 + 2i])

  Output: the 1-based indexes of the verdicts NOT stored (another agent's verdict holds the id)
]]
local kinds = ARGV[3]
local refused = {}
local used = { false, false }

local function agent_of(body)
  local ok, d = pcall(cjson.decode, body)
  if ok and type(d) == 'table' then return d['agent_id'] end
  return nil
end

for i = 1, #kinds do
  local k = 1
  if string.byte(kinds, i) == 110 then k = 2 end -- 'n'
  local other = 3 - k
  local id, body = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  if redis.call('HSETNX', KEYS[k], id, body) == 0 then
    -- the bucket holds this id: the same agent's redelivery is stored again, another's never
    if agent_of(redis.call('HGET', KEYS[k], id)) == agent_of(body) then
      redis.call('HSET', KEYS[k], id, body)
    else
      refused[#refused + 1] = i
    end
  elseif redis.call('HEXISTS', KEYS[other], id) == 1 then
    -- new here, but the other kind's bucket holds the id: the same rule
    if agent_of(redis.call('HGET', KEYS[other], id)) ~= agent_of(body) then
      redis.call('HDEL', KEYS[k], id)
      refused[#refused + 1] = i
    end
  end
  used[k] = true
end
if used[1] then redis.call('EXPIREAT', KEYS[1], ARGV[1]) end
if used[2] then redis.call('EXPIREAT', KEYS[2], ARGV[2]) end
return refused
