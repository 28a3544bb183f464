--[[
  save_verdicts.lua — store a batch of verdicts in one call (one reply instead of one per SET).

  An event id belongs to ONE agent per project (the gateway binds ids per project): a verdict is
  written only where no verdict is stored yet, or where the stored one is the same agent's (a
  redelivered event is answered again). A stored verdict of ANOTHER agent is never overwritten,
  so even with the gateway's id check switched off no agent can replace another's verdict.

  Used on a single Redis only: verdict keys carry no common hash tag (a project's verdicts are
  spread over the cluster on purpose), so on Redis Cluster the store runs the same rule with
  pipelined SET NX GET (ratchet/store/verdicts.py).

  KEYS[1..n]      verdict keys (ratchet.store.keys.Keys.verdict), one per verdict
  ARGV[1]         ttl        seconds each verdict is kept
  ARGV[2..n+1]    the verdict JSON of KEYS[i-1], in the same order
  ARGV[n+2..2n+1] the agent id of verdict i

  Output: the 1-based indexes of the verdicts NOT stored (another agent's verdict holds the key)
]]
local ttl = ARGV[1]
local n = #KEYS
local refused = {}
for i = 1, n do
  local body = ARGV[i + 1]
  local previous = redis.call('SET', KEYS[i], body, 'NX', 'GET', 'EX', ttl)
  if previous then
    local ok, old = pcall(cjson.decode, previous)
    if ok and type(old) == 'table' and old['agent_id'] == ARGV[n + 1 + i] then
      redis.call('SET', KEYS[i], body, 'EX', ttl)
    else
      refused[#refused + 1] = i
    end
  end
end
return refused
