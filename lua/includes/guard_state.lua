--[[
  guard_state.lua (include) — an agent's step-order and value hashes (lua/guardrails.lua's
  layout, described there), read as needed and written back once by flush_guard_state.

  Expects locals ORDER_KEY and VALUE_KEY (the agent's order and value hashes), order_cap,
  value_cap and value_distinct. Value slot states are read from val_raw, which the including
  script fills first (one HMGET of the slots it will touch): vget answers nil for any other.
  Shared by guardrails.lua (judging and learning events) and guard_feedback.lua (a person's
  approval teaching what a holding rule reported).
]]
-- The agent's order hash, read field by field as needed and written back once.
local ord, ord_dirty, ord_fields = {}, {}, nil
local function oget(f)
  local v = ord[f]
  if v == nil then
    v = tonumber(redis.call('HGET', ORDER_KEY, f) or '0')
    ord[f] = v
  end
  return v
end
local function oset(f, v)
  if ord_fields == nil then ord_fields = redis.call('HLEN', ORDER_KEY) end
  local old = oget(f)
  if old == 0 and v ~= 0 then
    if ord_fields >= order_cap then return false end
    ord_fields = ord_fields + 1
  elseif old ~= 0 and v == 0 then
    ord_fields = ord_fields - 1
  end
  ord[f] = v
  ord_dirty[f] = true
  return true
end
local function learn(prev, pair, c)
  if c == 0 then
    if not oset(pair, 1) then return end  -- full: no new pair
    oset('s' .. prev, oget('s' .. prev) + 1)
  else
    oset(pair, c + 1)
  end
  oset('t' .. prev, oget('t' .. prev) + 1)
end
-- The agent's value hash: slot states decoded on first use, written back once (encoded).
local COUNT_MAX = 4294967295
local vals, val_dirty, val_fields, val_reports, val_raw = {}, {}, nil, {}, {}
local function vfull_count()
  if val_fields == nil then val_fields = redis.call('HLEN', VALUE_KEY) end
  return val_fields
end
-- a slot's state (nil: none): {kind, count, changed, low, high} or {kind, count, changed,
-- set (hash → true) or nil when open, list of the hashes in stored order}
local function vget(slot, kind)
  local st = vals[slot]
  if st ~= nil then return st or nil end
  local raw = val_raw[slot]
  if not raw then
    vals[slot] = false
    return nil
  end
  if #raw == 10 then  -- a range (decoded by its length: a category is 9 or 8 + 4k bytes)
    local c, ch, lo, hi = struct.unpack('<IIBB', raw)
    st = { 1, c, ch, lo, hi }
  else
    local c, ch = struct.unpack('<II', raw)
    if #raw == 9 then
      st = { 2, c, ch, nil, nil }
    else
      local set, list = {}, {}
      for at = 9, #raw - 3, 4 do
        local h = string.sub(raw, at, at + 3)
        set[h] = true
        list[#list + 1] = h
      end
      st = { 2, c, ch, set, list }
    end
  end
  vals[slot] = st
  return st
end
-- one more time learned; a count at COUNT_MAX loses half, and so does the count at its last
-- change (the observations since the change are kept)
local function bump(st)
  if st[2] >= COUNT_MAX then
    local half = math.floor(st[2] / 2)
    st[2] = st[2] - half
    st[3] = math.max(st[3] - half, 0)
  end
  st[2] = st[2] + 1
end
-- learn a value that changes the slot (a wider range, a new category value); a slot not yet
-- settled starts counting its stability again, one settled stays so
local function vlearn(st, kind, value, settled)
  bump(st)
  if not settled then st[3] = st[2] end
  if kind == 1 then
    if value < st[4] then st[4] = value end
    if value > st[5] then st[5] = value end
  else
    st[4][value] = true
    st[5][#st[5] + 1] = value
    if #st[5] > value_distinct then st[4], st[5] = nil, nil end
  end
end
-- Write the order and value hashes back (what changed only), each with its TTL.
local function flush_guard_state(order_ttl, value_ttl)
  local writes = {}
  for f in pairs(ord_dirty) do
    if ord[f] == 0 then
      redis.call('HDEL', ORDER_KEY, f)
    else
      writes[#writes + 1] = f
      writes[#writes + 1] = ord[f]
    end
  end
  for at = 1, #writes, 2000 do  -- unpack has a stack limit: 1,000 fields per call
    redis.call('HSET', ORDER_KEY, unpack(writes, at, math.min(at + 1999, #writes)))
  end
  if #writes > 0 then redis.call('EXPIRE', ORDER_KEY, order_ttl) end
  writes = {}
  for slot in pairs(val_dirty) do
    local st = vals[slot]
    local packed
    if st[1] == 1 then
      packed = struct.pack('<IIBB', st[2], st[3], st[4], st[5])
    elseif st[4] == nil then
      packed = struct.pack('<II', st[2], st[3]) .. '\0'
    else
      packed = struct.pack('<II', st[2], st[3]) .. table.concat(st[5])
    end
    writes[#writes + 1] = slot
    writes[#writes + 1] = packed
  end
  for key, waiting in pairs(val_reports) do
    if waiting == 0 then
      redis.call('HDEL', VALUE_KEY, key)
    else
      writes[#writes + 1] = key
      writes[#writes + 1] = waiting
    end
  end
  for at = 1, #writes, 2000 do
    redis.call('HSET', VALUE_KEY, unpack(writes, at, math.min(at + 1999, #writes)))
  end
  if #writes > 0 then redis.call('EXPIRE', VALUE_KEY, value_ttl) end
end
