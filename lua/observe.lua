--[[
  observe.lua — score, decide and (unless held back) learn a batch of events of ONE chain.

  Atomic per chain; all keys share the chain's hash tag. For each event, in order:
  redelivered event id → the stored answer again; else the run's last node (START for a new run)
  → map onto the overflow node at the caps → p before counting (backed off to the action
  model when the edge is unseen or its from-node thin) → score = -log2(p + eps)
  → threshold over the rolling window (fallback while not full, never under the floor)
  → anomalous → action by mode → count the transition unless held (protected learning)
  → push the score into the window (non-anomalous scores only) → remember the answer.
  A back-to-back streak (one action repeated, whatever its shape) is learned when the run shows
  its end to the chain (another action, or
  end_of_run), or else, kept open in meta ps, after the first event of another run.
  A new run of the chain counts a run; every `checkpoint_runs` runs a checkpoint measures
  stability and the rate of new transitions (unlearnable chains never lock), progresses the mode
  and decays the counts (includes/checkpoint.lua).
  `end_of_run` adds the node → END transition, scored the same way; the event's answer is the
  more surprising of its two edges (by score minus threshold).

  Output: a flat array: [1] one binary string of n records of 48 bytes, one per event,
    big-endian: score, threshold, count, row total (1/1000 units) as IEEE doubles (exact), then
    flags, runs, back-to-back repeats of the action in the run and their learned limit as signed
    32-bit integers — one reply element for all of them: a reply value costs Redis more than
    packing it (measured, docs/performance.md); then 2 values per event: from, to.
    flags = anomalous + 2·held + 4·to-node new + 8·scored by back-off + 16·chain unlearnable
            + 32·mode (0 shadow, 1 soft_lock, 2 locked) + 128·action code
            + 512·mode change at this event (0 none, 1 promoted, 2 force-promoted)
            + 2048·status (0 new, 1 redelivered)
    (models/observation.py decodes it). A redelivered event answers the stored first answer,
    which is kept compact in the run hash (event field → "\2" .. the two doubles .. a from of 16
    hex digits as its 8 bytes .. the integers as varints, or "\1" .. the doubles .. any other
    from behind its length as a varint .. the integers; the edge's end as a flag: ≈ 36 bytes
    instead of ≈ 110 as text, so the run hash keeps Redis's listpack encoding; answers stored by
    earlier releases, "\1" with a hex from, "\0" .. doubles .. tab-separated text, or all
    text, are still read). A redelivery is the same event: an edge that
    ended in the event's node is answered with the node the redelivery carries
    (models/reference.py does the same).

  KEYS[1] meta      hash: runs, mode, sig, fb, elig, nn, ne, ovf, chg, forced, events, upd_ms,
                          nw/nt (new / all transitions, halved every checkpoint), unl
                          (1 = unlearnable), nc (fields counted in coarse), aw/at (new / all
                          action transitions, halved likewise), acl (1 = unlearnable, but its
                          step order is learnable: judged on action transitions), ht (1 = the
                          back-off hash holds its hashtable marker, chain_state.lua), xp (ms
                          of the last refresh of the chain keys' TTL; see below), ps (the open
                          streak: "<repeats>\t<action>\t<run key>", settled by another run's event)
  KEYS[2] edges     hash: "from\tto" → count (1/1000 units)
  KEYS[3] rows      hash: from → row total (1/1000 units)
  KEYS[4] nodes     hash: node → 1
  KEYS[5] window    list: recent non-anomalous scores, newest first (%.17g strings); the
                    threshold's statistics are kept incrementally over it (no sort per event)
  KEYS[6] snapshot  string: the edges at the last checkpoint, MessagePack
  KEYS[7] coarse    hash: the back-off model, counts in 1/1000 units: "a\t<prev action>\t<action>",
                    "A\t<prev action>" (its row total), "n\t<action>\t<node>", "N\t<action>";
                    "r\t<action>" = longest back-to-back repeat learned (a plain number, not decayed);
                    the shape vocabulary (shape_escape > 0; plain numbers, not decayed):
                    "T\t<action>" distinct shapes learned, "X\t<action>" events that brought a
                    key path new to the action, "p\t<action>\t<path hash>" = 1 per known key path
  KEYS[8] snapshot of the release before (a hash, another name, so its workers still running
                    during an upgrade read their own): read when KEYS[6] is absent, deleted at the
                    checkpoint that writes KEYS[6]
  KEYS[9..] run     hash per run: last (a hex node as "\0" .. its 8 bytes), la (last action), rep (repeats), ended, <event field> → answer,
                    "h" .. <event field> → held transitions, one "from\tto\tprev action\taction"
                    a line (event field: ratchet.store.keys.event_field)

  ARGV[1]  now_ms            current time, ms (Unix)
  ARGV[2]  learn             1 count transitions / runs / modes / the score window; 0 score only (what-if: the baseline, window included, is left as it is);
                             2 dry: the answers learn=1 would give, with nothing written — or the
                             one-value answer { '!' } when a checkpoint falls in the batch (it
                             writes as it goes); the worker's first round trip of a single event
                             when a guardrail may hold an event back;
                             3 direct: as 1 when the chain is past shadow when the call starts,
                             else as 2 (a shadow chain's mode floor comes from the agent's other
                             services, which the caller only confirms after this round trip);
                             the answer then has one more value at its end: 1 learned, 0 dry
                             ({ '!' } as for 2) — the worker's first round trip of a single event
                             when no guardrail of the policy can hold one back
  ARGV[3]  epsilon           ε of the score
  ARGV[4]  floor_bits        no score at or under this is anomalous
  ARGV[5]  fallback_bits     default fallback threshold (meta "fb" overrides)
  ARGV[6]  sigma             default sigma multiplier (meta "sig" overrides)
  ARGV[7]  window            rolling window length
  ARGV[8]  window_large      window length once runs >= large_runs
  ARGV[9]  large_runs        runs that make a chain high-volume
  ARGV[10] min_support       from-node support (counts) below which the back-off model scores
                             (with back-off off: only new nodes are anomalous)
  ARGV[11] checkpoint_runs   runs between checkpoints
  ARGV[12] min_runs_soft     runs before soft-lock
  ARGV[13] min_runs_locked   runs before locked
  ARGV[14] stability         max distribution change (total variation) counted as stable
  ARGV[15] stability_large   the same for high-volume chains
  ARGV[16] force_after       runs past min_runs_locked before a forced promotion
  ARGV[17] forced_sigma      sigma multiplier floor of force-promoted chains
  ARGV[18] node_cap          nodes per chain
  ARGV[19] edge_cap          edges per chain
  ARGV[20] soft_action       action code in soft-lock (0 allow, 1 flag, 2 pause, 3 reject)
  ARGV[21] locked_action     action code in locked
  ARGV[22] eligible          1 when the chain may be force-promoted to locked (critical / rich)
  ARGV[23..25] decay ppm     decay of low (<=5), mid (<=20), high (>20) counts, parts per million
                             (tiered; uniform decay uses ARGV[25] for every count)
  ARGV[26] run_ttl           idle TTL of run state, s
  ARGV[27] chain_ttl         idle TTL of the chain, s
  ARGV[28] protect           1 = paused/rejected/held events (flagged too, ARGV[33]) are not learned
  ARGV[29] robust            1 = window statistic median + k·1.4826·MAD; 0 = mean + k·std
  ARGV[30] mode_floor        mode to act by while the chain is in shadow (however many runs it
                             has: it leaves shadow by its own footing and stability): 0 none,
                             1 soft, 2 locked — a service new to an agent established elsewhere;
                             one digit for the whole batch, or one digit per event (the agent's
                             other services changed mode inside the batch: Engine.decide);
                             3..5 per event = the floor 0..2 not known for sure yet: the call
                             stops before the first such event its floor would decide (the chain
                             in shadow, and the event anomalous or starting a
                             run that checkpoints) and answers the events before it only
  ARGV[31] uniform           1 = uniform decay (every count, ARGV[25] ppm), 0 = tiered
  ARGV[32] backoff_weight    weight of the action back-off model (0 = off: min_support rule)
  ARGV[33] protect_flags     1 = flagged events are held back from learning too
  ARGV[34] lock_stable       1 = any stable, learnable chain may lock (not only eligible ones)
  ARGV[35] novelty_limit     rate of new transitions above which a chain is unlearnable (0 off)
  ARGV[36] repeat_factor     learned repeat limit = floor(factor × longest learned) + margin (0 off)
  ARGV[37] repeat_margin
  ARGV[38] lock_novelty      rate of new transitions at or under which a stable chain may lock
  ARGV[39] unlearnable_rule  what is anomalous on an unlearnable chain whose rate of new action
                             transitions is at most novelty_limit: 0 new shapes only (any
                             unlearnable chain), 1 an action transition scoring over floor_bits,
                             2 either; with 1 or 2 such a chain also leaves shadow by volume
  ARGV[40] shape_escape      p(shape | action) of a shape never seen for its known action
                             (models/escape.py): 0 none, 1 Witten–Bell escape for any new shape,
                             2 only for a new combination of known key paths, 3 also for a new
                             key path, times the action's field-novelty escape, 4 that escape
                             once per new key path
  ARGV[41] escape_floor      bits: a transition scored by the shape escape is anomalous only
                             over max(threshold, this) (0: no separate floor)
  ARGV[42] ckp_budget        checkpoint work one call may do (0 = unbounded): a checkpoint reads
                             and rewrites the chain (≈ its edges + back-off fields), so a batch
                             of many short runs of a big chain (a flood of one-event runs) made
                             one call run for seconds while every other client waited. With
                             learn=1, the call stops before a checkpoint that would take its
                             work (sum of edges + back-off fields at each checkpoint) over this,
                             once it ran one, answering the events before it (the caller sends
                             the rest in another call: the same answers, other clients served
                             in between)
  ARGV[43] field_support     learned events an action needs before a shape bringing a key path
                             new to it gets the field escape (shape_escape 3, 4; 0: only
                             min_support): before, it scores as never seen
  ARGV[44] freeze_vocab      1 = on a locked chain, a shape the escape let through is learned
                             (its transition, its node) without widening its action's
                             vocabulary (T, X, p fields); an approval still widens it
  ARGV[45] ceiling_bits      no threshold over this (floor_bits still wins): a never-seen
                             transition stays anomalous whatever the window or approvals did
  ARGV[46] n                 number of events; then 2 values per event:
           the event's field (ratchet.store.keys.event_field: "u" + 16 UUID bytes or "e:" + id),
           and "<run key index> <high><eor><hold> <node>\t<action>[\t<key-path hashes>]": the
           run key's index into KEYS, three 0/1 flags (high priority, end_of_run, hold = a
           guardrail holds it back from learning), the node id, the event's action (after the
           tab) and, when shape_escape >= 2, its payload's key-path hashes (comma-separated,
           models/escape.py path_digest; none = every path counts as new). Fewer,
           packed ARGV values halve the client's cost of building the call (measured).
]]
-- The libraries and builtins as locals: a global is a hash lookup in the globals table at every
-- use, a local is a register (the same functions; ≈ 4 % fewer Redis instructions per event).
local math, string, table, struct, redis = math, string, table, struct, redis
local tonumber, ipairs, pairs, unpack = tonumber, ipairs, pairs, unpack
local meta_key, edges_key, rows_key = KEYS[1], KEYS[2], KEYS[3]
local nodes_key, win_key, snap_key, coarse_key = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local old_snap_key = KEYS[8]
local now_ms = ARGV[1]
local direct = ARGV[2] == '3'
local dry = ARGV[2] == '2'
local learn = ARGV[2] == '1' or dry or direct
local eps = tonumber(ARGV[3])
local floor_bits = tonumber(ARGV[4])
local fallback_default = tonumber(ARGV[5])
local sigma_default = tonumber(ARGV[6])
local window = tonumber(ARGV[7])
local window_large = tonumber(ARGV[8])
local large_runs = tonumber(ARGV[9])
local min_support = tonumber(ARGV[10])
local checkpoint_runs = tonumber(ARGV[11])
local min_runs_locked = tonumber(ARGV[13])
local node_cap = tonumber(ARGV[18])
local edge_cap = tonumber(ARGV[19])
local soft_action = tonumber(ARGV[20])
local locked_action = tonumber(ARGV[21])
local eligible_chain = ARGV[22] == '1'
local ppm_low, ppm_mid, ppm_high = tonumber(ARGV[23]), tonumber(ARGV[24]), tonumber(ARGV[25])
local run_ttl = tonumber(ARGV[26])
local chain_ttl = tonumber(ARGV[27])
local protect = ARGV[28] == '1'
local robust = ARGV[29] == '1'
local floors = ARGV[30]  -- one digit, or one per event: st.floor holds the event's
local uniform = ARGV[31] == '1'
local backoff_weight = tonumber(ARGV[32])
local protect_flags = ARGV[33] == '1'
local repeat_factor = tonumber(ARGV[36])
local repeat_margin = tonumber(ARGV[37])
local unl_rule = tonumber(ARGV[39])
local shape_esc = tonumber(ARGV[40])
local escape_floor = tonumber(ARGV[41])
-- The parameters only a checkpoint reads, in one table: a Lua function has at most 200 locals
-- and this script's main chunk is near that (a local here is one fewer for later features).
local CKP = {
  min_runs_soft = tonumber(ARGV[12]), stability = tonumber(ARGV[14]),
  stability_large = tonumber(ARGV[15]), force_after = tonumber(ARGV[16]),
  forced_sigma = tonumber(ARGV[17]), lock_stable = ARGV[34] == '1',
  novelty_limit = tonumber(ARGV[35]), lock_novelty = tonumber(ARGV[38]),
}
local ckp_budget = tonumber(ARGV[42])
local ckp_work = 0  -- checkpoint work done in this call (see ARGV[42])
-- the shape escape's support and the vocabulary of locked chains (ARGV[43], ARGV[44]), and
-- the threshold's ceiling (ARGV[45])
local VOCAB = { field_support = tonumber(ARGV[43]), freeze = ARGV[44] == '1',
  ceiling = tonumber(ARGV[45]) }
