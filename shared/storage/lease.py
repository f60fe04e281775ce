"""The scheduler's lease as Redis keeps it: a token bound to the Redis process that granted it.

The lease key holds `NONCE@RUN_ID`, RUN_ID being the `run_id` of the server that granted it (INFO
server; a redis-server draws a new one at every start). Redis replicates the key and persists it,
so a replica promoted by Sentinel, or an old master back from its files, holds a lease its own run
id did not grant: there it is void. Every fenced write checks both halves in the same script as the
write, so a scheduler that led on a master that is gone writes nothing after the promotion, on the
new master or on the old one returning, and must take the lease again like any other scheduler.

Whoever holds the key acts (the leading scheduler); the lease expires if it dies. LUA is a prelude
for the scripts here and in shared/storage/scripts.py; scripts that use it need the INFO command (the
ACL of the install guide grants `+info`).
"""

from __future__ import annotations

import uuid

import redis

LUA = """
local function run_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
end
local function granted_here(value)
  return value and string.match(value, '@(%x+)$') == run_id()
end
local function holds(key, token)
  local value = redis.call('GET', key)
  return value == token and granted_here(value)
end
"""

# KEYS[1] the lease; ARGV[1] a nonce, ARGV[2] the lease in ms. The token, or nil while another holds it.
ACQUIRE = (
    LUA
    + """
if granted_here(redis.call('GET', KEYS[1])) then
  return false
end
local token = ARGV[1] .. '@' .. run_id()
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return token
"""
)

# KEYS[1] the lease; ARGV[1] the token, ARGV[2] the lease in ms. 1 while held (extended), else 0: a
# stale leader must not extend a successor's, nor its own on a server that did not grant it.
RENEW = (
    LUA
    + """
if holds(KEYS[1], ARGV[1]) then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
)

# KEYS[1] the lease; ARGV[1] the token. Deletes it only while this token holds it.
RELEASE = (
    LUA
    + """
if holds(KEYS[1], ARGV[1]) then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)


class Lease:
    def __init__(self, client: redis.Redis, key: str, seconds: float):
        self.key = key
        self.ms = int(seconds * 1000)
        self.nonce = uuid.uuid4().hex
        self.token = ""  # NONCE@RUN_ID while held
        self.held = False
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)

    def acquire_or_renew(self) -> bool:
        """True while we lead. Acquires a free lease (or one a replaced server granted), renews our own,
        never takes one another scheduler holds here."""
        if self.held and self._renew(keys=[self.key], args=[self.token, self.ms]):
            return True
        token = self._acquire(keys=[self.key], args=[self.nonce, self.ms])
        self.held = token is not None
        if token is not None:
            self.token = token.decode() if isinstance(token, bytes) else str(token)
        return self.held

    def release(self) -> None:
        if self.held:
            self._release(keys=[self.key], args=[self.token])
        self.held = False
