--[[
  chain_state.lua (include) — cached reads and counted writes of one chain's transition counts.

  Expects locals edges_key, rows_key, nodes_key, coarse_key (key names from KEYS) and a table
  `st` with the chain's meta counters: st.nn (nodes), st.ne (edges), st.ovf (transitions sent to
  overflow), st.nc (fields of the coarse back-off model, bounded by the edge cap; key-path fields
  count too); st.dry (set: nothing written — observe.lua's dry call).
  Counts are integers in 1/1000 units (COUNT_SCALE in models/params.py).
]]
local SCALE = 1000
local START, END_NODE, OVERFLOW = '^', '$', '~'
local ecache, rcache, ncache, ccache = {}, {}, {}, {}
-- Increments not yet written: one HINCRBY per distinct field per flush, not one per event.
local pend_e, pend_r, pend_c = {}, {}, {}

local function edge_count(from, to)
  local f = from .. '\t' .. to
  local c = ecache[f]
  if c == nil then
    c = tonumber(redis.call('HGET', edges_key, f) or '0')
    ecache[f] = c
  end
  return c
end

local function row_total(from)
  local r = rcache[from]
  if r == nil then
    r = tonumber(redis.call('HGET', rows_key, from) or '0')
    rcache[from] = r
  end
  return r
end

local function node_known(node)
  if node == START or node == END_NODE then
    return true
  end
  local k = ncache[node]
  if k == nil then
    k = redis.call('HEXISTS', nodes_key, node) == 1
    ncache[node] = k
  end
  return k
end

-- Map `to` onto the overflow node when the chain is at its node or edge cap.
local function bounded_to(from, to, node_cap, edge_cap)
  if to ~= END_NODE and not node_known(to) and st.nn >= node_cap then
    st.ovf = st.ovf + 1
    return OVERFLOW
  end
  if to ~= END_NODE and edge_count(from, to) == 0 and st.ne >= edge_cap then
    st.ovf = st.ovf + 1
    return OVERFLOW
  end
  return to
end

local function count_edge(from, to)
  local f = from .. '\t' .. to
  local c = edge_count(from, to)
  if c == 0 then
    st.ne = st.ne + 1
  end
  ecache[f] = c + SCALE
  rcache[from] = row_total(from) + SCALE
  pend_e[f] = (pend_e[f] or 0) + SCALE
  pend_r[from] = (pend_r[from] or 0) + SCALE
  if not node_known(to) then
    if not st.dry then redis.call('HSET', nodes_key, to, '1') end
    ncache[to] = true
    if to ~= OVERFLOW then
      st.nn = st.nn + 1
    end
  end
end

-- A count of the coarse back-off model (mirrors ReferenceChain.coarse).
local function coarse_count(f)
  local c = ccache[f]
  if c == nil then
    c = tonumber(redis.call('HGET', coarse_key, f) or '0')
    ccache[f] = c
  end
  return c
end

-- Returns true when the field was new (and created).
local function count_coarse(part, total, cap)
  local c = coarse_count(part)
  if c == 0 then
    if st.nc >= cap then return false end
    st.nc = st.nc + 1
  end
  ccache[part] = c + SCALE
  ccache[total] = coarse_count(total) + SCALE
  pend_c[part] = (pend_c[part] or 0) + SCALE
  pend_c[total] = (pend_c[total] or 0) + SCALE
  return c == 0
end

-- A plain (never decayed) field of the shape vocabulary: "T\t<action>" distinct shapes,
-- "X\t<action>" events that brought a key path new to the action, "p\t<action>\t<path hash>".
local function bump_plain(f, d)
  ccache[f] = coarse_count(f) + d
  pend_c[f] = (pend_c[f] or 0) + d
end

-- A shape new to its action was learned (mirrors ReferenceChain._learn_shape): one more
-- distinct shape; its key paths (comma-separated hashes) join the action's vocabulary, bounded
-- by the same cap as every other field; an event that brought any path new to the action counts.
local function learn_shape(act, paths, cap)
  bump_plain('T\t' .. act, 1)
  local fresh = false
  for h in string.gmatch(paths, '[^,]+') do
    local f = 'p\t' .. act .. '\t' .. h
    if coarse_count(f) == 0 then
      fresh = true
      if st.nc < cap then
        st.nc = st.nc + 1
        bump_plain(f, 1)
      end
    end
  end
  if fresh then bump_plain('X\t' .. act, 1) end
end

-- Count the back-off model's transition: previous action → action, and action → node;
-- `paths` (nil = the shape vocabulary is not tracked) are the event's key-path hashes.
local function count_action(prev_act, act, to, cap, paths)
  count_coarse('a\t' .. prev_act .. '\t' .. act, 'A\t' .. prev_act, cap)
  if to ~= END_NODE then
    local new = count_coarse('n\t' .. act .. '\t' .. to, 'N\t' .. act, cap)
    if new and paths ~= nil then learn_shape(act, paths, cap) end
  end
end

-- Write the pending increments (before anything reads the hashes whole, and at the end).
local function flush_counts()
  for f, d in pairs(pend_e) do redis.call('HINCRBY', edges_key, f, d) end
  for f, d in pairs(pend_r) do redis.call('HINCRBY', rows_key, f, d) end
  for f, d in pairs(pend_c) do redis.call('HINCRBY', coarse_key, f, d) end
  pend_e, pend_r, pend_c = {}, {}, {}
end

local function reset_caches()
  ecache, rcache, ccache = {}, {}, {}
end
