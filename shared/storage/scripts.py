"""The Lua scripts of the storage package: each write that must check and change several keys at
once (a fence, a decision still current) is one call, atomic in Redis."""

from __future__ import annotations

from shared.storage import changelog
from shared.storage.lease import LUA

# The scheduler's writes of assignments (shared/task_parts.py), each with its events. KEYS[1]
# assignments, KEYS[2] statuses, KEYS[3] stop requests, KEYS[4] the change log, KEYS[5] the events,
# KEYS[6] the leader key (optional). ARGV[1] the leader's token ('' = unfenced), ARGV[2] a fresh node
# revision token, ARGV[3] the events' length cap, ARGV[4] how many writes, then each: task id,
# assignment JSON or '' to drop the task, the gen up to which a user's stop request is settled, a
# count and that many events (JSON), a count and that many node index keys it leaves (SREM), a count
# and that many it joins (SADD). Then the node revision keys to replace. A dropped task's status and
# stop request go with it.
WRITE_ASSIGNMENTS = LUA + changelog.LUA + """
if KEYS[6] and not holds(KEYS[6], ARGV[1]) then
  return redis.error_reply('NOTLEADER')
end
local stops = redis.call('HLEN', KEYS[3]) > 0
local changed = {}
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  local id, body, settled = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  changed[#changed + 1] = id
  i = i + 3
  for _ = 1, tonumber(ARGV[i]) do
    i = i + 1
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], '*', 'event', ARGV[i])
  end
  i = i + 1
  if body == '' then
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
  else
    redis.call('HSET', KEYS[1], id, body)
    local stop = stops and redis.call('HGET', KEYS[3], id)
    if stop then
      local ok, request = pcall(cjson.decode, stop)
      local gen = ok and type(request) == 'table' and tonumber(request.gen) or nil
      if gen == nil or gen <= settled then redis.call('HDEL', KEYS[3], id) end
    end
  end
  for _ = 1, tonumber(ARGV[i]) do
    i = i + 1
    redis.call('SREM', ARGV[i], id)
  end
  i = i + 1
  for _ = 1, tonumber(ARGV[i]) do
    i = i + 1
    redis.call('SADD', ARGV[i], id)
  end
  i = i + 1
end
for j = i, #ARGV do redis.call('SET', ARGV[j], ARGV[2]) end
log_change(KEYS[4], changed, {})
return 1
"""

# An agent's status reports. KEYS[1] assignments, KEYS[2] statuses, KEYS[3] the change log, KEYS[4]
# the node's revision key; ARGV[1] the agent's node, ARGV[2] a fresh node revision token, then quadruples
# (task id, gen, incarnation, status JSON). Each is written only while the task's assignment is that
# decision on that node: 1, else 0.
WRITE_STATUSES = changelog.LUA + """
local out = {}
local wrote = {}
for i = 3, #ARGV, 4 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  local ok, assignment = false, nil
  if current then ok, assignment = pcall(cjson.decode, current) end
  if ok and type(assignment) == 'table' and assignment.node == ARGV[1]
      and tonumber(assignment.gen) == tonumber(ARGV[i + 1]) and (assignment.incarnation or '') == ARGV[i + 2] then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 3])
    out[#out + 1] = 1
    wrote[#wrote + 1] = ARGV[i]
  else
    out[#out + 1] = 0
  end
end
if #wrote > 0 then
  log_change(KEYS[3], wrote, {})
  redis.call('SET', KEYS[4], ARGV[2])
end
return out
"""

# Readers of some tasks: `emit` appends a task id and its three stored parts (nil where absent) from
# KEYS[2..4], the assignments, statuses and stop requests.
TASK_PARTS = """
local function emit(out, id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id)
  out[#out + 1] = redis.call('HGET', KEYS[3], id)
  out[#out + 1] = redis.call('HGET', KEYS[4], id)
end
local out = {}
"""

# The tasks of some services. KEYS[1] the assignments (again); ARGV the services' task id prefixes
# (`web.`: a service name has no dot).
SERVICE_TASKS = TASK_PARTS + """
for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
  for _, prefix in ipairs(ARGV) do
    if string.sub(id, 1, #prefix) == prefix then
      emit(out, id)
      break
    end
  end
end
return out
"""

# An agent's read of its node's tasks. KEYS[1] the node's index.
NODE_TASKS = TASK_PARTS + """
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do emit(out, id) end
return out
"""

# KEYS[1] the change log: the id of its last entry, without the entry (it may name 1,000 ids).
LAST_CHANGE = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then return last[1][1] end
return false
"""

# KEYS[1] the nodes set; ARGV[1] the node hash key prefix. Each node's id, then its hash as one
# JSON object (field names are NodeRecord's identifiers; values are JSON already).
NODES_JSON = """
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local fields = redis.call('HGETALL', ARGV[1] .. id)
  local parts = {}
  for i = 1, #fields, 2 do
    parts[#parts + 1] = '"' .. fields[i] .. '":' .. fields[i + 1]
  end
  out[#out + 1] = id
  out[#out + 1] = '{' .. table.concat(parts, ',') .. '}'
end
return out
"""

# KEYS[1] the leader key, KEYS[2] a key only the leader writes; ARGV[1] the leader's token, ARGV[2] the value.
SET_IF_LEADER = LUA + """
if not holds(KEYS[1], ARGV[1]) then
  return redis.error_reply('NOTLEADER')
end
return redis.call('SET', KEYS[2], ARGV[2])
"""

# KEYS[1] the leader key; ARGV[1] the leader's token. 1 while that token holds the lease, else 0.
HOLDS_LEASE = LUA + """
if holds(KEYS[1], ARGV[1]) then return 1 end
return 0
"""

# KEYS[1] the leader key. The token of the lease if this server granted it (one a promoted replica
# holds is void, shared/storage/lease.py), else nil.
LEASE_HOLDER = LUA + """
local value = redis.call('GET', KEYS[1])
if granted_here(value) then return value end
return false
"""

# KEYS[1] services, KEYS[2] the change log, KEYS[3] events; ARGV[1] the name, ARGV[2] the record,
# ARGV[3] the changes channel, ARGV[4] the event, ARGV[5] the events' length cap. 1 when created, 0
# (nothing written) when the name is taken.
CREATE_SERVICE = changelog.LUA + """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
log_change(KEYS[2], {}, {ARGV[1]})
redis.call('PUBLISH', ARGV[3], 'service:' .. ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'event', ARGV[4])
redis.call('DEL', KEYS[4])
redis.call('LPUSH', KEYS[4], ARGV[6])
return 1
"""
