--[[
  ratelimit.lua — take `cost` tokens from ONE token bucket, all or nothing (docs/design.md §5).

  The bucket refills continuously at `rate` tokens per ms up to `capacity`. A request that needs
  more tokens than are left takes none (a batch of N events is admitted whole or refused whole).
  A full bucket is the same as no key, so the key expires once it would have refilled.

  KEYS[1] bucket     hash {t = tokens left (float), ts = time of t, ms}; one key per bucket

  ARGV[1] capacity   tokens in a full bucket (the per-minute rate of the tier)
  ARGV[2] rate       refill, tokens per ms
  ARGV[3] now_ms     current time, ms (Unix)
  ARGV[4] cost       tokens this request needs (>= 1)
  ARGV[5] debt       optional; "1": take `cost` even if fewer tokens are left (the bucket goes
                     below zero, down to -capacity at most): a charge for work already done,
                     e.g. a response's size, that makes the next requests wait for it

  Output: {allowed, remaining, retry_after_ms, reset_ms}
    allowed         1 tokens taken, 0 refused (nothing taken)
    remaining       whole tokens left after this call (below zero after a debt)
    retry_after_ms  0 when allowed; else ms until `cost` tokens are there; -1 if never
                    (cost > capacity)
    reset_ms        ms until the bucket is full again
]]
local key = KEYS[1]
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local debt = ARGV[5] == '1'

local state = redis.call('HMGET', key, 't', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens, ts = capacity, now
end
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate)
end

local allowed, retry = 0, 0
if cost <= tokens then
  tokens = tokens - cost
  allowed = 1
elseif debt then
  tokens = math.max(tokens - cost, -capacity)
  allowed = 1
elseif cost > capacity then
  retry = -1
else
  retry = math.ceil((cost - tokens) / rate)
end

local reset = math.ceil((capacity - tokens) / rate)
if reset > 0 then
  redis.call('HSET', key, 't', tostring(tokens), 'ts', tostring(math.max(now, ts)))
  redis.call('PEXPIRE', key, reset)
else
  redis.call('DEL', key)
end
return {allowed, math.floor(tokens), retry, reset}
