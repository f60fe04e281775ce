"""The agent's upkeep of the cluster's pod network on its host (shared/podnet.py), once its engine has
the cluster's network (made by the first start of a replica that joins it, worker/jobs.py): routes to
the other engines' subnets and the firewall rules for them (worker/routing.py), followed as engines
join; done again every heartbeat, so a host that returns, or an engine that comes back, is mended."""

from __future__ import annotations

import logging

from shared.podnet import routes
from worker.engine import EngineError
from worker.node import Node
from worker.routing import ensure_rules, sync_routes

log = logging.getLogger("rq.worker.gorchester")


class PodNetworkUpkeep:
    def __init__(self, node: Node):
        self.node = node
        self.subnet: str | None = None  # this engine's, once the cluster's network is on it

    def step(self) -> None:
        """One look (nothing to do until the cluster's network is on this engine, or while the engine
        does not answer)."""
        try:
            engine_id = self.node.engine.engine_id
        except EngineError:
            return
        subnets = self.node.store.subnets()
        self.subnet = subnets.get(engine_id)
        if self.subnet is None:
            return
        wanted = routes(engine_id, subnets, self.node.store.read_nodes().good.values())
        sync_routes(wanted)
        if wanted:  # another engine's containers to reach: Docker's own rules would drop them
            ensure_rules(self.node.pod_cidr)
