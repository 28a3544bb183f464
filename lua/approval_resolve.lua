--[[
  approval_resolve.lua — record a human's decision on a paused event: take it out of the
  project's paused index, store the decision and announce it on the decision stream, in one
  atomic step (of concurrent decisions on one event exactly one wins). All keys share the
  project tag `{p:<project>}`, so this runs on one Redis Cluster slot.

  KEYS[1] paused      sorted set: paused event id -> decided_at (Unix s)
  KEYS[2] approval    the decision record of this event (string, JSON)
  KEYS[3] decisions   the project's decision stream
  KEYS[4] by agent    optional: the paused index of the event's agent (sorted set, as KEYS[1])

  ARGV[1] event_id    member of KEYS[1]
  ARGV[2] approval    JSON stored in KEYS[2]
  ARGV[3] ttl_s       lifetime of KEYS[2] and KEYS[3], s
  ARGV[4] body        JSON body of the stream entry (kind "approval")
  ARGV[5] kept        approximate cap of KEYS[3], entries

  Output: {code, score}
    code  0 resolved: score = the event's paused-index score (text), to undo with
            VerdictStore.unresolve
          1 already decided (no longer paused, a decision record exists): nothing changed
          2 not paused (and never decided): nothing changed
]]
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    return {1, '0'}
  end
  return {2, '0'}
end
local ttl = tonumber(ARGV[3])
redis.call('ZREM', KEYS[1], ARGV[1])
if KEYS[4] then redis.call('ZREM', KEYS[4], ARGV[1]) end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ttl)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'kind', 'approval', 'body', ARGV[4])
redis.call('EXPIRE', KEYS[3], ttl)
return {0, score}
