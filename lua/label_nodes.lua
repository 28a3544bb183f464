--[[
  label_nodes.lua — store readable labels of a chain's nodes, bounded per chain.

  Labels (service, action, key paths; models/labels.py) are written beside the chain's counts,
  under the chain's hash tag, in the same pipeline as the chain's observe call. A node keeps its
  first label (HSETNX); once the hash holds `cap` labels no new node is labelled (existing ones
  still refresh the idle TTL), so a chain's labels never outnumber its node cap.

  KEYS[1] labels    hash: node id → label JSON ({"s","a","k","n"}, at most ~1.3 KB each)
  ARGV[1] cap       labels per chain at most (the engine's node_cap)
  ARGV[2] ttl       idle TTL of the hash, s (the chain's)
  ARGV[3..]         pairs: node id, label JSON

  Output: number of labels the hash holds afterwards
]]
local cap = tonumber(ARGV[1])
local n = redis.call('HLEN', KEYS[1])
for i = 3, #ARGV - 1, 2 do
  if n >= cap then break end
  n = n + redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
end
if n > 0 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2])) end
return n
