--[[
  checkpoint.lua (include) — every `checkpoint_runs` runs: measure stability and the rate of new
  transitions (unlearnable or not), progress the mode, apply the decay (uniform or tiered) to the
  transition counts and the coarse back-off counts, and snapshot the distribution for the next
  checkpoint.

  Mirrors models/modes.py (distribution_change, is_unlearnable, next_mode) and models/decay.py
  (decay_count, row_totals).

  Cost: the snapshot is one MessagePack string (one GET and one SET, not a hash read and
  rewritten field by field; releases before kept a hash under another name, read once and
  deleted); only the counts and totals the decay changed are written (a
  count at or under 1 is never decayed by the tiered rule); the caches are left holding the
  decayed counts, so the events after a checkpoint in the same batch read nothing again.
  A bulk batch of one chain crosses several checkpoints (hundreds of events, a checkpoint every
  few dozen): only the call's first reads the hashes and the snapshot; the later ones take the
  counts from the caches (they hold every field since the first) and the snapshot from memory,
  and every write waits for the end of the call — the decayed counts as pending counts
  (flush_counts), the snapshot of the call's last checkpoint once (write_snapshot). The keys
  end as the checkpoints one by one would leave them (tests/integration/test_checkpoint_calls.py).

  Needs chain_state.lua (its caches, pending sets, e_fields/e_has, flush_counts, SCALE) and
  locals edges_key, rows_key, snap_key, old_snap_key, the parameter locals listed in
  observe.lua and its table CKP (the parameters only a checkpoint reads), and `st` (meta
  counters).
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

-- The distribution at the last checkpoint: field → count, and its fields in order; from the
-- hash of the release before when the string is absent (a chain's first checkpoint since).
local function read_snapshot()
  local blob = redis.call('GET', snap_key)
  if not blob then return hash_pairs(old_snap_key) end
  local previous = cmsgpack.unpack(blob)
  local fields = {}
  for f in pairs(previous) do fields[#fields + 1] = f end
  return fields, previous
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
  local rate
  if uniform then rate = ppm_high
  elseif c <= SCALE then return c
  elseif c <= 5 * SCALE then rate = ppm_low
  elseif c <= 20 * SCALE then rate = ppm_mid
  else rate = ppm_high end
  return c - math.floor(c * rate / 1000000)
end

local function is_unlearnable(new, seen, runs)
  local limit = CKP.novelty_limit
  if limit <= 0 or seen <= 0 or runs < CKP.min_runs_soft then return false end
  return new / seen > limit
end

local function next_mode(mode, runs, change, eligible, unlearnable, novelty, by_action, floor)
  local limit = CKP.stability
  if runs >= large_runs then limit = CKP.stability_large end
  local stable = change < limit
  if mode == 0 and runs >= CKP.min_runs_soft and (stable or by_action) then
    mode = 1
    -- a chain leaving shadow under a mode floor takes the floor as its own, an unlearnable one
    -- too (under a floor only shapes the escape let through made it so; models/modes.py)
    if floor > mode then return floor, false end
  end
  if mode == 1 and not unlearnable and runs >= min_runs_locked then
    if stable and novelty <= CKP.lock_novelty and (eligible or CKP.lock_stable) then
      return 2, false
    end
    if eligible and runs >= min_runs_locked + CKP.force_after then return 2, true end
  end
  return mode, false
end

-- Left by the call's first checkpoint for the later ones: the distribution it left (their
-- snapshot; the last one's is written at the end of the call) and its fields, and the back-off
-- hash's fields (list and set).
-- (one table, not four locals: a Lua function has at most 200 locals, and observe.lua's main
-- chunk is near that)
local ck = { snap = nil, snap_fields = nil, c_fields = nil, c_has = nil }

local function checkpoint()
  local fields, current, prev_fields, previous
  local first = ck.snap == nil
  if first then
    flush_counts()
    fields, current = hash_pairs(edges_key)
    prev_fields, previous = read_snapshot()
  else
    -- every field of the edges hash is in e_fields and its count in the cache (pending or not)
    fields, current = e_fields, ecache
    prev_fields, previous = ck.snap_fields, ck.snap
  end
  local change = change_since_snapshot(fields, current, previous, prev_fields)
  st.chg = change
  -- judged until the chain locks: a locked chain keeps judging every transition
  local unl = st.mode ~= 2 and is_unlearnable(st.nw, st.nt, st.runs)
  st.unl = 0
  if unl then st.unl = 1 end
  local novelty = 0.0
  if st.nt > 0 then novelty = st.nw / st.nt end
  st.nw, st.nt = math.floor(st.nw / 2), math.floor(st.nt / 2)
  -- an unlearnable chain whose step order (action transitions) is learnable is judged on it
  local by_action = unl and unl_rule > 0 and st.at > 0
    and not is_unlearnable(st.aw, st.at, st.runs)
  st.acl = 0
  if by_action then st.acl = 1 end
  st.aw, st.at = math.floor(st.aw / 2), math.floor(st.at / 2)
  local mode, forced = next_mode(st.mode, footing(), change, st.elig == 1, unl, novelty,
    by_action, st.floor)
  if mode ~= st.mode then
    st.mode = mode
    st.mode_changed = 1
    if forced then
      st.forced = 1
      st.mode_changed = 2
      if st.sig < CKP.forced_sigma then st.sig = CKP.forced_sigma end
    end
  end
  -- the decayed counts: the next checkpoint's snapshot (kept as they are) and the cache (a copy:
  -- counting goes on in it); a count the decay changed is pending, written at the end of the call
  local rows, decayed, cache = {}, {}, {}
  local row_fields, row_changed = {}, {}
  local fields_now, has_now = {}, {}
  local find, sub = string.find, string.sub
  for _, f in ipairs(fields) do
    local was = current[f]
    local c = decay_count(was)
    decayed[f], cache[f] = c, c
    fields_now[#fields_now + 1] = f
    has_now[f] = true
    local src = sub(f, 1, find(f, '\t', 1, true) - 1)
    local r = rows[src]
    if r == nil then
      row_fields[#row_fields + 1] = src
      r = 0
    end
    rows[src] = r + c
    if c ~= was then
      pend_e[f] = true
      row_changed[src] = true
    end
  end
  for _, src in ipairs(row_fields) do
    if row_changed[src] then pend_r[src] = true end
  end
  ck.snap, ck.snap_fields = decayed, fields
  -- The plain fields (streaks, the shape vocabulary: never decayed) stay as they are: only
  -- the decayed counts and their recomputed totals are written, and every other field (a
  -- total no count adds to any more) is deleted — the same hash as rewriting it whole, without
  -- copying the vocabulary back each time (it grows with every key path an action has shown).
  local cfields, ccounts
  if first then
    cfields, ccounts = hash_pairs(coarse_key)
  else
    -- the fields the last checkpoint left, and those counted since (all pending)
    cfields, ccounts = ck.c_fields, ccache
    local c_has = ck.c_has
    for f in pairs(pend_c) do
      if not c_has[f] then
        c_has[f] = true
        cfields[#cfields + 1] = f
      end
    end
  end
  local cout, cout_fields = {}, {}
  local stale = {}
  for _, f in ipairs(cfields) do
    local kind = sub(f, 1, 1)
    if kind == 'r' or kind == 'T' or kind == 'X' or kind == 'p' or kind == 'U'
        or kind == '#' then
      -- kept in place
    elseif kind == 'a' or kind == 'n' then
      local d = decay_count(ccounts[f])
      cout[f] = d
      cout_fields[#cout_fields + 1] = f
      -- "a\tprev\tact" → "A\tprev", "n\tact\tnode" → "N\tact": up to the second tab (actions
      -- and nodes hold none), found by a plain search
      local second = find(f, '\t', 3, true)
      local total = (kind == 'a' and 'A' or 'N') .. sub(f, 2, second - 1)
      if cout[total] == nil then
        cout_fields[#cout_fields + 1] = total
        cout[total] = 0
      end
      cout[total] = cout[total] + d
    else
      stale[#stale + 1] = f
    end
  end
  local dropped, gone = {}, {}
  for _, f in ipairs(stale) do
    if cout[f] == nil then
      dropped[#dropped + 1] = f
      gone[f] = true
    end
  end
  for j = 1, #dropped, 1000 do
    redis.call('HDEL', coarse_key, unpack(dropped, j, math.min(j + 999, #dropped)))
  end
  for _, f in ipairs(cout_fields) do
    local v = cout[f]
    if v ~= ccounts[f] then pend_c[f] = true end
    ccounts[f] = v
  end
  for _, f in ipairs(dropped) do
    ccounts[f] = nil
    pend_c[f] = nil
  end
  -- the back-off hash's fields now: the kept ones and the recomputed totals
  local cf, ch = {}, {}
  for _, f in ipairs(cfields) do
    if not gone[f] and not ch[f] then
      cf[#cf + 1] = f
      ch[f] = true
    end
  end
  for _, f in ipairs(cout_fields) do
    if not ch[f] then
      cf[#cf + 1] = f
      ch[f] = true
    end
  end
  ck.c_fields, ck.c_has = cf, ch
  -- every count of the chain is now known: the caches hold them (a field missing is 0)
  ecache, rcache, ccache = cache, rows, ccounts
  e_fields, e_has = fields_now, has_now
  whole_e, whole_r, whole_c = true, true, true
end

-- The snapshot of the call's last checkpoint (after flush_counts, before the keys' TTLs).
local function write_snapshot()
  if ck.snap == nil then return end
  redis.call('SET', snap_key, cmsgpack.pack(ck.snap))
  redis.call('DEL', old_snap_key)
end
