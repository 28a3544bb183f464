--[[
  id_slots.lua (include) — a project's event-id bindings packed into the slots of one hash
  (linear hashing).

  The hash (keys.event_ids) holds 24-byte records packed into the values of numbered slot fields
  ("0", "1", ...): record = the id's 12-byte digest (ratchet.store.event_id_buckets), the first
  8 bytes of its body's fingerprint, then the Unix second it was bound (4 bytes, big-endian).
  A record is live for the window after that second; older ones are dropped whenever their slot
  is written. A record's address picks its slot: the first 4 bytes of SHA-1(salt .. digest),
  where the salt (field "#s", 16 random bytes the first claiming gateway proposed) is the
  project's own and never leaves Redis — an agent that grinds event ids cannot aim them at one
  slot (which would make every claim there copy a value that only grows). Address mod 2^k, or
  mod 2^(k+1) when that is below the split pointer s; a record keeps its address, so a split can
  move it. The field "#" holds "k:s:n" (n = records kept); "#c" the second the claim script
  first bound in the hash, or 0 when the project was created with this layout
  (event_ids_claim.lua: when the layouts before stop being read). After writing, the hash
  splits one slot per `per_slot` records beyond per_slot × slots (slot s gives the records whose
  address has bit k set to slot s + 2^k), so a slot keeps ≈ per_slot records whatever the
  project's rate: one field per ≈ per_slot bindings instead of one per binding
  (docs/operations.md, "What Redis keeps per event"), no server setting, and one key, so a claim
  reads one slot per id.
]]
local REC, TAG, PRINT = 24, 12, 8

-- k, s, n from the "#" field (nil or false: no bindings yet, k = s = n = 0)
local function slot_meta(raw)
  if not raw then return 0, 0, 0 end
  local k, s, n = string.match(raw, '^(%d+):(%d+):(%d+)$')
  return tonumber(k), tonumber(s), tonumber(n)
end

-- the address of a digest (or of a record, whose first 12 bytes are its digest) under `salt`:
-- the first 4 bytes of SHA-1(salt .. digest), big-endian
local function slot_address(salt, digest)
  -- a digest of exactly TAG bytes is used as it is: string.sub would copy (and hash) it again
  if #digest ~= TAG then digest = string.sub(digest, 1, TAG) end
  return tonumber(string.sub(redis.sha1hex(salt .. digest), 1, 8), 16)
end

-- the slot field of an address at (k, s)
local function slot_field(address, k, s)
  local slot = address % (2 ^ k)
  if slot < s then slot = address % (2 ^ (k + 1)) end
  return tostring(slot)
end

-- slot_field for many addresses: 2^k computed once
local function slot_fields(addresses, k, s)
  local low, high, out = 2 ^ k, 2 ^ (k + 1), {}
  for i = 1, #addresses do
    local slot = addresses[i] % low
    if slot < s then slot = addresses[i] % high end
    out[i] = tostring(slot)
  end
  return out
end

-- the 4-byte big-endian form of a Unix second, and back
local function slot_time(t)
  return string.char(math.floor(t / 16777216) % 256, math.floor(t / 65536) % 256,
                     math.floor(t / 256) % 256, t % 256)
end

local function record_time(value, at)
  local a, b, c, d = string.byte(value, at + TAG + PRINT, at + REC - 1)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

-- the position of the live record of `digest` in a packed value (aligned), or nil; live = bound
-- after `oldest` (now - window)
local function slot_find(value, digest, oldest)
  if not value then return nil end
  local from = 1
  while true do
    local at = string.find(value, digest, from, true)
    if not at then return nil end
    if (at - 1) % REC == 0 and record_time(value, at) > oldest then return at end
    from = at + 1
  end
end

-- a packed value without its leading records bound before `oldest`, and how many it dropped
-- (records are appended in time order, so the stale ones lead; one written out of order by a
-- gateway whose clock lags stays until a later write or split, and is never answered)
local function slot_trim(value, oldest)
  if not value then return '', 0 end
  local at = 1
  while at <= #value and record_time(value, at) <= oldest do at = at + REC end
  -- nothing stale (the usual case): the value itself, not a copy (Lua hashes every new string)
  if at == 1 then return value, 0 end
  return string.sub(value, at), (at - 1) / REC
end

-- split slots while the hash keeps more than per_slot records per slot; returns k, s, n
local function slot_split(key, salt, k, s, n, per_slot, oldest)
  while n > per_slot * (2 ^ k + s) do
    local from, to = tostring(s), tostring(s + 2 ^ k)
    local value = redis.call('HGET', key, from) or ''
    local stay, move = {}, {}
    for at = 1, #value, REC do
      local rec = string.sub(value, at, at + REC - 1)
      if record_time(value, at) <= oldest then n = n - 1
      elseif math.floor(slot_address(salt, rec) / (2 ^ k)) % 2 == 1 then move[#move + 1] = rec
      else stay[#stay + 1] = rec end
    end
    if #stay > 0 then redis.call('HSET', key, from, table.concat(stay))
    else redis.call('HDEL', key, from) end
    if #move > 0 then redis.call('HSET', key, to, table.concat(move)) end
    s = s + 1
    if s == 2 ^ k then k, s = k + 1, 0 end
  end
  return k, s, n
end
