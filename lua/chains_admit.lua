--[[
  chains_admit.lua — admit the chains (agent × service) of ONE project under its cap.

  A project's chains are a sorted set: member = the chain's tag, score = when a gateway last
  saw it (ms). Members idle longer than the chain TTL are dropped first (their Redis state has
  expired too), then each chain of the call is admitted: one already in the set has its time
  refreshed; a new one is added while the set holds fewer than the cap, else refused. So a
  tenant can keep at most `cap` chains at once, and an idle chain frees its place when it
  expires. Check and add are one step, so concurrent gateways cannot overshoot.

  KEYS[1]      chains              keys.project_chains(project)

  ARGV[1]      now_ms              the gateway's clock, ms
  ARGV[2]      ttl_ms              idle TTL of a chain, ms (RATCHET_CHAIN_TTL_S × 1000)
  ARGV[3]      cap                 most chains the project may hold
  ARGV[4..n+3] tag                 of chain i

  Output: {ok_1, ..., ok_n}   1 admitted (known or added), 0 refused (the project is at its cap)
]]
local key = KEYS[1]
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - ttl)
local size = redis.call('ZCARD', key)
local out = {}
for i = 4, #ARGV do
  local tag = ARGV[i]
  if redis.call('ZSCORE', key, tag) then
    redis.call('ZADD', key, now, tag)
    out[i - 3] = 1
  elseif size < cap then
    redis.call('ZADD', key, now, tag)
    size = size + 1
    out[i - 3] = 1
  else
    out[i - 3] = 0
  end
end
redis.call('PEXPIRE', key, ttl)
return out
