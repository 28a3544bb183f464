--[[
  chain_state.lua (include) — cached reads and counted writes of one chain's transition counts.

  Expects locals edges_key, rows_key, nodes_key (key names from KEYS) and a table `st` with the
  chain's meta counters: st.nn (nodes), st.ne (edges), st.ovf (transitions sent to overflow).
  Counts are integers in 1/1000 units (COUNT_SCALE in models/params.py).
]]
local SCALE = 1000
local START, END_NODE, OVERFLOW = '^', '$', '~'
local ecache, rcache, ncache = {}, {}, {}
-- Increments not yet written: one HINCRBY per distinct field per flush, not one per event.
local pend_e, pend_r = {}, {}

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
    redis.call('HSET', nodes_key, to, '1')
    ncache[to] = true
    if to ~= OVERFLOW then
      st.nn = st.nn + 1
    end
  end
end

-- Write the pending increments (before anything reads the hashes whole, and at the end).
local function flush_counts()
  for f, d in pairs(pend_e) do redis.call('HINCRBY', edges_key, f, d) end
  for f, d in pairs(pend_r) do redis.call('HINCRBY', rows_key, f, d) end
  pend_e, pend_r = {}, {}
end

local function reset_caches()
  ecache, rcache = {}, {}
end
