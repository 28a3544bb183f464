--[[
  signup_redeem.lua — redeem a signup token: in ONE atomic step, delete the token and create
  the org, its project, the project's API key (SHA-256 only) and an agent credential.

  A token redeems exactly once: the token check and its deletion happen in this one script, so
  of concurrent redemptions exactly one sees it. Nothing is written unless everything is.
  (The keys live under different hash tags: this script needs a single Redis, not a Cluster —
  as does the rest of the gateway's control plane.)

  KEYS[1] token      the signup token's record (JSON: {email, org_name, ip, issued_at})
  KEYS[2] org        the new org's hash
  KEYS[3] project    the new project's hash
  KEYS[4] projects   set of all project ids
  KEYS[5] apikey     API key SHA-256 -> project id
  KEYS[6] agent      the new agent's hash
  KEYS[7] agents     set of the project's agent ids

  ARGV[1] org_id       ARGV[2] project_id    ARGV[3] api_key_sha256
  ARGV[4] agent_id     ARGV[5] agent_secret  ARGV[6] now, Unix seconds (text)
  ARGV[7] tier         ARGV[8] project name  ARGV[9] default org name (token has none)

  Output: {code, record}
    code  0 created; record = the token's JSON record
        -13 TOKEN_INVALID (unknown, expired or already redeemed)
        -16 ALREADY_EXISTS (a generated id collided; nothing written, token kept)
]]
local record = redis.call('GET', KEYS[1])
if not record then
  return {-13, ''}
end
if redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[5], KEYS[6]) > 0 then
  return {-16, ''}
end
local org_id, project_id, sha = ARGV[1], ARGV[2], ARGV[3]
local agent_id, secret, now = ARGV[4], ARGV[5], ARGV[6]
local req = cjson.decode(record)
local org_name = req['org_name']
if type(org_name) ~= 'string' or org_name == '' then
  org_name = ARGV[9]
end
local email = req['email']
if type(email) ~= 'string' then
  email = ''
end

redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], 'name', org_name, 'email', email, 'created_at', now,
           'project_id', project_id, 'signup_ip', tostring(req['ip']))
redis.call('HSET', KEYS[3], 'name', ARGV[8], 'created_at', now, 'api_key_sha256', sha,
           'tier', ARGV[7], 'org_id', org_id)
redis.call('SADD', KEYS[4], project_id)
redis.call('SET', KEYS[5], project_id)
redis.call('HSET', KEYS[6], 'secret', secret, 'created_at', now)
redis.call('SADD', KEYS[7], agent_id)
return {0, record}
