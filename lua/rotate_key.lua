--[[
  rotate_key.lua — switch a project's own API key to a new one (step 2 of 3 of a rotation,
  ratchet/platform/credentials.py): the project's pointer moves from the old key's hash to the
  new key's, only if it still points at the old one. A key is live only while its project points
  at it (ratchet/platform/grants.py), so this one step retires the old key and enables the new
  one at once; the key records (another hash tag each) are written before and deleted after.

  KEYS[1] project      the project's hash (field api_key_sha256)

  ARGV[1] old_sha256   hex SHA-256 of the key being replaced
  ARGV[2] new_sha256   hex SHA-256 of the new key (its record exists already)
  ARGV[3] now          Unix seconds (text)

  Output: code
     0 rotated
    -14 KEY_MISMATCH (the project no longer points at the old key: rotated concurrently, or
        no such project); nothing changed
]]
if redis.call('HGET', KEYS[1], 'api_key_sha256') ~= ARGV[1] then
  return -14
end
redis.call('HSET', KEYS[1], 'api_key_sha256', ARGV[2], 'key_rotated_at', ARGV[3])
return 0
