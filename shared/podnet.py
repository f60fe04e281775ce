"""The cluster's pod network, as flannel's host-gw lays it out: pure rules, no I/O.

Every service that sets `network` has its replicas on the cluster's own Docker network on their
engine (`gorchester-<cluster>`), one bridge per cluster per engine. Each engine's bridge gets a
subnet of its own, allocated by the control plane from the cluster's range (GORCHESTER_POD_CIDR,
a /24 per engine), and every host routes the other engines' subnets to the address of a node on
that engine. So a container's address is reachable from every host of the cluster as it is, and
the cluster DNS (worker/dns.py) answers a service's name with those addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from shared.records import NodeRecord

SUBNET_PREFIX = 24  # each engine's share: 254 containers of the cluster per engine


class PodRangeError(Exception):
    """The cluster's range has no subnet left for one more engine; the message says which range."""


def network_name(cluster: str) -> str:
    """The cluster's Docker network on each of its engines."""
    return f"gorchester-{cluster}"


def usable(subnet: str, taken: Collection[str], clashes: Iterable[str] = ()) -> bool:
    """No other engine of the cluster has `subnet`, and it overlaps none of `clashes` (networks the engine
    has already: another cluster's, say)."""
    network = ipaddress.ip_network(subnet)
    return subnet not in taken and not any(network.overlaps(ipaddress.ip_network(other)) for other in clashes)


def pick_subnet(cidr: str, taken: Collection[str], clashes: Collection[str] = ()) -> str:
    """The first /24 of the cluster's range that is `usable`."""
    for subnet in ipaddress.ip_network(cidr).subnets(new_prefix=SUBNET_PREFIX):
        if usable(str(subnet), taken, clashes):
            return str(subnet)
    raise PodRangeError(f"the pod range {cidr} has no /{SUBNET_PREFIX} left for another engine")


@dataclass(frozen=True)
class PodNetwork:
    """The cluster's network on one engine."""

    id: str
    subnet: str

    @property
    def gateway(self) -> str:
        return gateway(self.subnet)


def gateway(subnet: str) -> str:
    """The bridge's own address on `subnet`: where the engine's containers find the cluster DNS."""
    return str(next(ipaddress.ip_network(subnet).hosts()))


@dataclass(frozen=True)
class Route:
    subnet: str
    via: str  # the address of a node on the engine that has `subnet`


def routes(own_engine: str, subnets: Mapping[str, str], nodes: Iterable[NodeRecord]) -> list[Route]:
    """The routes a host of engine `own_engine` needs: each other engine's subnet via the address of a
    node on that engine (the first by id; nodes sharing an engine share its subnet and need none). A
    node that is down keeps its route: its replicas move anyway, and a partition that heals needs it."""
    via: dict[str, str] = {}
    for node in sorted(nodes, key=lambda node: node.id):
        if node.engine_id and node.engine_id != own_engine and node.engine_id not in via:
            via[node.engine_id] = node.address
    return sorted(
        (Route(subnet, via[engine]) for engine, subnet in subnets.items() if engine in via),
        key=lambda route: route.subnet,
    )
