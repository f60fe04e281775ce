"""Leadership through a Redis lease: whoever holds the key acts; the lease expires if it dies.

The lease is bound to the Redis server that granted it (shared/lease.py), and every plan write is
fenced by its token (shared/store.py): a deposed leader writes nothing, and neither does one whose
Redis master was replaced by a failover.
"""

from __future__ import annotations

import uuid

import redis

from shared import lease


class Lease:
    def __init__(self, client: redis.Redis, key: str, seconds: float):
        self.key = key
        self.ms = int(seconds * 1000)
        self.nonce = uuid.uuid4().hex
        self.token = ""  # NONCE@RUN_ID while held
        self.held = False
        self._acquire = client.register_script(lease.ACQUIRE)
        self._renew = client.register_script(lease.RENEW)
        self._release = client.register_script(lease.RELEASE)

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
