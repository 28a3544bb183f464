--[[
  reset.lua — an operator's explicit baseline reset of ONE chain: counts, nodes, window,
  snapshot and mode are deleted, so the chain starts again in shadow. Run state expires by TTL.

  KEYS[1..6] meta, edges, rows, nodes, window, snapshot (as in observe.lua)
  ARGV: none

  Output: number of keys deleted (0 when the chain had no state)
]]
return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
