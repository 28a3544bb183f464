--[[
  rotate_scoped_key.lua — replace a role-scoped API key (models/scopes.py): the old key stops
  working in the same atomic step in which the new one starts, with the same grant.

  KEYS[1] old_apikey   SHA-256 of the key being replaced -> grant ("<project> <role>[ <agent>]")
  KEYS[2] new_apikey   SHA-256 of the new key -> the same grant
  KEYS[3] key_index    the project's hash of scoped keys: key id -> JSON description

  ARGV[1] grant        the grant KEYS[1] must hold (the caller read it; checked again here)
  ARGV[2] old_key_id   field of KEYS[3] to remove (12 hex)
  ARGV[3] new_key_id   field of KEYS[3] to add (12 hex)
  ARGV[4] description  JSON stored under ARGV[3]

  Output: code
     0 rotated
    -14 KEY_MISMATCH (the old key no longer holds that grant: rotated or revoked concurrently)
    -16 ALREADY_EXISTS (the new key's hash exists; nothing changed)
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -14
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -16
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
return 0