local n = tonumber(ARGV[46])
local BASE, FIELDS = 46, 2

-- the meta counters, in this order (written back only where they changed: below)
local META = { 'runs', 'mode', 'sig', 'fb', 'elig', 'nn', 'ne', 'ovf', 'chg', 'forced', 'events',
  'nw', 'nt', 'unl', 'nc', 'aw', 'at', 'acl', 'ht', 'ek' }
local m = redis.call('HMGET', meta_key, 'runs', 'mode', 'sig', 'fb', 'elig', 'nn', 'ne', 'ovf',
  'chg', 'forced', 'events', 'nw', 'nt', 'unl', 'nc', 'aw', 'at', 'acl', 'ht', 'xp', 'ps', 'ek')
local st = {
  runs = tonumber(m[1] or '0'), mode = tonumber(m[2] or '0'),
  sig = tonumber(m[3] or sigma_default), fb = tonumber(m[4] or fallback_default),
  elig = tonumber(m[5] or '0'), nn = tonumber(m[6] or '0'), ne = tonumber(m[7] or '0'),
  ovf = tonumber(m[8] or '0'), chg = tonumber(m[9] or '1'), forced = tonumber(m[10] or '0'),
  events = tonumber(m[11] or '0'), mode_changed = 0,
  nw = tonumber(m[12] or '0'), nt = tonumber(m[13] or '0'), unl = tonumber(m[14] or '0'),
  nc = tonumber(m[15] or '0'),
  aw = tonumber(m[16] or '0'), at = tonumber(m[17] or '0'), acl = tonumber(m[18] or '0'),
  ht = tonumber(m[19] or '0'),
  ek = tonumber(m[22] or '0'),  -- learned events at the last checkpoint
}
local was = {}  -- the counters as read, to write back only the changed ones
for i = 1, #META do was[i] = st[META[i]] end
local checkpointed = false  -- a checkpoint ran in this call (it may write the snapshot key)
-- The chain's open streak (meta ps = "<repeats>\t<node>\t<run key>", absent: none): the
-- last learned event of a run repeated its action back to back and the run has not shown the
-- streak's end to this chain yet. A run's part in a chain often ends without one (the run goes
-- on, and ends, on another service, or never sends end_of_run), so the streak is settled —
-- learned as finished — at the end of the first event of another run (mirrors
-- ReferenceChain.open_streak).
local ps_len, ps_node, ps_run = 0, nil, nil
if m[21] then
  local t1 = string.find(m[21], '\t', 1, true)
  local t2 = string.find(m[21], '\t', t1 + 1, true)
  ps_len, ps_node = tonumber(string.sub(m[21], 1, t1 - 1)), string.sub(m[21], t1 + 1, t2 - 1)
  ps_run = string.sub(m[21], t2 + 1)
