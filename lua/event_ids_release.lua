--[[
  event_ids_release.lua — unbind event ids of ONE project that a refused request bound.

  The gateway claims event ids in the same round trip in which it confirms the caller's
  credentials (gateway/admission.py); when that round trip shows the request must be refused
  (credentials rotated, rate limit, lockout), the ids it bound are freed again — but only where
  the binding still holds this request's fingerprint (compare and delete): the live record in
  the project's bindings hash (lua/includes/id_slots.lua), or a field of a time bucket of the
  layout before. All keys share the project's hash tag {e:<project>}.

  KEYS[1]      the bindings           hash, keys.event_ids(project), as event_ids_claim.lua
  KEYS[2..]    the live time buckets of the layout before, as event_ids_claim.lua

  ARGV[1]      now                    Unix seconds (integer)
  ARGV[2]      window                 seconds a binding is kept
  ARGV[3..]    per event i, each newly bound (event_ids_claim.lua answered 1) by the refused
               request: digest (12 bytes, ARGV[3i]), fingerprint (12 bytes, ARGV[3i + 1]),
               field of the layout before (ARGV[3i + 2]), as event_ids_claim.lua

  Output: number of ids unbound
]]
--- @include "id_slots"
local key = KEYS[1]
local oldest = tonumber(ARGV[1]) - tonumber(ARGV[2])
local n = (#ARGV - 2) / 3

local released = 0
local k, s, count = slot_meta(redis.call('HGET', key, '#'))
local salt = redis.call('HGET', key, '#s') or ''  -- none: nothing bound in this hash
local values, changed, dropped = {}, {}, 0
for i = 1, n do
  local digest, print = ARGV[3 * i], ARGV[3 * i + 1]
  local field = slot_field(slot_address(salt, digest), k, s)
  if values[field] == nil then values[field] = redis.call('HGET', key, field) or '' end
  local value = values[field]
  local at = slot_find(value, digest, oldest)
  if at and string.sub(value, at + TAG, at + TAG + PRINT - 1) == string.sub(print, 1, PRINT) then
    values[field] = string.sub(value, 1, at - 1) .. string.sub(value, at + REC)
    changed[field] = true
    dropped = dropped + 1
  else
    for b = 2, #KEYS do
      if redis.call('HGET', KEYS[b], ARGV[3 * i + 2]) == print then
        redis.call('HDEL', KEYS[b], ARGV[3 * i + 2])
        released = released + 1
        break
      end
    end
  end
end
for field in pairs(changed) do
  if values[field] == '' then redis.call('HDEL', key, field)
  else redis.call('HSET', key, field, values[field]) end
end
if dropped > 0 then
  redis.call('HSET', key, '#', string.format('%d:%d:%d', k, s, math.max(0, count - dropped)))
end
return released + dropped
