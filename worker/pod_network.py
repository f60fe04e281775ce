"""The agent's upkeep of the cluster's pod network on its host (shared/podnet.py), once its engine has
the cluster's network (made by the first start of a replica that joins it, worker/jobs.py): routes to
the other engines' subnets and the firewall rules for them (worker/routing.py), followed as engines
join, and the cluster DNS (worker/dns.py) at the network's gateway, where this engine's containers
ask. Done again every DEFAULT_POD_NETWORK_INTERVAL (2 s), so a host that returns, or an engine that
comes back, is mended."""

from __future__ import annotations

import logging
import threading

from shared import defaults
from shared.podnet import gateway, routes
from worker.dns import ClusterDns, node_upstreams
from worker.engine import EngineError
from worker.loops import spawn
from worker.node import Node
from worker.routing import ensure_rules, sync_routes

log = logging.getLogger("rq.worker.gorchester")


class PodNetworkUpkeep:
    def __init__(self, node: Node, stop: threading.Event):
        self.node = node
        self.stop = stop
        self.subnet: str | None = None  # this engine's, once the cluster's network is on it
        self.dns: ClusterDns | None = None

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
        if self.dns is None:
            self.serve_dns(gateway(self.subnet))
        wanted = routes(engine_id, subnets, self.node.store.read_nodes().good.values())
        sync_routes(wanted)
        if wanted:  # another engine's containers to reach: Docker's own rules would drop them
            ensure_rules(self.node.pod_cidr)

    def serve_dns(self, address: str) -> None:
        """The cluster DNS at the gateway of this engine's bridge of the cluster; an agent sharing the
        engine may serve it already, and then this one takes over when that one goes (worker/dns.py)."""
        own = (address, defaults.DEFAULT_DNS_PORT)
        self.dns = ClusterDns(address, self.node.store, node_upstreams(own))
        dns = self.dns
        spawn("cluster-dns", lambda: dns.run(self.stop))
        log.info("cluster DNS at %s:%d", *own)
