--[[
  varint.lua (include) — non-negative integers as base-128 varints (low 7 bits first, the high
  bit set on every byte but the last): 1 byte below 128, 2 below 16,384, 3 below 2,097,152.
  Used by the compact dedup answers kept per event in run hashes (lua/guardrails.lua,
  lua/observe.lua), which must stay ≤ 64 bytes for Redis's listpack encoding.
]]
local char, floor = string.char, math.floor
local function varint(x)
  if x < 128 then return char(x) end
  if x < 16384 then return char(x % 128 + 128, floor(x / 128)) end
  if x < 2097152 then  -- 3 bytes: one string.char, no table (counts in 1/1000 units land here)
    return char(x % 128 + 128, floor(x / 128) % 128 + 128, floor(x / 16384))
  end
  local t = {}
  while x >= 128 do
    t[#t + 1] = string.char(x % 128 + 128)
    x = math.floor(x / 128)
  end
  t[#t + 1] = string.char(x)
  return table.concat(t)
end

-- The varint starting at byte `at` of `s`: its value and the position after it.
local function varint_read(s, at)
  local x, scale = 0, 1
  while true do
    local b = string.byte(s, at)
    at = at + 1
    if b < 128 then return x + b * scale, at end
    x = x + (b - 128) * scale
    scale = scale * 128
  end
end
