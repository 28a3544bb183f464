--[[
  reset.lua — an operator's explicit baseline reset of ONE chain: counts, nodes, window,
  snapshot, node labels and mode are deleted, so the chain starts again in shadow. Run state
  expires by TTL.

  KEYS[1..7] meta, edges, rows, nodes, window, snapshot, coarse (as in observe.lua)
  KEYS[8]    labels (node labels, label_nodes.lua; optional)
  ARGV: none

  Output: number of keys deleted (0 when the chain had no state)
]]
return redis.call('DEL', unpack(KEYS))
