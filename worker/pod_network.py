"""The agent's upkeep of the cluster's pod network on its host (shared/podnet.py), once its engine has
the cluster's network (made by the first start of a replica that joins it, worker/jobs.py): routes to
the other engines' subnets and the firewall rules for them (worker/routing.py), followed as engines
join, and the cluster DNS (worker/dns.py) at the network's gateway, where this engine's containers
ask. The subnets are looked at every FOLLOW_INTERVAL, and the upkeep is done as soon as they change
(an engine joined: its containers are reachable from here, and the replies to them routed back,
within that), and again every DEFAULT_POD_NETWORK_INTERVAL (2 s) whatever, so a host that returns,
or an engine that comes back, is mended."""

from __future__ import annotations

import logging
import math
import threading

from shared import defaults
from shared.podnet import gateway, routes
from worker.dns import ClusterDns, node_upstreams
from worker.engine import EngineError
from worker.loops import spawn
from worker.node import Node
from worker.routing import ensure_rules, sync_routes

log = logging.getLogger("rq.worker.gorchester")

FOLLOW_INTERVAL = 0.5  # seconds between looks at the subnets hash (one HGETALL of a few entries)


def upkeep_due(seen: dict[str, str] | None, subnets: dict[str, str], mended_at: float, now: float,
               every: float) -> bool:
    """Whether the whole upkeep is due: the subnets changed since it was last done, or `every` passed."""
    return subnets != seen or now - mended_at >= every


class PodNetworkUpkeep:
    def __init__(self, node: Node, stop: threading.Event, every: float):
        self.node = node
        self.stop = stop
        self.every = every  # the heartbeat interval: the upkeep is done at least this often
        self.subnet: str | None = None  # this engine's, once the cluster's network is on it
        self.dns: ClusterDns | None = None
        self.seen: dict[str, str] | None = None  # the subnets the upkeep was last done for
        self.mended_at = -math.inf

    def tick(self, now: float) -> None:
        """A look at the subnets (`now`: monotonic seconds); the upkeep when it is due."""
        subnets = self.node.store.subnets()
        if upkeep_due(self.seen, subnets, self.mended_at, now, self.every) and self.step(subnets):
            self.seen, self.mended_at = subnets, now

    def step(self, subnets: dict[str, str]) -> bool:
        """The upkeep for these subnets; False when it could not be done (the engine does not answer).
        Nothing to do until the cluster's network is on this engine."""
        try:
            engine_id = self.node.engine.engine_id
        except EngineError:
            return False
        self.subnet = subnets.get(engine_id)
        if self.subnet is None:
            return True
        if self.dns is None:
            self.serve_dns(gateway(self.subnet))
        wanted = routes(engine_id, subnets, self.node.store.read_nodes().good.values())
        sync_routes(wanted)
        if wanted:  # another engine's containers to reach: Docker's own rules would drop them
            ensure_rules(self.node.pod_cidr)
        return True

    def serve_dns(self, address: str) -> None:
        """The cluster DNS at the gateway of this engine's bridge of the cluster; an agent sharing the
        engine may serve it already, and then this one takes over when that one goes (worker/dns.py)."""
        own = (address, defaults.DEFAULT_DNS_PORT)
        self.dns = ClusterDns(address, self.node.store, node_upstreams(own))
        dns = self.dns
        spawn("cluster-dns", lambda: dns.run(self.stop))
        log.info("cluster DNS at %s:%d", *own)
