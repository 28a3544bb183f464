--[[
  webhook_add.lua — register one webhook of a project unless the project already has the
  maximum number (the check and the write are one atomic step).

  KEYS[1] webhooks   hash: webhook id → webhook JSON

  ARGV[1] webhook_id
  ARGV[2] webhook    JSON (url, actions, description, secret, created_at)
  ARGV[3] max        most webhooks per project

  Output:
    {0, count}   added; webhooks of the project now
    {-5, count}  LIMIT_REACHED: the project already has `max` webhooks
]]
local webhook_id = ARGV[1]
local webhook = ARGV[2]
local max = tonumber(ARGV[3])

local count = redis.call('HLEN', KEYS[1])
if count >= max then
  return {-5, count}
end
redis.call('HSET', KEYS[1], webhook_id, webhook)
return {0, count + 1}
