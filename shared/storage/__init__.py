"""The cluster's data in Redis, as each process may use it. Layout: shared/keys.py and
docs/redis-layout.md; one writer per record (docs/architecture.md).

Each role is a class made of the parts it may use, so a process holds only what its role allows (and
mypy says so where one reaches beyond it):

- `Reads` (reads.py): snapshots of services, tasks and nodes for the scheduler's pass and the API's
  views, and an agent's own node's tasks. Every role reads.
- `UserWrites` (requests.py): users' changes through the API: services, stop requests, drains.
- `PlanWrites` (plans.py): the leading scheduler's decisions, fenced by its lease.
- `StatusWrites` (statuses.py): a node agent's reports on its node's tasks, its beats and samples.
"""

from __future__ import annotations

from shared.storage.plans import PlanWrites
from shared.storage.reads import Reads
from shared.storage.requests import UserWrites
from shared.storage.statuses import StatusWrites


class ApiStore(UserWrites):
    """The API's: reads and users' changes."""


class SchedulerStore(PlanWrites, UserWrites):
    """The scheduler's: its plans, and users' changes it makes for them (a config file given at its
    start, the autoscaler's replica counts)."""


class AgentStore(StatusWrites, Reads):
    """A node agent's: its reports, and the reads of its node's tasks and of what discovery needs."""


class Store(SchedulerStore, AgentStore, ApiStore):
    """Every role at once: for tools, benchmarks and tests that play several parts."""
