--[[
  feedback.lua — apply a human decision on a held (paused/rejected) event of ONE chain.

  approve: the event was a false positive → learn its held transitions now (and the back-to-back
           streaks it carried: a held loop, approved, raises the repeat limit to its length),
           and widen the chain's sigma multiplier and fallback threshold by one step (bounded).
  reject:  the detection is confirmed → drop the held transitions (never learned), and tighten
           sigma and fallback by one (smaller) step (bounded). Mirrors models/tuning.py.
  A decision is applied once: the held record is removed, so a redelivered decision is a no-op.

  KEYS[1] meta   KEYS[2] edges   KEYS[3] rows   KEYS[4] nodes   (as in observe.lua)
  KEYS[5] run    the run hash that holds "h" .. <event field> (or "h:<event id>", stored before
                 event fields)
  KEYS[6] coarse the back-off model's counts (KEYS[7] of observe.lua)

  ARGV[1]  event_id
  ARGV[2]  decision          "approve" | "reject"
  ARGV[3]  now_ms            current time, ms (Unix)
  ARGV[4]  node_cap          nodes per chain
  ARGV[5]  edge_cap          edges per chain
  ARGV[6]  sigma             default sigma multiplier (meta "sig" overrides)
  ARGV[7]  fallback          default fallback threshold, bits (meta "fb" overrides)
  ARGV[8..9]   sigma_min, sigma_max
  ARGV[10..11] sigma_step_up, sigma_step_down
  ARGV[12..13] fallback_min, fallback_max, bits
  ARGV[14..15] fallback_step_up, fallback_step_down, bits
  ARGV[16] chain_ttl         idle TTL of the chain, s
  ARGV[17] event field       ratchet.store.keys.event_field(event_id)

  Output: {code, sigma, fallback, transitions learned}
    code  0 applied
         -3 NOT_PENDING (not held, already decided, or its run expired)
]]
local meta_key, edges_key, rows_key, nodes_key, run_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local coarse_key = KEYS[6]
local event_id = ARGV[1]
local decision = ARGV[2]
local now_ms = ARGV[3]
local node_cap = tonumber(ARGV[4])
local edge_cap = tonumber(ARGV[5])
local sigma_default, fallback_default = tonumber(ARGV[6]), tonumber(ARGV[7])
local sigma_min, sigma_max = tonumber(ARGV[8]), tonumber(ARGV[9])
local sigma_up, sigma_down = tonumber(ARGV[10]), tonumber(ARGV[11])
local fb_min, fb_max = tonumber(ARGV[12]), tonumber(ARGV[13])
local fb_up, fb_down = tonumber(ARGV[14]), tonumber(ARGV[15])
local chain_ttl = tonumber(ARGV[16])

local held_field = 'h' .. ARGV[17]
local pending = redis.call('HGET', run_key, held_field)
if not pending then
  held_field = 'h:' .. event_id -- held before event fields
  pending = redis.call('HGET', run_key, held_field)
end
if not pending then
  return {-3, '', '', 0}
end
redis.call('HDEL', run_key, held_field)

local m = redis.call('HMGET', meta_key, 'sig', 'fb', 'nn', 'ne', 'ovf', 'fp', 'tp', 'events', 'nc')
local st = {
  sig = tonumber(m[1] or sigma_default), fb = tonumber(m[2] or fallback_default),
  nn = tonumber(m[3] or '0'), ne = tonumber(m[4] or '0'), ovf = tonumber(m[5] or '0'),
  fp = tonumber(m[6] or '0'), tp = tonumber(m[7] or '0'), events = tonumber(m[8] or '0'),
  nc = tonumber(m[9] or '0'),
}

--- @include "chain_state"

local learned = 0
if decision == 'approve' then
  for edge in string.gmatch(pending, '[^\n]+') do
    -- "=<length>\t<node>": a back-to-back streak of the event (lua/observe.lua): the longest
    -- learned repeat of node becomes at least length (a person approved it, in any mode)
    local length, looped = string.match(edge, '^=(%d+)\t(.*)$')
    if length ~= nil then
      local f = 'r\t' .. looped
      if coarse_count(f) < tonumber(length) then
        ccache[f] = tonumber(length)
        pend_c[f] = true
      end
    else
      -- "from\tto\tprevious action\taction[\tkey-path hashes]" (the fifth field only when the
      -- shape vocabulary is tracked, shape_escape; older records: "from\tto", no action model)
      local from, to, prev_act, act = string.match(edge, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
      if from == nil then
        from, to = string.match(edge, '^([^\t]*)\t(.*)$')
      end
      local paths = nil
      if act ~= nil then
        local a, p = string.match(act, '^([^\t]*)\t(.*)$')
        if a ~= nil then act, paths = a, p end
      end
      to = bounded_to(from, to, node_cap, edge_cap)
      count_edge(from, to)
      if act ~= nil then count_action(prev_act, act, to, edge_cap, paths) end
      learned = learned + 1
    end
  end
  st.events = st.events + 1
  st.fp = st.fp + 1
  st.sig = math.min(sigma_max, st.sig + sigma_up)
  st.fb = math.min(fb_max, st.fb + fb_up)
else
  st.tp = st.tp + 1
  st.sig = math.max(sigma_min, st.sig - sigma_down)
  st.fb = math.max(fb_min, st.fb - fb_down)
end
local sig, fb = string.format('%.17g', st.sig), string.format('%.17g', st.fb)
redis.call('HSET', meta_key, 'sig', sig, 'fb', fb, 'nn', st.nn, 'ne', st.ne, 'ovf', st.ovf,
  'fp', st.fp, 'tp', st.tp, 'events', st.events, 'nc', st.nc, 'upd_ms', now_ms)
for i = 1, 4 do
  redis.call('EXPIRE', KEYS[i], chain_ttl)
end
flush_counts()
redis.call('EXPIRE', coarse_key, chain_ttl)
return {0, sig, fb, learned}
