--[[
  guard_window.lua (include) — a sliding-window event counter kept as a hash of slots.

  Expects a local `slots` (slots per window). A window is a table returned by window_open;
  window_add counts one event at t_ms and returns the events of its slot and the slots-1
  before it; window_save writes the touched slots, drops slots that fell out of the window
  and sets the key's TTL.
]]
local function window_open(key, window_ms)
  local w = { key = key, window_ms = window_ms, counts = {}, dirty = {}, reset = false,
              last_slot = nil, last_total = 0, newest = nil }
  local raw = redis.call('HGETALL', key)
  local cut_for = nil
  for i = 1, #raw, 2 do
    if raw[i] == 'w' then
      cut_for = tonumber(raw[i + 1])
    else
      w.counts[tonumber(raw[i])] = tonumber(raw[i + 1])
    end
  end
  if #raw > 0 and cut_for ~= window_ms then
    w.counts = {}
    w.reset = true
  end
  return w
end

local function window_add(w, t_ms)
  local s = math.floor(t_ms * slots / w.window_ms)
  w.counts[s] = (w.counts[s] or 0) + 1
  w.dirty[s] = true
  if w.newest == nil or s > w.newest then w.newest = s end
  if w.last_slot == s then
    w.last_total = w.last_total + 1
    return w.last_total
  end
  local total = 0
  for k, c in pairs(w.counts) do
    if k > s - slots and k <= s then total = total + c end
  end
  w.last_slot, w.last_total = s, total
  return total
end

local function window_save(w, ttl_s)
  if w.newest == nil then return end
  if w.reset then redis.call('DEL', w.key) end
  local args = { 'w', w.window_ms }
  for s in pairs(w.dirty) do
    args[#args + 1] = tostring(s)
    args[#args + 1] = w.counts[s]
  end
  redis.call('HSET', w.key, unpack(args))
  local stale = {}
  for s in pairs(w.counts) do
    if s <= w.newest - slots then stale[#stale + 1] = tostring(s) end
  end
  if #stale > 0 then redis.call('HDEL', w.key, unpack(stale)) end
  redis.call('EXPIRE', w.key, ttl_s)
end
