--[[
  save_verdicts.lua — store a batch of ONE project's verdicts in one call, in one hash per kind
  and time bucket (not one key per verdict: one reply, one EXPIREAT per hash, and a hash field
  costs less memory than a key with its own TTL).

  Allow verdicts go to KEYS[1] (kept for a short while: as long as a caller may look them up),
  every other verdict to KEYS[2] (kept for approvals); the durable record of every verdict is the
  `verdicts` Kafka topic. Field = event id, value = the verdict as the caller encoded it: a
  one-verdict compact envelope (a MessagePack array: 2, project, agent, trace, 0, then an
  array of its one row; models/verdict_stored.py), or JSON (earlier releases; it starts with "{").
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
  ARGV[4..] per verdict i: event id (ARGV[2 + 2i]), the stored verdict (ARGV[3 + 2i])

  Output: the 1-based indexes of the verdicts NOT stored (another agent's verdict holds the id)
]]
local kinds = ARGV[3]
local n = #kinds
local refused = {}
local used = { false, false }

-- the agent of a stored verdict (only read when an id is already held: a redelivery or another
-- agent's event under the id)
local function agent_of(body)
  if string.byte(body, 1) == 123 then -- '{': JSON
    local ok, d = pcall(cjson.decode, body)
    if ok and type(d) == 'table' then return d['agent_id'] end
    return nil
  end
  local ok, d = pcall(cmsgpack.unpack, body)
  if ok and type(d) == 'table' then return d[3] end
  return nil
end

-- What both buckets hold for the batch's ids: one HMGET each (not a command per verdict); then
-- the verdicts are judged in order against it (a verdict written earlier in the batch counts as
-- held) and written by one HSET per bucket.
local held = { {}, {} }
for k = 1, 2 do
  for j = 1, n, 1000 do
    local ids = {}
    for i = j, math.min(j + 999, n) do ids[#ids + 1] = ARGV[2 + 2 * i] end
    local got = redis.call('HMGET', KEYS[k], unpack(ids))
    for x = 1, #ids do
      if got[x] then held[k][ids[x]] = got[x] end
    end
  end
end
local writes = { {}, {} }
for i = 1, n do
  local k = 1
  if string.byte(kinds, i) == 110 then k = 2 end -- 'n'
  local id, body = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  local here, there = held[k][id], held[3 - k][id]
  -- the bucket holds this id: the same agent's redelivery is stored again, another's never;
  -- new here, but the other kind's bucket holds it: the same rule
  local prior = here or there
  if prior and agent_of(prior) ~= agent_of(body) then
    refused[#refused + 1] = i
  else
    held[k][id] = body
    local w = writes[k]
    w[#w + 1] = id
    w[#w + 1] = body
  end
  used[k] = true
end
for k = 1, 2 do
  local w = writes[k]
  for j = 1, #w, 1000 do
    redis.call('HSET', KEYS[k], unpack(w, j, math.min(j + 999, #w)))
  end
end
if used[1] then redis.call('EXPIREAT', KEYS[1], ARGV[1]) end
if used[2] then redis.call('EXPIREAT', KEYS[2], ARGV[2]) end
return refused
