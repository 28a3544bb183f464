--[[
  rotate_secret.lua — replace an agent's signing secret (the old one fails at once), only if the
  agent exists (never creates an agent record).

  KEYS[1] agent      the agent's hash (field secret)

  ARGV[1] secret     the new secret
  ARGV[2] now        Unix seconds (text)

  Output: code
     0 rotated
    -15 UNKNOWN_AGENT
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -15
end
redis.call('HSET', KEYS[1], 'secret', ARGV[1], 'secret_rotated_at', ARGV[2])
return 0
