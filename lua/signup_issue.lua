--[[
  signup_issue.lua — issue one self-serve signup token if the client IP and the global daily
  budget allow it (docs/design.md §5: 5/hour and 10/24 h per IP, a global daily cap).

  Per-IP limits are sliding windows over the issue times of the IP's tokens; the global cap is
  a counter per UTC day. Refused requests change nothing. All keys share the `{signup}` tag.

  KEYS[1] ip_log     sorted set: token id -> issue time, ms (this client IP)
  KEYS[2] day        counter of tokens issued this UTC day
  KEYS[3] token      the new token's record (SHA-256 of the token in the key name)

  ARGV[1] now_ms        current time, ms (Unix)
  ARGV[2] hour_limit    tokens per IP per sliding hour
  ARGV[3] day_limit     tokens per IP per sliding 24 h
  ARGV[4] daily_cap     tokens per UTC day, all clients
  ARGV[5] day_left_ms   ms until the UTC day ends
  ARGV[6] record        the token's record, JSON
  ARGV[7] token_ttl_ms  validity of the token, ms
  ARGV[8] token_id      unique id of this token (member of ip_log)

  Output: {code, a, b}
    code  0 issued:              a = tokens left this hour for the IP, b = ms until one more frees
         -10 SIGNUP_IP_HOUR:      a = ms until the IP may ask again
         -11 SIGNUP_IP_DAY:       a = ms until the IP may ask again
         -12 SIGNUP_DAILY_CAP:    a = ms until the UTC day ends
]]
local ip_log, day_key, token_key = KEYS[1], KEYS[2], KEYS[3]
local now = tonumber(ARGV[1])
local hour_limit = tonumber(ARGV[2])
local day_limit = tonumber(ARGV[3])
local daily_cap = tonumber(ARGV[4])
local day_left = tonumber(ARGV[5])
local record = ARGV[6]
local token_ttl = tonumber(ARGV[7])
local token_id = ARGV[8]
local HOUR, DAY = 3600000, 86400000

redis.call('ZREMRANGEBYSCORE', ip_log, '-inf', now - DAY)
local in_hour = redis.call('ZRANGEBYSCORE', ip_log, '(' .. (now - HOUR), '+inf', 'WITHSCORES')
local hour_count = #in_hour / 2
if hour_count >= hour_limit then
  local oldest = tonumber(in_hour[2 * (hour_count - hour_limit) + 2])
  return {-10, oldest + HOUR - now, 0}
end
local day_count = redis.call('ZCARD', ip_log)
if day_count >= day_limit then
  local first = redis.call('ZRANGE', ip_log, day_count - day_limit, day_count - day_limit,
                           'WITHSCORES')
  return {-11, tonumber(first[2]) + DAY - now, 0}
end
if (tonumber(redis.call('GET', day_key)) or 0) >= daily_cap then
  return {-12, day_left, 0}
end

redis.call('ZADD', ip_log, now, token_id)
redis.call('PEXPIRE', ip_log, DAY)
redis.call('INCR', day_key)
redis.call('PEXPIRE', day_key, day_left + HOUR)
redis.call('SET', token_key, record, 'PX', token_ttl)
local next_free = HOUR
if hour_count > 0 then
  next_free = tonumber(in_hour[2]) + HOUR - now
end
return {0, hour_limit - hour_count - 1, next_free}
