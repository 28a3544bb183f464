--[[
  reset.lua — an operator's explicit baseline reset of ONE chain: counts, nodes, window,
  snapshot, node labels and mode are deleted, so the chain starts again in shadow. Run state
  expires by TTL.

  KEYS[1..8] meta, edges, rows, nodes, window, snapshot, coarse, the previous release's
             snapshot hash (as in observe.lua)
  KEYS[9]    labels (node labels, label_nodes.lua; optional)
  ARGV: none

  Output: number of keys deleted (0 when the chain had no state)
]]
return redis.call('DEL', unpack(KEYS))
