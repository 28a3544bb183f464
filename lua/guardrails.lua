--[[
  guardrails.lua — count a batch of ONE agent's events into its guardrail state and answer,
  per event, the state the guardrails read (models/guardrails/state.py). Decides nothing: the
  rules run in Python on the answer. Atomic per agent; all keys share the agent's hash tag.

  For each event, in order: a redelivered event id → the state stored for it the first time
  (nothing counted again); else count it in the agent's and the run's velocity windows, add its
  cost to the run's and the agent's UTC-day sums, give it the run's next position, queue its
  node, and remember the answer under the event's field in the run hash
  (ratchet.store.keys.event_field: "u" + the 16 bytes of a UUID, or "e:" + the id).

  A remembered answer is compact (≈ 20 bytes instead of ≈ 50 as text, so the run hash stays in
  Redis's listpack encoding): one byte of flags (bit 0 agent window count, bit 1 run window
  count, bit 2 run cost, bit 3 agent daily cost present, bit 4 a step-order byte ends the
  answer; never an ASCII digit, and a release that predates the order reads the rest as before),
  the position
  and the present counts as base-128 varints (low 7 bits first, high bit = more), then the
  present costs as little-endian doubles, then (bit 4) the findings bits (16 pair judged new, 64
  streak too long, 32 a value beyond its range, 128 a category value unseen) as one byte. A redelivery's reply is decoded back to the text
  form below; answers stored as text by the previous release (they start with a digit) are
  answered as they are.

  Velocity windows are hashes of slot → events, a slot being window/slots long (slot index
  floor(t * slots / window)); the count of an event is the sum of its slot and the slots-1
  before it, i.e. the events of the last (slots-1)/slots .. 1 window — never more than the true
  sliding-window count. A hash cut for another window length is started again.

  Step order (models/guardrails/order.py), when ARGV[9] > 0: each event's step (8 bytes:
  service and action hashed) and the run's previous step (the run hash's "o"; a run without
  one starts at the start step, eight zero bytes, and counts as one more run of the agent)
  make a pair. The pair is judged new when the agent has more than min_runs runs, the previous
  step was followed at least min_support times and by at most max_successors distinct steps,
  and the pair was never learned. A pair not judged new is learned (counted); one judged new is
  learned when it has been judged new learn_after times (0 = never). Streaks, when
  streak_settled > 0: the run's current streak of one step back to back (the run hash's "q")
  is judged too long when it passes the longest streak of that step learned, the agent has more
  than min_runs runs, the step was followed at least min_support times by at most
  max_successors distinct steps and its longest streak was reached at least streak_settled
  times; a streak not judged too long is learned (a longer
  one sets the longest, one as long counts as reaching it); a step judged too long
  learn_after times has its longest set to the streak. A report counts towards learn_after once
  a run (the run hash marks "x" | pair and "y" | step), and never when the event is held by
  this rule (ARGV[24]). The agent's order hash keeps, by field:
  "r" → runs; "t" | prev → times followed; "s" | prev → distinct successors; prev | step →
  times learned (16 bytes); "p" | prev | step → times judged new and not yet learned (17);
  "m" | step → longest streak learned; "h" | step → times it was reached; "l" | step → times
  judged too long and not yet learned. At most order_cap fields: a full hash learns no new field
  (pair, step or pending report) and still judges what it has (filling it does not switch the
  rule off; a new pair it reports cannot be learned while it is full).

  Values (models/guardrails/values.py), when ARGV[16] > 0: each event's observations (13
  bytes each: a slot — service, action, key path and kind hashed, 8 bytes —, the kind, 1 a
  magnitude or 2 a category, and the value as a little-endian uint32: the magnitude's byte, or
  a category's 32-bit hash). The agent's value hash keeps, by field: slot → its state, a range
  '<IIBB' (times learned, times learned when it last changed, lowest and highest magnitude) or
  a category '<II' followed by its values' 4-byte hashes, or by one zero byte once it had more
  than max_distinct values (open: never judged); "p" | slot | what → times reported and not
  yet learned (what: "+" or "-" for a range, the value's hash for a category). A slot is
  settled when learned at least value_support times and unchanged over the last value_support
  (once settled, a change learned later does not unsettle it); zero (magnitude 190) is read as
  its mirror, 66, against a range of negative numbers;
  a settled slot judges a magnitude more than margin beyond its range away from zero (above
  a range that reaches zero or above, below one that reaches below zero) or margin_below
  beyond it towards zero, and a category value not in its set (not open). A judged observation is not
  learned; reported in value_learn_after runs (the run hash marks "z" | slot | what), it is
  learned (0 = never); a report of an event this rule holds (ARGV[24]) does not count. Everything not judged is learned. At most value_cap fields: a full hash
  learns no new field (slot or pending report) and still judges the slots it has. A count that
  reaches 2^32 - 1 is halved, with the count at its last change.

  KEYS[1] agent window  hash: slot → events, "w" → window ms
  KEYS[2] agent cost    hash: UTC day number → cost sum (%.17g)
  KEYS[3] agent order   hash (above)
  KEYS[4] agent values  hash (above)
  KEYS[5..] per run, four keys: run hash (n, cost, o = last step, q = its streak,
            <event field> → answer, "L" | <event field> → what approving it teaches: ARGV[24]),
            run window hash (as KEYS[1]; kept the run window + 60 s, not run_ttl: older slots
            never count again), run nodes (a string: the last keep_nodes nodes, newest last,
            each one byte of length then its stored form, ratchet.store.guardrails: 8 raw bytes
            for a 16-hex-digit node — ≈ 10 bytes less per event than a list of hex text), and
            the run nodes list of the previous release (hex text, newest last), read while the
            string is absent

  ARGV[1] agent_window_ms  velocity window per agent, ms (0 = not kept)
  ARGV[2] run_window_ms    velocity window per run, ms (0 = not kept)
  ARGV[3] slots            slots per window
  ARGV[4] keep_nodes       nodes kept per run (0 = not kept)
  ARGV[5] run_cost         1 = keep the run's cost sum
  ARGV[6] agent_cost       1 = keep the agent's daily cost sums
  ARGV[7] run_ttl          idle TTL of run state, s
  ARGV[8] n                number of events
  ARGV[9..15] order        min_runs (0 = order not kept), min_support, max_successors,
                           learn_after, order_cap, order_ttl (s), streak_settled (0 = no
                           streaks)
  ARGV[16..22] values      value_support (0 = values not kept), margin, margin_below,
                           max_distinct, value_learn_after, value_cap, value_ttl (s)
  ARGV[23] value slots     every slot the batch's observations name, once (8 bytes each)
  ARGV[24] holds           "" (none), or one character per event, '0' + bits: 1 its step-order
                           reports, 2 its value reports do not count towards learn_after (the
                           rule holds the event's service at some priority: a held call is
                           learned only when a person approves it, never from its recurrence;
                           a never-learned pair into a held service is judged however often
                           and by however many calls its previous step was followed — a decoy
                           call or flagged calls elsewhere cannot get it past; a settled range
                           of a held value slot is not widened by a value inside its margin);
                           4 and 8: this
                           event is paused by that rule (order, values), so what its reports
                           would teach is kept in the run hash for an approval, "L" | event
                           field → lessons ("x" pair, 16 bytes; "y" step, 8 bytes, and the
                           streak '<I'; "r" slot and the magnitude byte; "c" slot and the
                           4-byte hash), for lua/guard_feedback.lua
  then 7 values per event:
          event field (ratchet.store.keys.event_field), run key index (KEYS index of its run
          hash), time (ms, Unix),
          node (one byte of length, then its stored form, as the run nodes keep it),
          cost ("" = none), step (8 bytes; "" = none), observations ("" = none)

  Output: [1] one binary string of n records of 42 bytes, one per event, little-endian
            (struct '<BBddddd'): status (0 new, 1 redelivered), which values are present (bit 0
            agent window count, bit 1 run window count, bit 2 run cost, bit 3 agent daily cost;
            an absent one is 0; bit 4 the step pair was judged new, bit 6 the streak too
            long, bit 5 a magnitude beyond its range, bit 7 a category value unseen), then as
            doubles the
            position in the run (0-based), the agent window count, the run window count, the
            run cost and the agent daily cost — exact numbers with no formatting (text costs
            two float formats per event, ≈ 5 % of the script) and one reply element instead
            of n;
          [2] for each new (status 0) event, in order: when its pair was judged new, 20 bytes
            (the previous step, 8 bytes, then times it was followed, its distinct successors and
            the agent's runs, struct '<III'); then when its streak was judged too long, 12
            bytes (the streak, the longest learned, times that was reached: '<III'); then
            when values were judged (bits 5, 7), one byte of how many, then for each 8 bytes
            '<BBBBI': the observation's index in the event (0-based), its kind, the range's
            lowest and highest magnitude (a category: its distinct values and 0), times the
            slot was learned;
          then one array per run (in KEYS order): position of the first node below (a string),
          then the run nodes held BEFORE this batch (as stored: length-prefixed, any byte)
]]
local agent_window_ms = tonumber(ARGV[1])
local run_window_ms = tonumber(ARGV[2])
local slots = tonumber(ARGV[3])
local keep_nodes = tonumber(ARGV[4])
local keep_run_cost = ARGV[5] == '1'
local keep_agent_cost = ARGV[6] == '1'
local run_ttl = tonumber(ARGV[7])
local n = tonumber(ARGV[8])
local order_min_runs = tonumber(ARGV[9])
local order_support = tonumber(ARGV[10])
local order_successors = tonumber(ARGV[11])
local order_learn_after = tonumber(ARGV[12])
local order_cap = tonumber(ARGV[13])
local order_ttl = tonumber(ARGV[14])
local streak_settled = tonumber(ARGV[15])
local value_support = tonumber(ARGV[16])
local value_margin = tonumber(ARGV[17])
local value_margin_below = tonumber(ARGV[18])
local value_distinct = tonumber(ARGV[19])
local value_learn_after = tonumber(ARGV[20])
local value_cap = tonumber(ARGV[21])
local value_ttl = tonumber(ARGV[22])
local holds = ARGV[24]
local ORDER_KEY, VALUE_KEY = KEYS[3], KEYS[4]
local BASE, FIELDS = 24, 7
local START = string.rep('\0', 8)
local DAY_MS = 86400000

