--[[
  guard_feedback.lua — a person's decision on an event a learning guardrail held back (its own
  action paused or rejected it): approve teaches the agent's step order and values what that
  rule reported for the event; reject forgets it. Either way the lessons are removed, so a
  redelivered decision is a no-op. (The chain learns held events in lua/feedback.lua.)

  The lessons were written by lua/guardrails.lua in the agent's guardrail run hash, field
  "L" .. <event field>: records of "x" pair (16 bytes: previous and current step), "y" step
  (8 bytes) and the streak ('<I'), "r" slot (8 bytes) and its magnitude byte, "c" slot and the
  value's 4-byte hash. Approved, a pair is learned as lua/guardrails.lua learns one (a new pair
  counted once, within order_cap), a streak becomes the step's longest learned (reached once),
  a magnitude widens its slot's range, a category value joins its slot's set (a set past
  max_distinct values opens) — each only if it is still new: something learned meanwhile is
  not counted twice. A slot that no longer exists (expired) learns nothing.

  KEYS[1] agent order hash   KEYS[2] agent values hash   KEYS[3] run hash (guardrails.lua's)
  ARGV[1] event field (ratchet.store.keys.event_field)
  ARGV[2] decision          "approve" | "reject"
  ARGV[3] order_cap         ARGV[4] value_distinct   ARGV[5] order_ttl (s)   ARGV[6] value_ttl (s)
  ARGV[7] margin            ARGV[8] margin_below (the value rule's, powers of two)

  An approved magnitude widens its range only so far that the range *with its margin* reaches
  it (a new edge `m - margin` above, `m + margin` below, the margin of that side of zero as the
  value rule judges it): an approved 98,000 does not let 500,000 through.

  Output: lessons applied (0: none pending, rejected, or nothing new).
]]
local ORDER_KEY, VALUE_KEY = KEYS[1], KEYS[2]
local order_cap = tonumber(ARGV[3])
local value_distinct = tonumber(ARGV[4])
local margin, margin_below = tonumber(ARGV[7] or 2), tonumber(ARGV[8] or 4)
local ZERO_SIDE = 128  -- the magnitude byte of zero's side (models/guardrails/values.py)

local field = 'L' .. ARGV[1]
local lessons = redis.call('HGET', KEYS[3], field)
if not lessons then return 0 end
redis.call('HDEL', KEYS[3], field)
if ARGV[2] ~= 'approve' then return 0 end

--- @include "guard_state"

-- the value slots the lessons name, read at once (vget reads only what was fetched)
local at, slots = 1, {}
while at <= #lessons do
  local kind = string.sub(lessons, at, at)
  if kind == 'x' then
    at = at + 17
  elseif kind == 'y' then
    at = at + 13
  elseif kind == 'r' then
    slots[#slots + 1] = string.sub(lessons, at + 1, at + 8)
    at = at + 10
  else
    slots[#slots + 1] = string.sub(lessons, at + 1, at + 8)
    at = at + 13
  end
end
if #slots > 0 then
  local got = redis.call('HMGET', VALUE_KEY, unpack(slots))
  for j = 1, #slots do
    if got[j] then val_raw[slots[j]] = got[j] end
  end
end

local applied = 0
at = 1
while at <= #lessons do
  local kind = string.sub(lessons, at, at)
  if kind == 'x' then
    local prev, pair = string.sub(lessons, at + 1, at + 8), string.sub(lessons, at + 1, at + 16)
    if oget(pair) == 0 then
      learn(prev, pair, 0)
      applied = applied + 1
    end
    at = at + 17
  elseif kind == 'y' then
    local step = string.sub(lessons, at + 1, at + 8)
    local streak = struct.unpack('<I', string.sub(lessons, at + 9, at + 12))
    if streak > oget('m' .. step) then
      oset('m' .. step, streak)
      oset('h' .. step, 1)
      applied = applied + 1
    end
    at = at + 13
  elseif kind == 'r' then
    local slot = string.sub(lessons, at + 1, at + 8)
    local m = string.byte(lessons, at + 9)
    local st = vget(slot, 1)
    if st ~= nil and st[1] == 1 then
      local edge = nil
      if m > st[5] then
        local up = (m >= ZERO_SIDE) and margin or margin_below
        if m - up > st[5] then edge = m - up end
      elseif m < st[4] then
        local down = (m < ZERO_SIDE) and margin or margin_below
        if m + down < st[4] then edge = m + down end
      end
      if edge ~= nil then
        vlearn(st, 1, edge, true)
        val_dirty[slot] = true
        applied = applied + 1
      end
    end
    at = at + 10
  else
    local slot = string.sub(lessons, at + 1, at + 8)
    local h = string.sub(lessons, at + 9, at + 12)
    local st = vget(slot, 2)
    if st ~= nil and st[1] == 2 and st[4] ~= nil and not st[4][h] then
      vlearn(st, 2, h, true)
      val_dirty[slot] = true
      applied = applied + 1
    end
    at = at + 13
  end
end
flush_guard_state(tonumber(ARGV[5]), tonumber(ARGV[6]))
return applied
