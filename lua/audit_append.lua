--[[
  audit_append.lua — append one entry to a project's hash-chained audit log, atomically,
  IF the chain head is still the one the entry was built on (compare-and-set); then prune
  entries older than the retention cutoff and the oldest entries past the per-project cap,
  recording the last pruned entry as the checkpoint the verifier starts from.

  The entry's hash (SHA-256) is computed by the caller over the head it read; a concurrent
  append moves the head and this script refuses, so the chain can never fork.

  KEYS[1] head        hash: seq, hash, at_ms of the newest entry
  KEYS[2] entries     sorted set: score = seq, member = entry JSON
  KEYS[3] times       sorted set: score = at_ms, member = seq
  KEYS[4] checkpoint  hash: seq, hash of the newest PRUNED entry (absent: nothing pruned)

  ARGV[1] expected_seq   head seq the entry was built on (0 for an empty log)
  ARGV[2] expected_hash  head hash the entry was built on (64 zeros for an empty log)
  ARGV[3] seq            the new entry's seq (expected_seq + 1)
  ARGV[4] entry          the entry JSON (with its hash)
  ARGV[5] hash           the entry's hash
  ARGV[6] at_ms          the entry's time, Unix ms
  ARGV[7] cutoff_ms      prune entries with at_ms < cutoff_ms (0: keep everything)
  ARGV[8] prune_max      most entries pruned by one call
  ARGV[9] max_entries    entries kept per project at most, the oldest pruned first (0: no cap)

  Output:
    {0, pruned}                          appended; number of entries pruned
    {-4, head_seq, head_hash, head_at}   HEAD_MOVED: rebuild the entry on this head and retry
    {-1}                                 BAD_ARGUMENTS
]]
local expected_seq = tonumber(ARGV[1])
local expected_hash = ARGV[2]
local seq = tonumber(ARGV[3])
local entry = ARGV[4]
local hash = ARGV[5]
local at_ms = tonumber(ARGV[6])
local cutoff_ms = tonumber(ARGV[7])
local prune_max = tonumber(ARGV[8])

if not (expected_seq and seq and at_ms and cutoff_ms and prune_max) or seq ~= expected_seq + 1 then
  return {-1}
end

local head = redis.call('HMGET', KEYS[1], 'seq', 'hash', 'at_ms')
local head_seq = tonumber(head[1]) or 0
local head_hash = head[2] or string.rep('0', 64)
if head_seq ~= expected_seq or head_hash ~= expected_hash then
  return {-4, head_seq, head_hash, tonumber(head[3]) or 0}
end

redis.call('HSET', KEYS[1], 'seq', seq, 'hash', hash, 'at_ms', at_ms)
redis.call('ZADD', KEYS[2], seq, entry)
redis.call('ZADD', KEYS[3], at_ms, seq)

local pruned = 0
local function prune(old_seq, row)
  if row then
    redis.call('HSET', KEYS[4], 'seq', old_seq, 'hash', cjson.decode(row)['hash'])
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], old_seq, old_seq)
  redis.call('ZREM', KEYS[3], old_seq)
  pruned = pruned + 1
end

if cutoff_ms > 0 then
  local old = redis.call('ZRANGE', KEYS[3], '-inf', '(' .. cutoff_ms, 'BYSCORE', 'LIMIT', 0, prune_max)
  for _, old_seq in ipairs(old) do
    if tonumber(old_seq) >= seq then break end  -- never prune the head
    local rows = redis.call('ZRANGE', KEYS[2], old_seq, old_seq, 'BYSCORE')
    prune(old_seq, rows[1])
  end
end

local max_entries = tonumber(ARGV[9]) or 0
if max_entries > 0 and seq > max_entries and pruned < prune_max then
  -- oldest first, so the checkpoint ends on the newest entry pruned
  local over = redis.call('ZRANGE', KEYS[2], '-inf', seq - max_entries, 'BYSCORE',
                          'LIMIT', 0, prune_max - pruned, 'WITHSCORES')
  for i = 1, #over, 2 do
    prune(over[i + 1], over[i])
  end
end
return {0, pruned}
