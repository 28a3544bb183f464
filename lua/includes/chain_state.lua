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
-- Fields counted and not yet written (field → true; the caches hold their counts).
local pend_e, pend_r, pend_c = {}, {}, {}
local pend_n = {}  -- nodes new to the chain, not yet written (one HSET at the flush)
-- A cache that holds its whole hash (the checkpoint read and rewrote it): a field it lacks is 0
-- (absent) without asking Redis. (Reading small hashes whole up front was measured too: no
-- fewer instructions than the field reads it saves.)
local whole_e, whole_r, whole_c = false, false, false
-- Set by a checkpoint for the rest of the call (checkpoint.lua): the fields the edges hash
-- holds, in order, and as a set; a field counted afterwards joins them.
local e_fields, e_has = nil, nil

local function edge_count(from, to)
  local f = from .. '\t' .. to
  local c = ecache[f]
  if c == nil then
    if whole_e then c = 0 else c = tonumber(redis.call('HGET', edges_key, f) or '0') end
    ecache[f] = c
  end
  return c
end

local function row_total(from)
  local r = rcache[from]
  if r == nil then
    if whole_r then r = 0 else r = tonumber(redis.call('HGET', rows_key, from) or '0') end
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
  if e_has ~= nil and not e_has[f] then
    e_has[f] = true
    e_fields[#e_fields + 1] = f
  end
  ecache[f] = c + SCALE
  rcache[from] = row_total(from) + SCALE
  pend_e[f] = true
  pend_r[from] = true
  if not node_known(to) then
    if not st.dry then pend_n[#pend_n + 1] = to end
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
    if whole_c then c = 0 else c = tonumber(redis.call('HGET', coarse_key, f) or '0') end
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
  pend_c[part] = true
  pend_c[total] = true
  return c == 0
end

-- A plain (never decayed) field of the shape vocabulary: "T\t<action>" distinct shapes,
-- "X\t<action>" events that brought a key path new to the action, "p\t<action>\t<path hash>",
-- "U\t<action>" events of the action learned.
local function bump_plain(f, d)
  ccache[f] = coarse_count(f) + d
  pend_c[f] = true
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
-- `paths` (nil = the shape vocabulary is not tracked) are the event's key-path hashes; `frozen`:
-- the action's learned events count, its vocabulary does not grow (EngineParams.freeze_vocabulary).
local function count_action(prev_act, act, to, cap, paths, frozen)
  count_coarse('a\t' .. prev_act .. '\t' .. act, 'A\t' .. prev_act, cap)
  if to ~= END_NODE then
    local new = count_coarse('n\t' .. act .. '\t' .. to, 'N\t' .. act, cap)
    -- the action's learned events, never decayed: the shape escape compares its vocabulary
    -- (plain counts) with this, not with the decayed count (a flood of runs without the action
    -- decayed that one alone and inflated the escape, Dec 4 attack run round 4)
    if paths ~= nil then bump_plain('U\t' .. act, 1) end
    if new and paths ~= nil and not frozen then learn_shape(act, paths, cap) end
  end
end

-- Write the pending counts (before anything reads the hashes whole, and at the end): one HSET
-- per hash of the counts as the caches hold them (every pending field was read into its cache
-- before it was counted, and the script runs alone), not one HINCRBY per field — a command
-- called from Lua costs more than all the Lua of an event (measured: ≈ 2 HINCRBY per event).
local function flush_one(key, pend, cache)
  local args, fmt = {}, string.format
  for f in pairs(pend) do
    args[#args + 1] = f
    args[#args + 1] = fmt('%d', cache[f])
  end
  for j = 1, #args, 1000 do
    redis.call('HSET', key, unpack(args, j, math.min(j + 999, #args)))
  end
end

-- The back-off hash is read and written field by field by every batch. Past HASHTABLE_AT
-- fields it is kept in Redis's hashtable encoding, where a field is found by its hash, not by a
-- scan of the whole hash as in the compact listpack encoding (≈ 6 % of observe.lua's
-- instructions, measured): one field "#" whose value, 65 zeros, is longer than the 64 bytes a
-- listpack value may have, and reads as a count of 0 everywhere (the checkpoint keeps it).
local HASHTABLE_AT = 32
local HASHTABLE_MARK = string.rep('0', 65)
-- (st.ht: the chain's meta says the marker is written; observe.lua keeps it there, so a
-- batch asks Redis nothing to know it.)
-- After a checkpoint the cache holds the whole hash: the marker is checked there for free
-- (a worker of an older release deletes a field it does not know at its checkpoint).
local function keep_hashtable()
  if st.nc < HASHTABLE_AT or next(pend_c) == nil then return end
  if st.ht == 1 and not whole_c then return end
  local marked
  if whole_c then marked = ccache['#'] ~= nil
  else marked = redis.call('HEXISTS', coarse_key, '#') == 1 end
  if not marked then
    redis.call('HSET', coarse_key, '#', HASHTABLE_MARK)
    ccache['#'] = 0
  end
  st.ht = 1
end

local function flush_counts()
  for j = 1, #pend_n, 500 do
    local args = {}
    for x = j, math.min(j + 499, #pend_n) do
      args[#args + 1] = pend_n[x]
      args[#args + 1] = '1'
    end
    redis.call('HSET', nodes_key, unpack(args))
  end
  pend_n = {}
  flush_one(edges_key, pend_e, ecache)
  flush_one(rows_key, pend_r, rcache)
  keep_hashtable()
  flush_one(coarse_key, pend_c, ccache)
  pend_e, pend_r, pend_c = {}, {}, {}
end
