--[[
  event_ids_claim.lua — bind event ids of ONE project to the fingerprints of their first bodies.

  Bindings live in one hash per project (keys.event_ids), as records packed into slot fields
  (lua/includes/id_slots.lua): the id's 12-byte digest, the first 8 bytes of its body's
  fingerprint (the fingerprint covers the agent id, so another agent's event under the id
  differs) and the second it was bound; a binding is live for the window after that second.

  For each event: if no live record and no key or field of the layouts before holds its id, bind
  it (the id is new); if one holds the same fingerprint, the event is an idempotent retry;
  otherwise the id was used for a different event. Check and bind are one script call, so two
  different bodies racing for one id cannot both win; the same id twice in one call is answered
  like a retry of the first. A binding is never refreshed: it holds one window from its first
  claim. All keys share the project's hash tag {e:<project>}.

  The layouts before are read only while one of their bindings can still be live: the hash
  remembers (field "#c") the second this script first bound in it; a window plus a margin
  (min(window, 1 h): the rolling upgrade, gateways' clock skew) after that, no gateway of a
  release before can have bound anything still live, so the reads stop — even when the caller
  asks for them — and the last answer says so, so the caller stops sending their keys. A project
  created by a release with this layout gets its hash with the project, "#c" = 0 and nothing else
  (ratchet.store.event_id_buckets.born_settled): it never had bindings of the layouts before, so
  they are never read and its first answer already says so; its first binding still stores the
  salt and the slot state ("#", "#s") and the expiry, as in a hash that does not exist yet, and
  keeps "#c". A hash without "#c" (a project from a release before) gets it with its first
  binding, as above.

  KEYS[1]        the bindings           hash, keys.event_ids(project)
  KEYS[2..m+1]   the time buckets of the layout before (keys.event_id_bucket(project, i): a field
                 per id, its compact id → 12 bytes of the fingerprint) that may hold a binding of
                 the window, read while they exist; none (m = 0) when ARGV[2] is 0
  KEYS[m+2..]    per event, in order: its key of the layout before buckets
                 (keys.event_fingerprint(project, id): the hex fingerprint as a string), read
                 until they expire; absent when ARGV[2] is 0

  ARGV[1]      m                     number of bucket keys
  ARGV[2]      legacy                1 = read the layouts before (KEYS[2..]) while they can hold
                                     a live binding, 0 = not (the caller knows they cannot)
  ARGV[3]      now                   Unix seconds (integer): the records' time
  ARGV[4]      window                seconds a binding is kept (RATCHET_EVENT_ID_WINDOW_S)
  ARGV[5]      per_slot              records per slot field before the hash splits a slot
  ARGV[6]      salt                  16 random bytes, stored as the hash's salt if it has none
                                     (id_slots.lua: slot addresses no client can predict)
  ARGV[7..]    per event i, legacy 1: digest (12 bytes, ARGV[3i + 4]), fingerprint (12 bytes,
               ARGV[3i + 5]; a record keeps its first 8), field of the layout before
               (ARGV[3i + 6]: keys.event_field, "u" + 16 bytes or "e:" + the id);
               legacy 0: digest (ARGV[2i + 5]) and fingerprint (ARGV[2i + 6]) only

  Output: {ok_1, ..., ok_n, legacy}   ok_i: 1 new id (bound now), 2 same body (an idempotent
                              retry), 0 id bound to a different body; legacy: 1 while the
                              layouts before may still hold a live binding, 0 from then on
]]
--- @include "id_slots"
local key = KEYS[1]
local m = tonumber(ARGV[1])
local now, window, per_slot = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local oldest = now - window
local stride = ARGV[2] == '1' and 3 or 2
local n = (#ARGV - 6) / stride
local CHUNK = 1000 -- values per unpack: well below Lua's C stack limit

local meta = redis.call('HMGET', key, '#', '#s', '#c')
local k, s, count = slot_meta(meta[1])
-- stored only with the first binding (below): a call that binds nothing writes nothing
local salt = meta[2] or ARGV[6]
local since = tonumber(meta[3])
local margin = math.min(window, 3600)
local open = since == nil or now <= since + window + margin
local legacy = stride == 3 and open
local digests, prints, addresses = {}, {}, {}
for i = 1, n do
  local at = stride == 3 and 3 * i + 4 or 2 * i + 5
  digests[i] = ARGV[at]
  prints[i] = ARGV[at + 1]
  addresses[i] = slot_address(salt, digests[i])
end
local fields = slot_fields(addresses, k, s)

-- found[i] = 2 (same body) or 0 (another body) once a live binding of id i is seen
local found, values = {}, {}
for lo = 1, n, CHUNK do
  local hi = math.min(n, lo + CHUNK - 1)
  local got = redis.call('HMGET', key, unpack(fields, lo, hi))
  for i = lo, hi do
    local value = got[i - lo + 1]
    values[fields[i]] = value or false
    local at = slot_find(value, digests[i], oldest)
    if at then
      found[i] = (string.sub(value, at + TAG, at + TAG + PRINT - 1) == string.sub(prints[i], 1, PRINT))
        and 2 or 0
    end
  end
end

if legacy then
  for b = 2, m + 1 do
    if redis.call('EXISTS', KEYS[b]) == 1 then
      for lo = 1, n, CHUNK do
        local hi = math.min(n, lo + CHUNK - 1)
        local ask = {}
        for i = lo, hi do ask[#ask + 1] = ARGV[3 * i + 6] end
        local got = redis.call('HMGET', KEYS[b], unpack(ask))
        for i = lo, hi do
          local value = got[i - lo + 1]
          if found[i] == nil and value then found[i] = (value == prints[i]) and 2 or 0 end
        end
      end
    end
  end
end

local old = {}
if legacy then
  for lo = 1, n, CHUNK do
    local hi = math.min(n, lo + CHUNK - 1)
    local got = redis.call('MGET', unpack(KEYS, m + 1 + lo, m + 1 + hi))
    for j = lo, hi do old[j] = got[j - lo + 1] end
  end
end

local function hex(str)
  return (string.gsub(str, '.', function(c) return string.format('%02x', string.byte(c)) end))
end

local out, here, added, order, fresh = {}, {}, {}, {}, 0
local stamp = slot_time(now)
for i = 1, n do
  local digest, print = digests[i], prints[i]
  local prior = here[digest]
  if found[i] ~= nil then
    out[i] = found[i]
  elseif prior then
    out[i] = (prior == print) and 2 or 0
  elseif old[i] then
    -- the layout before buckets: 32 hex digits of the fingerprint
    out[i] = (string.sub(old[i], 1, 24) == hex(print)) and 2 or 0
  else
    out[i] = 1
    here[digest] = print
    local field = fields[i]
    local list = added[field]
    if list == nil then
      list = {false} -- [1]: the slot's live records, filled in when it is written
      added[field] = list
      order[#order + 1] = field
    end
    list[#list + 1] = digest
    list[#list + 1] = string.sub(print, 1, PRINT)
    list[#list + 1] = stamp
    fresh = fresh + 1
  end
end
if fresh > 0 then
  local flat = {}
  for _, field in ipairs(order) do
    local live, dropped = slot_trim(values[field] or nil, oldest)
    count = count - dropped
    local list = added[field]
    list[1] = live
    flat[#flat + 1] = field
    flat[#flat + 1] = table.concat(list) -- one new string per slot written
  end
  for lo = 1, #flat, 2 * CHUNK do
    redis.call('HSET', key, unpack(flat, lo, math.min(#flat, lo + 2 * CHUNK - 1)))
  end
  k, s, count = slot_split(key, salt, k, s, count + fresh, per_slot, oldest)
  if since == nil then
    redis.call('HSET', key, '#', string.format('%d:%d:%d', k, s, count), '#s', salt, '#c', now)
  else
    redis.call('HSET', key, '#', string.format('%d:%d:%d', k, s, count), '#s', salt)
  end
  -- the hash outlives its newest record's window (plus a margin for gateways' clock skew)
  redis.call('EXPIREAT', key, now + window + math.min(window, 3600))
end
out[n + 1] = open and 1 or 0
return out
