--[[
  event_ids_claim.lua — bind event ids of ONE project to the fingerprints of their first bodies.

  Bindings live in hashes, one per project and time bucket (ratchet.store.event_id_buckets):
  field = the event's compact id (ratchet.store.keys.event_field: "u" + 16 bytes for a UUID,
  "e:" + the id otherwise), value = the first 12 bytes of its body's fingerprint (the
  fingerprint covers the agent id, so another agent's event under the id differs). A bucket
  expires one window after its end, so a binding is kept at least the window.

  For each event: if no live bucket and no key of the layout before buckets holds its id, bind it
  in the current bucket (the id is new); if one holds the same fingerprint, the event is an
  idempotent retry; otherwise the id was used for a different event. Check and bind are one
  script call, so two different bodies racing for one id cannot both win; the same id twice in
  one call is answered like a retry of the first. A binding is never refreshed: it holds one
  window from its first claim. All keys share the project's hash tag {e:<project>}.

  KEYS[1]        the current bucket     hash, keys.event_id_bucket(project, i): new ids go here
  KEYS[2..m]     every other live bucket (the next one, for clock skew between gateways, and
                 those up to one window back)
  KEYS[m+1..]    per event, in order: its key of the layout before buckets
                 (keys.event_fingerprint(project, id): the hex fingerprint as a string), read
                 until they expire; absent when ARGV[2] is 0

  ARGV[1]      m                     number of bucket keys
  ARGV[2]      legacy                1 = KEYS[m+1..] are given (one per event), 0 = not read
  ARGV[3]      expire_at             Unix seconds at which KEYS[1] expires (its end + window)
  ARGV[4..]    per event i: field (ARGV[2i + 2]), fingerprint (12 bytes, ARGV[2i + 3])

  Output: {ok_1, ..., ok_n}   1 new id (bound now), 2 same body (an idempotent retry),
                              0 id bound to a different body
]]
local m = tonumber(ARGV[1])
local legacy = ARGV[2] == '1'
local n = (#ARGV - 3) / 2
local CHUNK = 1000 -- values per unpack: well below Lua's C stack limit

local fields = {}
for i = 1, n do fields[i] = ARGV[2 * i + 2] end

local function hmget_into(key, found)
  for lo = 1, n, CHUNK do
    local hi = math.min(n, lo + CHUNK - 1)
    local got = redis.call('HMGET', key, unpack(fields, lo, hi))
    for j = lo, hi do
      if found[j] == nil and got[j - lo + 1] then found[j] = got[j - lo + 1] end
    end
  end
end

local found = {}
for b = 1, m do hmget_into(KEYS[b], found) end

local old = {}
if legacy then
  for lo = 1, n, CHUNK do
    local hi = math.min(n, lo + CHUNK - 1)
    local got = redis.call('MGET', unpack(KEYS, m + lo, m + hi))
    for j = lo, hi do old[j] = got[j - lo + 1] end
  end
end

local function hex(s)
  return (string.gsub(s, '.', function(c) return string.format('%02x', string.byte(c)) end))
end

local out, new, here = {}, {}, {}
for i = 1, n do
  local field, print = fields[i], ARGV[2 * i + 3]
  local prior = found[i] or here[field]
  if prior then
    out[i] = (prior == print) and 2 or 0
  elseif old[i] then
    -- the layout before buckets: 32 hex digits of the fingerprint
    out[i] = (string.sub(old[i], 1, 24) == hex(print)) and 2 or 0
  else
    out[i] = 1
    here[field] = print
    new[#new + 1] = field
    new[#new + 1] = print
  end
end
if #new > 0 then
  for lo = 1, #new, 2 * CHUNK do
    redis.call('HSET', KEYS[1], unpack(new, lo, math.min(#new, lo + 2 * CHUNK - 1)))
  end
  redis.call('EXPIREAT', KEYS[1], ARGV[3])
end
return out
