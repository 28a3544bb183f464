--[[
  save_verdicts.lua — store a batch of verdicts in one call (one reply instead of one per SET).

  Used on a single Redis only: verdict keys carry no common hash tag (a project's verdicts are
  spread over the cluster on purpose), so on Redis Cluster the store pipelines plain SETs instead.

  KEYS[1..n]  verdict keys (ratchet.keys.Keys.verdict), one per verdict
  ARGV[1]     ttl        seconds each verdict is kept
  ARGV[2..n+1] the verdict JSON of KEYS[i-1], in the same order

  Output: n, the number of verdicts stored
]]
local ttl = ARGV[1]
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ttl)
end
return #KEYS
