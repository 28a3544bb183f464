--[[
  event_ids_release.lua — unbind event ids of ONE project that a refused request bound.

  The gateway claims event ids in the same round trip in which it confirms the caller's
  credentials (gateway/admission.py); when that round trip shows the request must be refused
  (credentials rotated, rate limit, lockout), the ids it bound are freed again — but only where
  the key still holds this request's fingerprint (compare and delete). All keys share the
  project's hash tag.

  KEYS[1..n]   event-id keys       keys.event_fingerprint(project, event id), each newly bound
                                   (event_ids_claim.lua answered 1) by the refused request

  ARGV[1..n]   fingerprint         of event i (hex), as claimed

  Output: number of ids unbound
]]
local released = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
