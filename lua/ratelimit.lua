--[[
  ratelimit.lua — take `cost` tokens from ONE token bucket, all or nothing (docs/design.md §5);
  optionally, in the same all-or-nothing step, `cost2` tokens from a SECOND bucket.

  A bucket refills continuously at `rate` tokens per ms up to `capacity`. A request that needs
  more tokens than are left takes none (a batch of N events is admitted whole or refused whole);
  with a second bucket, a request takes from both or from neither. A full bucket is the same as
  no key, so the key expires once it would have refilled.

  The second bucket is the ingest request's `spread` bucket (models/ratelimit.py): the tokens a
  batch takes for its agents after the first (one Kafka envelope each) come from the ingest
  bucket AND from this smaller one, so a project may not spend its whole ingest burst on
  envelopes at once.

  KEYS[1] bucket     hash {t = tokens left (float), ts = time of t, ms}; one key per bucket
  KEYS[2] bucket2    optional: the second bucket (same layout; same hash tag as KEYS[1])

  ARGV[1] capacity   tokens in a full bucket (the per-minute rate of the tier)
  ARGV[2] rate       refill, tokens per ms
  ARGV[3] now_ms     current time, ms (Unix)
  ARGV[4] cost       tokens this request needs from KEYS[1] (>= 0; 0 only with KEYS[2])
  ARGV[5] debt       optional; "1": take `cost` even if fewer tokens are left (the bucket goes
                     below zero, down to -capacity at most): a charge for work already done,
                     e.g. a response's size, that makes the next requests wait for it (not with
                     a second bucket)
  ARGV[6] capacity2  with KEYS[2]: tokens in the second bucket when full
  ARGV[7] rate2      with KEYS[2]: its refill, tokens per ms
  ARGV[8] cost2      with KEYS[2]: tokens the request needs from it (<= capacity2)
  ARGV[9] read       with KEYS[2], optional: tokens taken from KEYS[1] (down to 0 at most)
                     when ONLY KEYS[2] refuses — the work of reading the refused request, so a
                     flood of refused requests drains KEYS[1] like accepted ones

  Output: {allowed, remaining, retry_after_ms, reset_ms, refused_by}
    allowed         1 tokens taken, 0 refused (nothing taken from either bucket)
    remaining       whole tokens left in KEYS[1] after this call (below zero after a debt)
    retry_after_ms  0 when allowed; else ms until the bucket that refused (refused_by) holds
                    what the request needs; -1 if never (cost > capacity)
    reset_ms        ms until KEYS[1] is full again
    refused_by      0 allowed; 1 KEYS[1] has too few tokens; 2 only KEYS[2] has too few
]]
local now = tonumber(ARGV[3])

-- tokens in a bucket now (refilled since its last write), and the time they were counted at
local function level(key, capacity, rate)
  local state = redis.call('HMGET', key, 't', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil or ts == nil then
    tokens, ts = capacity, now
  end
  if now > ts then
    tokens = math.min(capacity, tokens + (now - ts) * rate)
  end
  return tokens, ts
end

-- write a bucket's tokens back; returns ms until it is full again
local function store(key, capacity, rate, tokens, ts)
  local reset = math.ceil((capacity - tokens) / rate)
  if reset > 0 then
    redis.call('HSET', key, 't', tostring(tokens), 'ts', tostring(math.max(now, ts)))
    redis.call('PEXPIRE', key, reset)
  else
    redis.call('DEL', key)
  end
  return reset
end

-- ms until a bucket holding `have` tokens holds `need`; -1 if it never can
local function wait_ms(need, have, capacity, rate)
  if need > capacity then return -1 end
  return math.ceil((need - have) / rate)
end

local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[4])
local debt = ARGV[5] == '1'
local tokens, ts = level(KEYS[1], capacity, rate)

local second = KEYS[2] ~= nil
local capacity2, rate2, cost2, tokens2, ts2
if second then
  capacity2, rate2, cost2 = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
  tokens2, ts2 = level(KEYS[2], capacity2, rate2)
end

local ingest_short = cost > 0 and cost > tokens
local spread_short = second and cost2 > tokens2
local allowed, retry, refused_by = 0, 0, 0
if not ingest_short and not spread_short then
  tokens = tokens - cost
  allowed = 1
  if second then
    tokens2 = tokens2 - cost2
    store(KEYS[2], capacity2, rate2, tokens2, ts2)
  end
elseif debt and not second then
  tokens = math.max(tokens - cost, -capacity)
  allowed = 1
elseif ingest_short then
  refused_by = 1
  retry = wait_ms(cost, tokens, capacity, rate)
else
  refused_by = 2
  retry = wait_ms(cost2, tokens2, capacity2, rate2)
  local read = tonumber(ARGV[9] or '0') or 0
  if read > 0 and tokens > 0 then
    tokens = math.max(tokens - read, 0)
  end
end

local reset = store(KEYS[1], capacity, rate, tokens, ts)
return {allowed, math.floor(tokens), retry, reset, refused_by}