--- @include "guard_window"

-- how many length-prefixed nodes a run's nodes string holds
local function node_count(blob)
  local at, count = 1, 0
  while at <= #blob do
    at = at + 1 + string.byte(blob, at)
    count = count + 1
  end
  return count
end

local agent_win = nil
if agent_window_ms > 0 then agent_win = window_open(KEYS[1], agent_window_ms) end

local day_sums, day_dirty = {}, false
local function day_add(t_ms, cost)
  local day = math.floor(t_ms / DAY_MS)
  local sum = day_sums[day]
  if sum == nil then sum = tonumber(redis.call('HGET', KEYS[2], tostring(day)) or '0') end
  sum = sum + cost
  day_sums[day] = sum
  day_dirty = true
  return sum
end

local runs, order = {}, {}
local function run_open(index)
  local r = runs[index]
  if r ~= nil then return r end
  local h = redis.call('HMGET', KEYS[index], 'n', 'cost', 'o', 'q')
  r = { key = KEYS[index], n = tonumber(h[1] or '0'), cost = tonumber(h[2] or '0'),
        nodes_key = KEYS[index + 2], pushed = {}, answers = {}, dirty = false,
        before = nil, step = h[3] or nil, streak = tonumber(h[4] or '0'), reported = {},
        marks = {} }
  if run_window_ms > 0 then r.win = window_open(KEYS[index + 1], run_window_ms) end
  if keep_nodes > 0 then
    local blob = redis.call('GET', r.nodes_key)
    if not blob then
      local held = redis.call('LRANGE', KEYS[index + 3], 0, -1)
      for j = 1, #held do held[j] = string.char(#held[j]) .. held[j] end
      blob = table.concat(held)
    end
    r.blob, r.held = blob, node_count(blob)
    r.before = { tostring(r.n - r.held), blob }
  else
    r.before = { tostring(r.n) }
  end
  runs[index] = r
  order[#order + 1] = index
  return r
end

--- @include "guard_state"
-- Judge and learn one event's step pair and streak; returns the answer's bits (16 pair judged
-- new, 64 streak too long) and their details (see Output [2]).
-- Whether this run reports f for the first time (a report counts towards learn_after once a
-- run: a runaway loop cannot teach itself); marks it in the run hash.
local function first_report(r, f)
  local seen = r.reported[f]
  if seen == nil then seen = redis.call('HEXISTS', r.key, f) == 1 end
  r.reported[f] = true
  if not seen then
    r.marks[#r.marks + 1] = f
    r.marks[#r.marks + 1] = '1'
  end
  return not seen
end
-- The current event's lessons (what approving it teaches), in one buffer reused by every event.
local LESSONS, nlessons = {}, 0
local function lesson(text)
  nlessons = nlessons + 1
  LESSONS[nlessons] = text
end
local function order_step(r, step, held, keep)
  local prev = r.step
  if prev == nil then
    prev = START
    oset('r', oget('r') + 1)
  end
  local streak = 1
  if prev == step then streak = r.streak + 1 end
  r.step, r.streak = step, streak
  r.dirty = true
  local bits, detail = 0, ''
  local pair = prev .. step
  local c = oget(pair)
  if c == 0 and oget('r') > order_min_runs and (held or (oget('t' .. prev) >= order_support
      and oget('s' .. prev) <= order_successors)) then
    bits = 16
    detail = prev .. struct.pack('<III', oget('t' .. prev), oget('s' .. prev), oget('r'))
    if keep then lesson('x' .. pair) end
    if not held and first_report(r, 'x' .. pair) then
      local waiting = oget('p' .. pair) + 1
      if order_learn_after > 0 and waiting >= order_learn_after then
        oset('p' .. pair, 0)
        learn(prev, pair, c)
      else
        oset('p' .. pair, waiting)
      end
    end
  else
    learn(prev, pair, c)
  end
  if streak_settled > 0 then
    local mkey, hkey = 'm' .. step, 'h' .. step
    local longest = oget(mkey)
    if streak > longest and oget('r') > order_min_runs and oget('t' .. step) >= order_support
        and (held or oget('s' .. step) <= order_successors) and oget(hkey) >= streak_settled then
      bits = bits + 64
      detail = detail .. struct.pack('<III', streak, longest, oget(hkey))
      if keep then lesson('y' .. step .. struct.pack('<I', streak)) end
      if not held and first_report(r, 'y' .. step) then
        local waiting = oget('l' .. step) + 1
        if order_learn_after > 0 and waiting >= order_learn_after then
          oset('l' .. step, 0)
          oset(mkey, streak)
          oset(hkey, 1)
        else
          oset('l' .. step, waiting)
        end
      end
    elseif streak > longest then
      oset(mkey, streak)
      oset(hkey, 1)
    elseif streak == longest then
      oset(hkey, oget(hkey) + 1)
    end
  end
  return bits, detail
end

-- Every slot the batch's observations name (ARGV[23], 8 bytes each, sent by the adapter),
-- read in one HMGET (val_raw: slot → stored form).
local function vprefetch()
  local all = ARGV[23]
  local want = {}
  for at = 1, #all - 7, 8 do want[#want + 1] = string.sub(all, at, at + 7) end
  for at = 1, #want, 1000 do  -- unpack has a stack limit
    local part = { unpack(want, at, math.min(at + 999, #want)) }
    local got = redis.call('HMGET', VALUE_KEY, unpack(part))
    for j = 1, #part do
      if got[j] then val_raw[part[j]] = got[j] end
    end
  end
end
if value_support > 0 then vprefetch() end
-- one report of a judged value: counted once a run; learned at value_learn_after
local function vreport(r, slot, st, kind, value, what, held)
  if held or not first_report(r, 'z' .. slot .. what) then return end
  local key = 'p' .. slot .. what
  local old = val_reports[key]
  if old == nil then old = tonumber(redis.call('HGET', VALUE_KEY, key) or '0') end
  local waiting = old + 1
  if value_learn_after > 0 and waiting >= value_learn_after then
    if old > 0 then val_fields = vfull_count() - 1 end
    val_reports[key] = 0
    vlearn(st, kind, value, true)  -- judged, so settled
  else
    if old == 0 then
      if vfull_count() >= value_cap then
        val_reports[key] = old
        return
      end
      val_fields = val_fields + 1
    end
    val_reports[key] = waiting
  end
end
-- Judge and learn one event's observations; returns the answer's bits (32 a magnitude beyond
-- its range, 128 a category value unseen) and their details (see Output [2]).
local sub, byte = string.sub, string.byte
local function value_step(r, blob, held, keep)
  local bits, found, count = 0, nil, 0
  local index = -1
  for at = 1, #blob - 12, 13 do
    index = index + 1
    local slot = sub(blob, at, at + 7)
    local kind = byte(blob, at + 8)
    local st = vals[slot]
    if st == nil then st = vget(slot, kind) elseif st == false then st = nil end
    if st == nil then
      if vfull_count() < value_cap then
        val_fields = val_fields + 1
        if kind == 1 then
          local m = byte(blob, at + 9)
          st = { 1, 1, 1, m, m }
        else
          local h = sub(blob, at + 9, at + 12)
          st = { 2, 1, 1, { [h] = true }, { h } }
        end
        vals[slot] = st
        val_dirty[slot] = true
      end
    elseif st[1] ~= kind then
      -- another kind's slot under the same hash: not read
    else
      val_dirty[slot] = true
      local m, h, known
      if kind == 1 then
        m = byte(blob, at + 9)
        -- zero against a range of negative numbers: its mirror (-2^-2)
        if m == 190 and st[5] < 128 then m = 66 end
        known = m >= st[4] and m <= st[5]
      else
        h = sub(blob, at + 9, at + 12)
        known = st[4] == nil or st[4][h]
      end
      if known then  -- the common case: a value inside the range, or in the set
        bump(st)
      else
        -- a full hash learns no new field; the slots it has are still judged
        local c = st[2]
        local settled = c >= value_support and c - st[3] >= value_support
        if kind == 1 then
          local lo, hi = st[4], st[5]
          -- margin away from zero, margin_below towards it (magnitudes from 128 up: >= 0)
          local up, down = value_margin, value_margin
          if hi < 128 then up = value_margin_below end
          if lo >= 128 then down = value_margin_below end
          if settled and (m > hi + up or m < lo - down) then
            if bits % 64 < 32 then bits = bits + 32 end
            count = count + 1
            found = found or {}
            found[count] = struct.pack('<BBBBI', index, 1, lo, hi, c)
            local what = '-'
            if m > hi then what = '+' end
            vreport(r, slot, st, 1, m, what, held)
            if keep then lesson('r' .. slot .. string.char(m)) end
          elseif held and settled then
            bump(st)  -- inside the margin: allowed, but a held slot's range widens by approvals
          else
            vlearn(st, 1, m, settled)
          end
        elseif settled then
          if bits < 128 then bits = bits + 128 end
          count = count + 1
          found = found or {}
          found[count] = struct.pack('<BBBBI', index, 2, #st[5], 0, c)
          vreport(r, slot, st, 2, h, h, held)
          if keep then lesson('c' .. slot .. h) end
        else
          vlearn(st, 2, h, settled)
        end
      end
    end
  end
  if count == 0 then return 0, '' end
  return bits, string.char(count) .. table.concat(found)
end

-- A number as text, exactly ('%.17g'); whole numbers (positions, counts, most sums) by '%d',
-- the same text without the floating-point formatting (≈ 2 % of the script's instructions).
local format, floor = string.format, math.floor
local function fmt(x)
  if x == nil then return '' end
  if x == floor(x) and x < 1e15 and x > -1e15 and (x ~= 0 or 1 / x > 0) then
    return format('%d', x)
  end
  return format('%.17g', x)
end

--- @include "varint"

-- the stored (compact) form of an answer; counts and costs nil when not kept
local function pack(pos, agent_count, run_count, run_cost, agent_cost, order_bits)
  local flags, a, b, c, d, e = 0, '', '', '', '', ''  -- joined by one concatenation, no table
  if agent_count ~= nil then flags = flags + 1; a = varint(agent_count) end
  if run_count ~= nil then flags = flags + 2; b = varint(run_count) end
  if run_cost ~= nil then flags = flags + 4; c = struct.pack('<d', run_cost) end
  if agent_cost ~= nil then flags = flags + 8; d = struct.pack('<d', agent_cost) end
  if order_bits > 0 then flags = flags + 16; e = string.char(order_bits) end
  return string.char(flags) .. varint(pos) .. a .. b .. c .. d .. e
end

-- The reply record of one event (see Output); nil = not kept.
local function record(status, pos, agent_count, run_count, run_cost, agent_cost, order_bits)
  local present = order_bits
  if agent_count ~= nil then present = present + 1 else agent_count = 0 end
  if run_count ~= nil then present = present + 2 else run_count = 0 end
  if run_cost ~= nil then present = present + 4 else run_cost = 0 end
  if agent_cost ~= nil then present = present + 8 else agent_cost = 0 end
  return struct.pack('<BBddddd', status, present, pos, agent_count, run_count, run_cost,
    agent_cost)
end

-- The reply record of a redelivery, from its stored answer (compact, or the text of a
-- release before: "pos\tagent count\trun count\trun cost\tagent cost", "" = not kept).
local function stored_record(stored)
  local flags = string.byte(stored, 1)
  if flags >= 48 and flags <= 57 then  -- an ASCII digit: an older release's text answer
    local f = {}
    for x in string.gmatch(stored .. '\t', '([^\t]*)\t') do f[#f + 1] = x end
    return record(1, tonumber(f[1]), tonumber(f[2]), tonumber(f[3]), tonumber(f[4]),
      tonumber(f[5]), 0)
  end
  local at = 2
  local function read_varint()
    local x
    x, at = varint_read(stored, at)
    return x
  end
  local function read_double()
    local x = struct.unpack('<d', stored, at)
    at = at + 8
    return x
  end
  local pos = read_varint()
  local agent_count, run_count, run_cost, agent_cost = nil, nil, nil, nil
  if flags % 2 == 1 then agent_count = read_varint() end
  if math.floor(flags / 2) % 2 == 1 then run_count = read_varint() end
  if math.floor(flags / 4) % 2 == 1 then run_cost = read_double() end
  if math.floor(flags / 8) % 2 == 1 then agent_cost = read_double() end
  local order_bits = 0
  if flags >= 16 then order_bits = string.byte(stored, #stored) end
  return record(1, pos, agent_count, run_count, run_cost, agent_cost, order_bits)
end

-- Read the stored answers of all the batch's event ids: one HMGET per run.
local fields_of = {}
for i = 0, n - 1 do
  local o = BASE + i * FIELDS
  local index = tonumber(ARGV[o + 2])
  local list = fields_of[index]
  if list == nil then
    list = {}
    fields_of[index] = list
  end
  list[#list + 1] = ARGV[o + 1]
end
local prior = {}
for index, list in pairs(fields_of) do
  local got = redis.call('HMGET', KEYS[index], unpack(list))
  for j = 1, #list do
    if got[j] then prior[list[j]] = got[j] end
  end
end

local records, details, out = {}, {}, { '', '' }
for i = 0, n - 1 do
  local o = BASE + i * FIELDS
  local event_id = ARGV[o + 1]
  local r = run_open(tonumber(ARGV[o + 2]))
  local t_ms = tonumber(ARGV[o + 3])
  local node = ARGV[o + 4]
  local cost = tonumber(ARGV[o + 5]) or 0
  local step = ARGV[o + 6]
  local hold = 0
  if holds ~= '' then hold = string.byte(holds, i + 1) - 48 end
  local field = event_id -- the event's field (ratchet.store.keys.event_field)
  local seen = prior[field]
  if seen then
    records[#records + 1] = stored_record(seen)
  else
    local pos = r.n
    r.n = r.n + 1
    r.dirty = true
    local agent_count, run_count, run_cost, agent_cost = nil, nil, nil, nil
    if agent_win ~= nil then agent_count = window_add(agent_win, t_ms) end
    if r.win ~= nil then run_count = window_add(r.win, t_ms) end
    if keep_run_cost then
      r.cost = r.cost + cost
      run_cost = r.cost
    end
    if keep_agent_cost then agent_cost = day_add(t_ms, cost) end
    if keep_nodes > 0 then r.pushed[#r.pushed + 1] = node end
    local order_bits = 0
    if order_min_runs > 0 and step ~= '' then
      local detail
      order_bits, detail = order_step(r, step, hold % 2 == 1, math.floor(hold / 4) % 2 == 1)
      if order_bits > 0 then details[#details + 1] = detail end
    end
    local observed = ARGV[o + 7]
    if value_support > 0 and observed ~= '' then
      local vbits, vdetail = value_step(r, observed, math.floor(hold / 2) % 2 == 1,
        math.floor(hold / 8) % 2 == 1)
      if vbits > 0 then
        order_bits = order_bits + vbits
        details[#details + 1] = vdetail
      end
    end
    local stored = pack(pos, agent_count, run_count, run_cost, agent_cost, order_bits)
    prior[field] = stored  -- the same id again later in this batch is a redelivery too
    r.answers[#r.answers + 1] = field
    r.answers[#r.answers + 1] = stored
    if nlessons > 0 then  -- what a person's approval teaches (lua/guard_feedback.lua)
      r.answers[#r.answers + 1] = 'L' .. field
      r.answers[#r.answers + 1] = table.concat(LESSONS, '', 1, nlessons)
      nlessons = 0
    end
    records[#records + 1] = record(0, pos, agent_count, run_count, run_cost, agent_cost,
      order_bits)
  end
end

for _, index in ipairs(order) do
  local r = runs[index]
  out[#out + 1] = r.before
  if r.dirty then
    for _, x in ipairs(r.marks) do r.answers[#r.answers + 1] = x end
    if r.step ~= nil then
      redis.call('HSET', r.key, 'n', r.n, 'cost', fmt(r.cost), 'o', r.step, 'q', r.streak,
        unpack(r.answers))
    else
      redis.call('HSET', r.key, 'n', r.n, 'cost', fmt(r.cost), unpack(r.answers))
    end
    if #r.pushed > 0 then
      local blob = r.blob .. table.concat(r.pushed)
      local at = 1
      for _ = 1, r.held + #r.pushed - keep_nodes do at = at + 1 + string.byte(blob, at) end
      if at > 1 then blob = string.sub(blob, at) end
      redis.call('SET', r.nodes_key, blob, 'EX', run_ttl)
    end
    -- slots older than the window never count again: keep the run's window only that long
    if r.win ~= nil then window_save(r.win, math.min(run_ttl, math.ceil(run_window_ms / 1000) + 60)) end
  end
  redis.call('EXPIRE', r.key, run_ttl)
end
if agent_win ~= nil then window_save(agent_win, math.ceil(agent_window_ms / 1000) + 60) end
if day_dirty then
  local newest = nil
  for day, sum in pairs(day_sums) do
    redis.call('HSET', KEYS[2], tostring(day), fmt(sum))
    if newest == nil or day > newest then newest = day end
  end
  for _, day in ipairs(redis.call('HKEYS', KEYS[2])) do
    if tonumber(day) < newest - 1 then redis.call('HDEL', KEYS[2], day) end
  end
  redis.call('EXPIRE', KEYS[2], 2 * 86400 + 3600)
end
flush_guard_state(order_ttl, value_ttl)
out[1] = table.concat(records)
out[2] = table.concat(details)
return out
