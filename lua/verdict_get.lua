--[[
  verdict_get.lua — one verdict by event id, from the project's verdict buckets
  (lua/save_verdicts.lua) in one call.

  The caller names every bucket that may still hold it (both kinds). When several hold the id (a
  redelivery decided in a later bucket; or another agent's verdict, written while the gateway's
  event-id check was off), the id belongs to the agent of the entry decided FIRST (decided_at)
  and that agent's latest entry is answered: a later intruder never replaces the owner's verdict.

  KEYS[1..n]  verdict bucket hashes of ONE project (one hash tag {v:<project>});
              on a single Redis the last key may be the verdict's legacy per-event key
              (ratchet.store.keys.Keys.verdict: a plain string, stored before this layout)
  ARGV[1]     event id
  ARGV[2]     1 when the last key is the legacy per-event key, else 0

  Output: the stored verdict (a one-verdict compact envelope, or the JSON of earlier releases:
          lua/save_verdicts.lua), or nil when no bucket holds the id
]]
local id = ARGV[1]
local last = #KEYS
local found = {}
if ARGV[2] == '1' then last = last - 1 end
for i = 1, last do
  local v = redis.call('HGET', KEYS[i], id)
  if v then found[#found + 1] = v end
end
if ARGV[2] == '1' then
  local v = redis.call('GET', KEYS[#KEYS])
  if v then found[#found + 1] = v end
end
if #found == 0 then return false end
if #found == 1 then return found[1] end

-- agent and decided_at of a stored verdict: the compact envelope's element 3 and its one row's
-- element 16, or the JSON's fields
local function owner_of(body)
  if string.byte(body, 1) == 123 then -- '{'
    local ok, d = pcall(cjson.decode, body)
    if ok and type(d) == 'table' then return d['agent_id'], tonumber(d['decided_at']) or 0 end
    return nil
  end
  local ok, d = pcall(cmsgpack.unpack, body)
  if ok and type(d) == 'table' and type(d[6]) == 'table' and type(d[6][1]) == 'table' then
    return d[3], tonumber(d[6][1][16]) or 0
  end
  return nil
end

local owner, first, entries = nil, nil, {}
for i = 1, #found do
  local agent, at = owner_of(found[i])
  if agent ~= nil then
    entries[#entries + 1] = { agent, at, found[i] }
    if first == nil or at <= first then first, owner = at, agent end -- ties: older bucket
  end
end
local best, best_at = found[1], nil
for _, e in ipairs(entries) do
  if e[1] == owner and (best_at == nil or e[2] >= best_at) then best, best_at = e[3], e[2] end
end
return best
