--[[
  event_ids_claim.lua — bind event ids of ONE project to the fingerprints of their first bodies.

  For each event: if its key is free, store the fingerprint with the window as TTL (the id is
  new); if it holds the same fingerprint, the event is an idempotent retry; otherwise the id was
  used for a different event (of any agent: the fingerprint covers the agent id). Check and bind
  are one step per key (SET NX GET), so two different bodies racing for one id cannot both win.
  All keys share the project's hash tag.

  KEYS[1..n]   event-id keys       keys.event_fingerprint(project, event id)

  ARGV[1]      window_s            how long an id stays bound, s
  ARGV[2..n+1] fingerprint         of event i (hex)

  Output: {ok_1, ..., ok_n}   1 new id (bound now), 2 same body (an idempotent retry),
                              0 id bound to a different body
]]
local window_s = ARGV[1]
local out = {}
for i, key in ipairs(KEYS) do
  local fingerprint = ARGV[i + 1]
  local previous = redis.call('SET', key, fingerprint, 'NX', 'GET', 'EX', window_s)
  if not previous then
    out[i] = 1
  elseif previous == fingerprint then
    out[i] = 2
  else
    out[i] = 0
  end
end
return out
