--[[
  rotate_key.lua — replace a project's API key: the old key stops working in the same atomic
  step in which the new one starts (no window where both or neither work).

  KEYS[1] old_apikey   SHA-256 of the presented key -> project id
  KEYS[2] new_apikey   SHA-256 of the new key -> project id
  KEYS[3] project      the project's hash (field api_key_sha256)

  ARGV[1] project_id
  ARGV[2] new_sha256   hex SHA-256 of the new key
  ARGV[3] now          Unix seconds (text)

  Output: code
     0 rotated
    -14 KEY_MISMATCH (the presented key no longer maps to the project: rotated concurrently)
    -16 ALREADY_EXISTS (the new key's hash exists; nothing changed)
]]
local project_id = ARGV[1]
if redis.call('GET', KEYS[1]) ~= project_id then
  return -14
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -16
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], project_id)
redis.call('HSET', KEYS[3], 'api_key_sha256', ARGV[2], 'key_rotated_at', ARGV[3])
return 0
