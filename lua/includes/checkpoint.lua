--[[
  checkpoint.lua (include) — every `checkpoint_runs` runs: measure stability, progress the mode,
  apply the tiered decay, and snapshot the distribution for the next checkpoint.

  Mirrors models/modes.py (distribution_change, next_mode) and models/decay.py (decay_count,
  row_totals). Needs chain_state.lua (reset_caches, SCALE) and locals edges_key, rows_key,
  snap_key, the parameter locals listed in observe.lua, and `st` (meta counters).
]]
local function hash_pairs(key)
  local flat = redis.call('HGETALL', key)
  local fields, values = {}, {}
  for i = 1, #flat, 2 do
    fields[#fields + 1] = flat[i]
    values[flat[i]] = tonumber(flat[i + 1])
  end
  return fields, values
end

local function hset_chunked(key, fields, values)
  local args = {}
  for _, f in ipairs(fields) do
    args[#args + 1] = f
    args[#args + 1] = string.format('%d', values[f])
    if #args >= 1000 then
      redis.call('HSET', key, unpack(args))
      args = {}
    end
  end
  if #args > 0 then
    redis.call('HSET', key, unpack(args))
  end
end

local function change_since_snapshot(fields, current, previous, prev_fields)
  local total_c, total_p = 0, 0
  for _, f in ipairs(fields) do total_c = total_c + current[f] end
  for _, f in ipairs(prev_fields) do total_p = total_p + previous[f] end
  if total_c <= 0 or total_p <= 0 then
    return 1.0
  end
  local acc = 0.0
  for _, f in ipairs(fields) do
    acc = acc + math.abs(current[f] / total_c - (previous[f] or 0) / total_p)
  end
  for _, f in ipairs(prev_fields) do
    if current[f] == nil then
      acc = acc + previous[f] / total_p
    end
  end
  return acc / 2.0
end

local function decay_count(c)
  if c <= SCALE then return c end
  local rate
  if c <= 5 * SCALE then rate = ppm_low
  elseif c <= 20 * SCALE then rate = ppm_mid
  else rate = ppm_high end
  return c - math.floor(c * rate / 1000000)
end

local function next_mode(mode, runs, change, eligible)
  local limit = stability
  if runs >= large_runs then limit = stability_large end
  local stable = change < limit
  if mode == 0 and runs >= min_runs_soft and stable then
    mode = 1
  end
  if mode == 1 and eligible and runs >= min_runs_locked then
    if stable then return 2, false end
    if runs >= min_runs_locked + force_after then return 2, true end
  end
  return mode, false
end

local function checkpoint()
  flush_counts()
  local fields, current = hash_pairs(edges_key)
  local prev_fields, previous = hash_pairs(snap_key)
  local change = change_since_snapshot(fields, current, previous, prev_fields)
  st.chg = change
  local mode, forced = next_mode(st.mode, st.runs, change, st.elig == 1)
  if mode ~= st.mode then
    st.mode = mode
    st.mode_changed = 1
    if forced then
      st.forced = 1
      st.mode_changed = 2
      if st.sig < forced_sigma then st.sig = forced_sigma end
    end
  end
  local rows, decayed = {}, {}
  local row_fields = {}
  for _, f in ipairs(fields) do
    local c = decay_count(current[f])
    decayed[f] = c
    local src = string.match(f, '^([^\t]*)\t')
    if rows[src] == nil then
      row_fields[#row_fields + 1] = src
      rows[src] = 0
    end
    rows[src] = rows[src] + c
  end
  hset_chunked(edges_key, fields, decayed)
  redis.call('DEL', rows_key, snap_key)
  hset_chunked(rows_key, row_fields, rows)
  hset_chunked(snap_key, fields, decayed)
  reset_caches()
end
