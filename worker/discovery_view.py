"""The cluster's services and tasks as its DNS (worker/dns.py) answers from them: shared/discovery.py's
Directory, built again whenever the store says services or tasks changed."""

from __future__ import annotations

import threading

from shared import defaults
from shared.discovery import Directory
from shared.storage import AgentStore
from worker.loops import repeat

MAX_BACKOFF = 1.0  # after a failed read (Redis away), at most this long until the next: soon back


class DiscoveryView:
    """The cluster's services and tasks as the DNS answers from them, read again whenever the
    store's revision token changes (looked at every `poll` seconds). While Redis does not answer,
    the last view stays; until the first read, no name is the cluster's (all are forwarded)."""

    def __init__(self, store: AgentStore, poll: float = defaults.DEFAULT_DISCOVERY_POLL_INTERVAL) -> None:
        self.store = store
        self.poll = poll
        self.directory = Directory([], [])  # replaced whole, never changed: readers need no lock
        self.loaded = threading.Event()  # set once the records were read
        self._revision: str | None = None

    def refresh(self) -> None:
        # The token is read first: a write landing during the read below changes it again.
        revision = self.store.revision()
        if revision is not None and revision == self._revision:
            return  # None: the store cannot say (Redis lost its data, say), so read anyway
        self.directory = Directory(self.store.services().values(), self.store.tasks())
        self._revision = revision
        self.loaded.set()

    def run(self, stop: threading.Event) -> None:
        repeat(stop, self.poll, self.refresh, "cluster DNS view", max_backoff=MAX_BACKOFF)