end
if direct and st.mode == 0 then dry = true end  -- learn=3 on a chain in shadow: as dry
-- The chain's footing: its runs, but never more than the events it learned (allowed, or held
-- and approved). A run all of whose events were paused or rejected and never approved is no
-- footing: a new service floored by the agent's other services stays floored however many such
-- runs it is sent, and the chain does not leave shadow on them (mirrors
-- models/reference.py footing). What answers report as the chain's runs.
local function footing()
  if st.events < st.runs then return st.events end
  return st.runs
end
if eligible_chain then st.elig = 1 end
st.dry = dry  -- chain_state: no node written either

--- @include "chain_state"
--- @include "checkpoint"

local LN2 = math.log(2.0)
local win = redis.call('LRANGE', win_key, 0, window_large - 1)
for i = 1, #win do win[i] = tonumber(win[i]) end
local win_dirty = false

local MAD_SCALE = 1.4826
local INF = math.huge

-- The threshold without a sort per event (the same numbers as models/scoring.py threshold:
-- same values, same floating-point operations, so the same decisions). `sorted_w` holds the
-- newest min(#win, sorted_n) scores in ascending order and changes by one insertion and at most
-- one removal per pushed score; the median is read off it, and the median absolute deviation
-- is the median of the deviations of the two sides of the median, each side already in order
-- (a merge, not a sort). The threshold itself is cached until the window, its length, sigma or
-- the fallback change: the END edge of a run end and every event after an anomalous one reuse it.
local sorted_w, sorted_n = nil, 0
local thr_cache, thr_w, thr_sig, thr_fb = nil, -1, nil, nil

local function sorted_build(w)
  local s = {}
  for i = 1, math.min(#win, w) do s[i] = win[i] end
  table.sort(s)
  sorted_w, sorted_n = s, w
end

local function sorted_insert(s, x)
  local i = #s
  while i >= 1 and s[i] > x do
    s[i + 1] = s[i]
    i = i - 1
  end
  s[i + 1] = x
end

-- The score `old` leaves and `x` comes in (a full window): `x` takes `old`'s place and moves
-- to its order — one pass over the scores between them, not a removal and an insertion that
-- each shift half the window.
local function sorted_replace(s, old, x)
  local n = #s
  local i = 1
  while i < n and s[i] ~= old do i = i + 1 end
  while i > 1 and s[i - 1] > x do
    s[i] = s[i - 1]
    i = i - 1
  end
  while i < n and s[i + 1] < x do
    s[i] = s[i + 1]
    i = i + 1
  end
  s[i] = x
end

local dev_buf = {}
local function robust_value(w)
  if sorted_w == nil or sorted_n ~= w then sorted_build(w) end
  local s = sorted_w
  local mid = math.floor(w / 2)
  local med
  if w % 2 == 1 then med = s[mid + 1] else med = (s[mid] + s[mid + 1]) / 2.0 end
  -- s[1..mid] <= med <= s[mid+1..w]: deviations grow outwards on both sides; merge the first
  -- mid+1 of them in ascending order (all the median of the deviations needs)
  -- (s[lo] <= med <= s[hi]: med - s[lo] and s[hi] - med are the absolute deviations exactly)
  local d = dev_buf  -- reused: only d[1..mid+1] are written and read
  local lo, hi = mid, mid + 1
  local dl, dr = INF, INF
  if lo >= 1 then dl = med - s[lo] end
  if hi <= w then dr = s[hi] - med end
  for k = 1, mid + 1 do
    if dl <= dr then
      d[k] = dl
      lo = lo - 1
      if lo >= 1 then dl = med - s[lo] else dl = INF end
    else
      d[k] = dr
      hi = hi + 1
      if hi <= w then dr = s[hi] - med else dr = INF end
    end
  end
  local mad
  if w % 2 == 1 then mad = d[mid + 1] else mad = (d[mid] + d[mid + 1]) / 2.0 end
  return med + st.sig * (MAD_SCALE * mad)
end

local function current_threshold()
  local w = window
  if footing() >= large_runs then w = window_large end
  if thr_cache ~= nil and thr_w == w and thr_sig == st.sig and thr_fb == st.fb then
    return thr_cache
  end
  local value
  if #win < w then
    value = st.fb
  elseif robust then
    value = robust_value(w)
  else
    local total = 0.0
    for i = 1, w do total = total + win[i] end
    local mean = total / w
    local acc = 0.0
    for i = 1, w do
      local d = win[i] - mean
      acc = acc + d * d
    end
    value = mean + st.sig * math.sqrt(acc / w)
  end
  if value > VOCAB.ceiling then value = VOCAB.ceiling end
  if not (value > floor_bits) then value = floor_bits end
  thr_cache, thr_w, thr_sig, thr_fb = value, w, st.sig, st.fb
  return value
end

local function push_score(bits)
  if sorted_w ~= nil then
    if #win >= sorted_n then
      sorted_replace(sorted_w, win[sorted_n], bits)
    else
      sorted_insert(sorted_w, bits)
    end
  end
  table.insert(win, 1, bits)
  if #win > window_large then win[#win] = nil end
  win_dirty = true
  thr_cache = nil
end

-- Learn a finished back-to-back streak of an action, `node` here (mirrors
-- ReferenceChain._learn_streak): it
-- becomes the longest learned when longer — in shadow freely, in soft-lock only if it stayed
-- within the limit, once locked never.
local function learn_streak(node, length)
  local f = 'r\t' .. node
  local longest = coarse_count(f)
  -- in shadow the chain learns what it sees, streaks too (a run that always repeats a call
  -- five times would otherwise never grow the limit from 0 and be paused on every run once
  -- locked, approvals included); in soft-lock only within the limit (a loop is not learned);
  -- a locked chain's limit stays where it locked: each streak within it raised it by half
  -- again, 2, 3, 5, 9 … 132 repeats allowed in ten runs (Dec 4 attack run, round 6)
  if longest < length and (st.mode == 0 or (st.mode == 1
      and length <= math.floor(repeat_factor * longest) + repeat_margin)) then
    pend_c[f] = true
    ccache[f] = length
  end
end

-- Score one transition; returns a table describing it (not yet learned).
-- Mirrors models/scoring.py (needs_backoff, backoff_probability, is_anomalous).
-- p(shape | action) of a shape never seen for its known action (mirrors models/escape.py
-- shape_escape): Witten–Bell escape, and for a key path new to the action its field escape too.
local function escape_p(act, action_count, paths)
  local t = coarse_count('T\t' .. act) * SCALE
  local esc = t / (action_count + t)
  if shape_esc == 1 then return esc end
  local new_paths = 0
  for h in string.gmatch(paths, '[^,]+') do
    if coarse_count('p\t' .. act .. '\t' .. h) == 0 then new_paths = new_paths + 1 end
  end
  if paths ~= '' and new_paths == 0 then return esc end
  if shape_esc == 2 then return 0.0 end
  -- a key path new to an action learned fewer than field_support times: no field escape yet
  if action_count < VOCAB.field_support * SCALE then return 0.0 end
  local x = coarse_count('X\t' .. act) * SCALE
  local field = x / (action_count + x)
  if shape_esc == 3 then return esc * field end
  if new_paths < 1 then new_paths = 1 end
  for _ = 1, new_paths do esc = esc * field end
  return esc
end

-- Two records, reused by every event (an event's edge and its run end's END edge): a table
-- built per edge costs an allocation, 13 new keys and the collector's time.
local EDGE = { from = '', to = '', pa = '', act = '', c = 0, r = 0, bits = 0, limit = 0,
  anomalous = false, to_new = false, backoff = false, ac = 0, paths = '', escaped = false }
local TAIL = { from = '', to = '', pa = '', act = '', c = 0, r = 0, bits = 0, limit = 0,
  anomalous = false, to_new = false, backoff = false, ac = 0, paths = '', escaped = false }

local function assess(a, from, to, prev_act, act, paths)
  to = bounded_to(from, to, node_cap, edge_cap)
  local c = edge_count(from, to)
  local r = row_total(from)
  -- an action the chain never learned (the back-off model has room, so it would have counted
  -- it) is a new step however familiar its payload's shape: its transition is one never seen
  -- (count 0, no back-off), anomalous as a new node is (mirrors models/reference.py)
  local act_new = to ~= END_NODE and st.nc < edge_cap and coarse_count('N\t' .. act) == 0
  -- likewise a known action after one it never followed (the move previous action → action
  -- never learned), even in a shape the chain knows at this position: a never-seen transition
  -- (count 0, no back-off), anomalous by the usual rule (mirrors models/reference.py)
  local pair_new = not act_new and to ~= END_NODE and st.nc < edge_cap
    and coarse_count('a\t' .. prev_act .. '\t' .. act) == 0
  if act_new or pair_new then c = 0 end
  local p = 0.0
  if r > 0 then p = c / r end
  local backoff, escaped = false, false
  if backoff_weight > 0 and not act_new and not pair_new
      and (c == 0 or r < min_support * SCALE) then
    local nc_, nr_ = 1, 1
    if to ~= END_NODE then
      nc_ = coarse_count('n\t' .. act .. '\t' .. to)
      nr_ = coarse_count('N\t' .. act)
    end
    local ar_ = coarse_count('A\t' .. prev_act)
    if ar_ > 0 and nr_ > 0 then
      local pn = nc_ / nr_
      -- an action seen min_support times at least: an escape estimated from a handful of
      -- calls (a new chain, a new action) would excuse nearly anything
      local esc_used = false
      if nc_ == 0 and shape_esc > 0 and nr_ >= min_support * SCALE then
        -- against the action's learned events, undecayed like the vocabulary (not nr_)
        pn = escape_p(act, math.max(nr_, coarse_count('U\t' .. act) * SCALE), paths)
        esc_used = true
      end
      local q = backoff_weight * (coarse_count('a\t' .. prev_act .. '\t' .. act) / ar_) * pn
      if q > p then
        backoff = true
        escaped = esc_used
        p = q
      end
    end
  end
  local bits = -math.log(p + eps) / LN2
  local limit = current_threshold()
  -- scored by the shape escape: its own floor (mirrors models/reference.py)
  if escaped and limit < escape_floor then limit = escape_floor end
  local to_new = not node_known(to)
  local anomalous = bits > limit
  if anomalous and not to_new and not act_new then
    if st.unl == 1 then
      anomalous = false
    elseif backoff_weight <= 0 and min_support > 0 and r < min_support * SCALE then
      anomalous = false
    end
  end
  -- unlearnable chain, learnable step order: judge the action transition (mirrors
  -- models/scoring.py action_judged)
  local ac = -1
  if unl_rule > 0 then
    ac = coarse_count('a\t' .. prev_act .. '\t' .. act)
    if st.unl == 1 and st.acl == 1 then
      local ar = coarse_count('A\t' .. prev_act)
      local pa_ = 0.0
      if ar > 0 then pa_ = ac / ar end
      local off_order = -math.log(pa_ + eps) / LN2 > floor_bits
      if unl_rule == 1 then
        anomalous = off_order
      else
        anomalous = anomalous or off_order
      end
    end
  end
  a.from, a.to, a.pa, a.act, a.c, a.r, a.bits = from, to, prev_act, act, c, r, bits
  a.limit, a.anomalous, a.to_new, a.backoff, a.ac, a.paths = limit, anomalous, to_new, backoff,
    ac, paths
  a.escaped = escaped
  return a
end

local function action_for(anomalous)
  local mode = st.mode
  if mode == 0 then mode = st.floor end
  if not anomalous or mode == 0 then return 0 end
  if mode == 1 then return soft_action end
  return locked_action
end

-- Run state, read once per run and written once per run at the end of the batch.
-- The batch's events, parsed once; per run the answer fields its events may already have.
local ev_id, ev_run, ev_flags, ev_node, ev_act, ev_paths = {}, {}, {}, {}, {}, {}
local find, sub = string.find, string.sub
local run_fields = {}
for i = 1, n do
  local o = BASE + (i - 1) * FIELDS
  -- "<run index> <3 flags> <node>\t<action>[\t<paths>]", cut at its separators by plain
  -- searches (a pattern with captures cost ≈ 3 % of the script's instructions)
  local spec = ARGV[o + 2]
  local sp = find(spec, ' ', 1, true)
  local tab1 = find(spec, '\t', sp + 5, true)
  local tab2 = find(spec, '\t', tab1 + 1, true)
  local flags, node = sub(spec, sp + 1, sp + 3), sub(spec, sp + 5, tab1 - 1)
  local act, paths
  if tab2 then act, paths = sub(spec, tab1 + 1, tab2 - 1), sub(spec, tab2 + 1)
  else act, paths = sub(spec, tab1 + 1), '' end
  local run_key = KEYS[tonumber(sub(spec, 1, sp - 1))]
  ev_id[i], ev_run[i], ev_flags[i], ev_node[i], ev_act[i] = ARGV[o + 1], run_key, flags, node, act
  if shape_esc < 2 then paths = '' end
  ev_paths[i] = paths
  local fields = run_fields[run_key]
  if fields == nil then
    fields = { 'last', 'ended', 'la', 'rep' }
    run_fields[run_key] = fields
  end
  fields[#fields + 1] = ARGV[o + 1]
end

local raw_of = {} -- from → its 8 bytes, or false: not 16 lowercase hex digits (per call)
local function node_raw(from)
  local raw = raw_of[from]
  if raw == nil then
    raw = false
    if #from == 16 and not string.find(from, '[^0-9a-f]') then
      local sub = string.sub
      raw = string.char(tonumber(sub(from, 1, 2), 16), tonumber(sub(from, 3, 4), 16),
        tonumber(sub(from, 5, 6), 16), tonumber(sub(from, 7, 8), 16),
        tonumber(sub(from, 9, 10), 16), tonumber(sub(from, 11, 12), 16),
        tonumber(sub(from, 13, 14), 16), tonumber(sub(from, 15, 16), 16))
    end
    raw_of[from] = raw
  end
  return raw
end

-- the run's last node as its hash keeps it: "\0" .. the 8 bytes of a hex node (7 bytes less
-- per run and chain), any other node as it is; and back (the hex text of the previous release
-- reads as itself)
local function last_stored(node)
  local raw = node_raw(node)
  if raw then return '\0' .. raw end
  return node
end

local function last_text(stored)
  if stored and #stored == 9 and string.byte(stored, 1) == 0 then
    return string.format('%02x%02x%02x%02x%02x%02x%02x%02x', string.byte(stored, 2, 9))
  end
  return stored
end

-- Run state and the stored answers of the batch's events: ONE read per run (not one per
-- event), written once per run at the end of the batch.
local runs = {}
local function run_state(run_key)
  local r = runs[run_key]
  if r == nil then
    local fields = run_fields[run_key]
    local v = {}
    for j = 1, #fields, 1000 do  -- bounded unpack (Lua's C stack)
      local part = redis.call('HMGET', run_key, unpack(fields, j, math.min(j + 999, #fields)))
      for x = 1, #part do v[j + x - 1] = part[x] end
    end
    local prior = {}
    for j = 5, #fields do
      if v[j] then prior[fields[j]] = v[j] end
    end
    r = { last = last_text(v[1]), ended = v[2], la = v[3] or START, rep = tonumber(v[4] or '0'), w = {},
          ans = prior, dirty = false }
    runs[run_key] = r
  end
  return r
end

-- The reply: the records joined into out[1] at the end (head: the event's two doubles, already
-- packed for its stored answer), then from and to per event.
local records, out = {}, { '' }
local function answer_out(status, head, from, to, c, r, flags, nruns, repeats, rlimit)
  local k = #records
  records[k + 1] = head
  records[k + 2] = struct.pack('>ddi4i4i4i4', c, r, flags + 2048 * status, nruns, repeats, rlimit)
  k = #out
  out[k + 1], out[k + 2] = from, to
end

--- @include "varint"

-- A stored answer: "\2" .. 2 doubles .. the 8 bytes of a from of 16 lowercase hex digits (every
-- real node) .. 6 integers as varints, or "\1" .. 2 doubles .. varint(#from) .. any other from
-- .. the integers (the flags carry the edge's end: 2048 × 0 the event's own node, 1 OVERFLOW,
-- 2 END) — ≈ 36 bytes, so a run's hash stays in Redis's compact listpack encoding (values ≤ 64
-- bytes) however large the counts grow. Answers of the previous releases ("\1" with a hex from;
-- "\0" .. 2 doubles .. from \t the integers as text; all text) are still read.
local function answer_pack(head, from, c, r, flags, nruns, repeats, rlimit)
  if c < 0 or r < 0 or nruns < 0 or repeats < 0 or rlimit < 0 then
    return '\0' .. head .. from .. '\t' ..
      string.format('%d\t%d\t%d\t%d\t%d\t%d', c, r, flags, nruns, repeats, rlimit)
  end
  local tail = varint(c) .. varint(r) .. varint(flags) .. varint(nruns) .. varint(repeats) ..
    varint(rlimit)
  local raw = node_raw(from)
  if raw then return '\2' .. head .. raw .. tail end
  return '\1' .. head .. varint(#from) .. from .. tail
end

local TO_KINDS = { [0] = nil, [1] = OVERFLOW, [2] = END_NODE }
local function answer_again(prior, node)
  local kind = string.byte(prior, 1)
  if kind == 1 or kind == 2 then
    local from, at
    if kind == 2 then
      from = string.format('%02x%02x%02x%02x%02x%02x%02x%02x', string.byte(prior, 18, 25))
      at = 26
    else
      local len
      len, at = varint_read(prior, 18)
      from = string.sub(prior, at, at + len - 1)
      at = at + len
    end
    local c, r, flags, nruns, repeats, rlimit
    c, at = varint_read(prior, at)
    r, at = varint_read(prior, at)
    flags, at = varint_read(prior, at)
    nruns, at = varint_read(prior, at)
    repeats, at = varint_read(prior, at)
    rlimit = varint_read(prior, at)
    local to = TO_KINDS[math.floor(flags / 2048)] or node
    answer_out(1, string.sub(prior, 2, 17), from, to, c, r, flags % 2048, nruns, repeats,
      rlimit)
    return
  end
  if kind ~= 0 then
    -- stored by the previous text format (tab-separated, as the old reply line)
    local f = {}
    for x in string.gmatch(prior .. '\t', '([^\t]*)\t') do f[#f + 1] = x end
    local flags = tonumber(f[7]) + 2 * tonumber(f[10]) + 4 * tonumber(f[13]) + 8 * tonumber(f[14])
      + 16 * tonumber(f[15]) + 32 * tonumber(f[8]) + 128 * tonumber(f[9]) + 512 * tonumber(f[12])
    answer_out(1, struct.pack('>dd', tonumber(f[5]), tonumber(f[6])), f[1], f[2], tonumber(f[3]),
      tonumber(f[4]), flags, tonumber(f[11]), tonumber(f[16]), tonumber(f[17]))
    return
  end
  local from, c, r, flags, nruns, repeats, rlimit = string.match(prior,
    '^([^\t]*)\t(%d+)\t(%d+)\t(%d+)\t(%d+)\t(%d+)\t(%d+)$', 18)
  flags = tonumber(flags)
  local to = TO_KINDS[math.floor(flags / 2048)] or node
  answer_out(1, string.sub(prior, 2, 17), from, to, tonumber(c), tonumber(r), flags % 2048,
    tonumber(nruns), tonumber(repeats), tonumber(rlimit))
end

for i = 1, n do
  local event_id, run_key, flags, node, act = ev_id[i], ev_run[i], ev_flags[i], ev_node[i], ev_act[i]
  local prio_high = string.byte(flags, 1) == 49  -- '1'
  local eor = string.byte(flags, 2) == 49
  local ext_hold = string.byte(flags, 3) == 49
  local answer_field = event_id -- the event's field (ratchet.store.keys.event_field)
  st.mode_changed = 0
  -- the floor holds while the chain is in shadow: runs alone never lift it (one approved call
  -- repeated thirty times is thirty learned runs; Dec 4 attack run, round 5). A checkpoint this
  -- event runs that takes the chain out of shadow decides by its new mode (action_for).
  st.floor, st.unsure = 0, false
  if st.mode == 0 then
    st.floor = string.byte(floors, #floors > 1 and i or 1) - 48
    -- 3..5: the floor 0..2 as far as the caller knows yet (another chain of the agent may
    -- still change mode before this event): the batch stops before an event it would decide
    if st.floor >= 3 then st.floor, st.unsure = st.floor - 3, st.mode == 0 end
  end
  local run = run_state(run_key)
  local prior = run.ans[answer_field]
  if prior then
    answer_again(prior, node)
  else
    local from, prev_act = run.last, run.la
    if (not from) or run.ended == '1' then
      from, prev_act = START, START
      if learn then
        if st.unsure and (st.runs + 1) % checkpoint_runs == 0 then break end  -- no checkpoint
        -- (never at an event whose floor digit says "unsure": a stop there is the caller's
        -- floor rounds' to resume, so the caller tells the two kinds of stop apart by it)
        if ckp_budget > 0 and ckp_work > 0 and ARGV[2] == '1'
            and (st.runs + 1) % checkpoint_runs == 0
            and ckp_work + st.ne + st.nc > ckp_budget
            and string.byte(floors, #floors > 1 and i or 1) < 51 then  -- digit < 3
          break  -- this call's checkpoint work is done: the caller sends the rest
        end
        st.runs = st.runs + 1
        if st.runs % checkpoint_runs == 0 then
          if dry then return { '!' } end
          -- only after the chain learned something since the last one: runs of paused calls
          -- nobody approved would otherwise decay the baseline, checkpoint after checkpoint
          -- (Dec 4 attack run, round 4; mirrors models/reference.py)
          if st.events ~= st.ek then
            ckp_work = ckp_work + st.ne + st.nc + 1
            checkpoint()
            checkpointed = true
            st.ek = st.events
          end
        end
      end
    end
    if learn and prio_high then st.elig = 1 end
    local e = assess(EDGE, from, node, prev_act, act, ev_paths[i])
    local tail = nil
    if eor then tail = assess(TAIL, e.to, END_NODE, act, END_NODE, '') end
    local edges_n = 1
    if tail ~= nil then edges_n = 2 end
    -- back-to-back repeats of the *action*, whatever its payload's shape: a loop that varies its
    -- shape (or slips a throwaway call of the same action between its steps) is still one loop
    -- (Dec 4 attack run, round 7: alternating shapes reset a node's streak, and a 40-step loop
    -- that should pause was only flagged)
    local repeats = 0
    if act == prev_act then repeats = run.rep + 1 end
    local longest_field = 'r\t' .. act
    local longest = coarse_count(longest_field)
    local rlimit = math.floor(repeat_factor * longest) + repeat_margin
    local looping = repeat_factor > 0 and repeats > rlimit
    -- back-to-back streaks that end here: the previous action's, and this one's at a run end
    local streak_prev = act ~= prev_act and run.rep > 0
    local streak_here = eor and repeats > 0
    local anomalous = e.anomalous or (tail ~= nil and tail.anomalous) or looping
    if anomalous and st.unsure then  -- its floor decides its action: stop before it
      -- (uncount the run only if this event started it: a run whose first call was held is
      -- at START without starting again)
      if learn and ((not run.last) or run.ended == '1') then st.runs = st.runs - 1 end
      break
    end
    local action = action_for(anomalous)
    local lowest_held = 2
    if protect_flags then lowest_held = 1 end
    -- a chain judged on its step order never locks: past the runs that would have locked it,
    -- its soft-lock is no probation, so what it flags is held back like a pause (or its
    -- anomalies would be learned by repetition)
    if st.unl == 1 and st.acl == 1 and st.runs >= min_runs_locked then lowest_held = 1 end
    local held = protect and (action >= lowest_held or ext_hold)
    local shown = e
    if tail ~= nil and (tail.bits - tail.limit) > (e.bits - e.limit) then shown = tail end
    -- the rate of new transitions is the learned stream's: held events (paused, or held by a
    -- guardrail) are not counted, or a flood of them would make the chain "unlearnable", whose
    -- unseen transitions between known nodes are no longer anomalous (mirrors models/reference.py)
    if learn and not held then
      for k = 1, edges_n do
        local a = EDGE
        if k == 2 then a = TAIL end
        st.nt = st.nt + 1
        if a.c == 0 then st.nw = st.nw + 1 end
        if a.ac >= 0 then
          st.at = st.at + 1
          if a.ac == 0 then st.aw = st.aw + 1 end
        end
      end
    end
    if learn and not held then
      -- a locked chain learns a shape the escape let through, not a wider vocabulary
      -- (mirrors models/reference.py)
      local frozen = VOCAB.freeze and st.mode == 2 and e.escaped
      for k = 1, edges_n do
        local a = EDGE
        if k == 2 then a = TAIL end
        count_edge(a.from, a.to)
        local tracked = nil
        if shape_esc > 0 then tracked = a.paths end
        count_action(a.pa, a.act, a.to, edge_cap, tracked, frozen)
      end
      if streak_prev then learn_streak(prev_act, run.rep) end
      if streak_here then learn_streak(act, repeats) end
      st.events = st.events + 1
    elseif learn and held then
      local lines = {}
      for k = 1, edges_n do
        local a = EDGE
        if k == 2 then a = TAIL end
        local line = a.from .. '\t' .. a.to .. '\t' .. a.pa .. '\t' .. a.act
        if shape_esc > 0 then line = line .. '\t' .. a.paths end
        lines[#lines + 1] = line
      end
      -- the streaks an approval teaches ("=<length>\t<node>"): those this event would have
      -- learned, and its own repeat (a held loop, approved, is a loop of that length)
      if streak_prev then lines[#lines + 1] = '=' .. run.rep .. '\t' .. prev_act end
      if repeats > 0 then lines[#lines + 1] = '=' .. repeats .. '\t' .. act end
      run.w[#run.w + 1] = 'h' .. event_id
      run.w[#run.w + 1] = table.concat(lines, '\n')
    end
    -- the window holds the chain's normal step scores: not a shape the escape let through
    -- (12-14 bits beside ~0-bit steps lifted the threshold to the ceiling, where a payload with
    -- two new fields passed; Dec 4 attack run, round 7)
    if learn and not e.anomalous and not e.escaped then push_score(e.bits) end
    if learn and tail ~= nil and not tail.anomalous and not tail.escaped then
      push_score(tail.bits)
    end
    local last, ended, last_act = e.to, '0', act
    if eor then last, ended, last_act = END_NODE, '1', END_NODE end
    local flags = st.unl * 16 + st.mode * 32 + action * 128 + st.mode_changed * 512
    if anomalous then flags = flags + 1 end
    if held then flags = flags + 2 end
    if shown.to_new then flags = flags + 4 end
    if shown.backoff then flags = flags + 8 end
    local head = struct.pack('>dd', shown.bits, shown.limit)
    -- stored: the edge's end as a kind (the event's own node, OVERFLOW or END), not a copy
    local to_kind = 0
    if shown.to == OVERFLOW then to_kind = 1 elseif shown.to == END_NODE then to_kind = 2 end
    local answer = answer_pack(head, shown.from, shown.c, shown.r, flags + 2048 * to_kind,
      footing(), repeats, rlimit)
    answer_out(0, head, shown.from, shown.to, shown.c, shown.r, flags, footing(), repeats,
      rlimit)
    if learn then
      -- another run's open streak is over for this chain: learn it as finished; then this
      -- run's streak is open (a learned repeat, no run end) or there is none
      if ps_run and ps_run ~= run_key then
        learn_streak(ps_node, ps_len)
        ps_run = nil
      end
      if held then  -- the run did not move (below): its open streak, if any, stays open
      elseif repeats > 0 and not eor then
        ps_len, ps_node, ps_run = repeats, act, run_key
      elseif ps_run == run_key then
        ps_run = nil
      end
    end
    if eor then repeats = 0 end
    if held then
      -- a paused (or held) call did not happen: the run stays where it was, and the next call
      -- is scored after the last one that ran (Dec 4 attack run, round 8: a paused throwaway
      -- call of the step that comes first made any step order, and any loop, pass). A run
      -- whose first call is held has started (it is counted) and is still at its start.
      if from == START then run.last, run.ended, run.la, run.rep = START, '0', START, 0 end
      run.dirty = true
    else
      run.last, run.ended, run.la, run.rep, run.dirty = last, ended, last_act, repeats, true
    end
    run.ans[answer_field] = answer
    run.w[#run.w + 1] = answer_field
    run.w[#run.w + 1] = answer
  end
end

if dry then
  out[1] = table.concat(records)
  if direct then out[#out + 1] = 0 end
  return out
end
flush_counts()
write_snapshot()
for run_key, run in pairs(runs) do
  if run.dirty then
    -- the run's position and its new answers in one HSET (≤ 1000 values a call)
    local w = run.w
    local first = math.min(#w, 992)
    redis.call('HSET', run_key, 'last', last_stored(run.last), 'ended', run.ended,
      'la', run.la, 'rep', run.rep, unpack(w, 1, first))
    for j = first + 1, #w, 1000 do
      redis.call('HSET', run_key, unpack(w, j, math.min(j + 999, #w)))
    end
    redis.call('EXPIRE', run_key, run_ttl)
  end
end
-- The chain keys' idle TTL. Refreshing all seven every call was ≈ 8 % of a one-event call's
-- instructions, so they are refreshed when the last refresh (meta xp) is older than a tenth of
-- the TTL (at most an hour) — a chain then expires between 0.9 and 1 TTL after its last call —
-- and whenever one of them may have been created since: a chain without meta, nodes, edges or
-- back-off fields before this call (its first writes create those hashes), a checkpoint in
-- this call (the snapshot; decay empties no hash this call does not write again). The window
-- is rewritten whole, so it gets its TTL whenever it is written.
if win_dirty then
  redis.call('DEL', win_key)
  local vals = {}
  for i = 1, #win do vals[i] = string.format('%.17g', win[i]) end
  if #vals > 0 then
    redis.call('RPUSH', win_key, unpack(vals))
    redis.call('EXPIRE', win_key, chain_ttl)
  end
end
local xp = tonumber(m[20])
local refresh = xp == nil or checkpointed or was[6] == 0 or was[7] == 0 or was[15] == 0
  or tonumber(now_ms) - xp >= math.min(chain_ttl * 100, 3600000)
if learn then
  -- only the counters that changed (or were never written: a default from ARGV is kept as
  -- the chain's own), and the time of this update
  local args = { 'upd_ms', now_ms }
  for i = 1, #META do
    local v = st[META[i]]
    if v ~= was[i] or not m[i] then
      if i == 3 or i == 4 or i == 9 then v = string.format('%.17g', v) end -- sig, fb, chg
      args[#args + 1] = META[i]
      args[#args + 1] = v
    end
  end
  if refresh then
    args[#args + 1] = 'xp'
    args[#args + 1] = now_ms
  end
  if ps_run then
    local ps = ps_len .. '\t' .. ps_node .. '\t' .. ps_run
    if ps ~= m[21] then
      args[#args + 1] = 'ps'
      args[#args + 1] = ps
    end
  elseif m[21] then
    redis.call('HDEL', meta_key, 'ps')  -- settled: no open streak (the field goes)
  end
  redis.call('HSET', meta_key, unpack(args))
end
if refresh then
  for i = 1, 7 do
    redis.call('EXPIRE', KEYS[i], chain_ttl)
  end
end
out[1] = table.concat(records)
if direct then out[#out + 1] = 1 end
return out
