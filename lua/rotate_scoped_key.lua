--[[
  rotate_scoped_key.lua — switch a role-scoped API key (models/scopes.py) to a new one with the
  same grant (step 2 of 3 of a rotation, ratchet/platform/api_keys.py): in the project's index
  of scoped keys, the old key's entry is replaced by the new key's, only if the entry still
  names the old key's hash. A scoped key is live only while the index lists its hash
  (ratchet/platform/grants.py), so this one step retires the old key and enables the new one at
  once; the key records (another hash tag each) are written before and deleted after.

  KEYS[1] key_index    the project's hash of scoped keys: key id -> JSON description

  ARGV[1] old_key_id   field of KEYS[1] to remove (12 hex)
  ARGV[2] old_sha256   the sha256 its description must hold
  ARGV[3] new_key_id   field of KEYS[1] to add (12 hex)
  ARGV[4] description  JSON stored under ARGV[3]

  Output: code
     0 rotated
    -14 KEY_MISMATCH (the old key is no longer listed: rotated or revoked concurrently)
    -16 ALREADY_EXISTS (the new key id is listed already); nothing changed
]]
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw or cjson.decode(raw)['sha256'] ~= ARGV[2] then
  return -14
end
if redis.call('HEXISTS', KEYS[1], ARGV[3]) == 1 then
  return -16
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
return 0
