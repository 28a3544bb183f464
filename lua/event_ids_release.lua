--[[
  event_ids_release.lua — unbind event ids of ONE project that a refused request bound.

  The gateway claims event ids in the same round trip in which it confirms the caller's
  credentials (gateway/admission.py); when that round trip shows the request must be refused
  (credentials rotated, rate limit, lockout), the ids it bound are freed again — but only where
  a bucket still holds this request's fingerprint for the id (compare and delete). Every live
  bucket is asked (the request bound its ids in the bucket current at its claim, which may have
  rolled over since). All keys share the project's hash tag {e:<project>}.

  KEYS[1..m]   the live buckets       keys.event_id_bucket(project, i), as event_ids_claim.lua

  ARGV[1..]    per event i: field (ARGV[2i - 1]), fingerprint (12 bytes, ARGV[2i]), each newly
               bound (event_ids_claim.lua answered 1) by the refused request

  Output: number of ids unbound
]]
local n = #ARGV / 2
local CHUNK = 1000 -- values per unpack: well below Lua's C stack limit
local fields = {}
for i = 1, n do fields[i] = ARGV[2 * i - 1] end

local released = 0
for _, key in ipairs(KEYS) do
  for lo = 1, n, CHUNK do
    local hi = math.min(n, lo + CHUNK - 1)
    local got = redis.call('HMGET', key, unpack(fields, lo, hi))
    for j = lo, hi do
      if got[j - lo + 1] == ARGV[2 * j] then
        redis.call('HDEL', key, fields[j])
        released = released + 1
      end
    end
  end
end
return released
