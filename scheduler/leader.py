"""Leadership through a Redis lease: whoever holds the key acts; the lease expires if it dies.

Every plan write is fenced by the token (shared/store.py), so a deposed leader writes nothing.
"""

from __future__ import annotations

import uuid

import redis

# Extend only our own lease; a stale leader must not extend a successor's.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class Lease:
    def __init__(self, client: redis.Redis, key: str, seconds: float):
        self.client = client
        self.key = key
        self.ms = int(seconds * 1000)
        self.token = uuid.uuid4().hex
        self.held = False
        self._renew = client.register_script(RENEW)

    def acquire_or_renew(self) -> bool:
        """True while we lead. Acquires a free lease, renews our own, never steals another's."""
        if self.held and self._renew(keys=[self.key], args=[self.token, self.ms]):
            return True
        self.held = bool(self.client.set(self.key, self.token, nx=True, px=self.ms))
        return self.held

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value

    def release(self) -> None:
        if self.held and self.holder() == self.token:
            self.client.delete(self.key)
        self.held = False
