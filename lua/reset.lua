--[[
  reset.lua — an operator's explicit baseline reset of ONE chain: counts, nodes, window,
  snapshot and mode are deleted, so the chain starts again in shadow. Run state expires by TTL.

  KEYS[1..7] meta, edges, rows, nodes, window, snapshot, coarse (as in observe.lua)
  ARGV: none

  Output: number of keys deleted (0 when the chain had no state)
]]
return redis.call('DEL', unpack(KEYS))
