"""This host's share of the cluster's pod network (shared/podnet.py): routes to the other engines'
subnets, and the firewall rules that let the cluster's containers reach each other across hosts.

flannel's host-gw does the same: a route per other host's container subnet, via that host's own
address. Docker's own rules drop what arrives from another host for a container (its FORWARD chain
accepts only replies and published ports) and masquerade what a container sends off its bridge, so
two rules go in front of them, for the pod range only: accept from the range to the range
(DOCKER-USER, which Docker keeps for this), and no address translation within the range. Nothing of
a user's reaches a command line here: the range and addresses come from settings and node records,
checked as addresses before they are used.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
from collections.abc import Sequence

from shared.podnet import Route

log = logging.getLogger("rq.worker.gorchester")

PROTO = "188"  # the routes this module owns carry this protocol number, so stale ones are found and removed
COMMENT = "gorchester pod network"
TIMEOUT = 10.0  # seconds for one `ip` or `iptables` command


class RoutingError(Exception):
    """A command that sets up the pod network failed; the message says which and why."""


def _run(*argv: str) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RoutingError(f"{' '.join(argv)}: {exc}") from None
    if result.returncode != 0:
        raise RoutingError(f"{' '.join(argv)}: {result.stderr.strip() or f'exit status {result.returncode}'}")
    return result.stdout


def installed() -> dict[str, str]:
    """The routes this module made on this host: subnet -> the address it goes via."""
    routes = {}
    for line in _run("ip", "-4", "route", "show", "proto", PROTO).splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "via":
            routes[parts[0]] = parts[2]
    return routes


def sync_routes(wanted: Sequence[Route]) -> bool:
    """Make this host's routes of the pod network exactly `wanted`; returns whether anything changed."""
    for route in wanted:  # checked as addresses: these become arguments of `ip`
        ipaddress.IPv4Network(route.subnet)
        ipaddress.IPv4Address(route.via)
    have = installed()
    want = {route.subnet: route.via for route in wanted}
    changed = False
    for subnet, via in sorted(want.items()):
        if have.get(subnet) != via:
            _run("ip", "-4", "route", "replace", subnet, "via", via, "proto", PROTO)
            log.info("pod network: route %s via %s", subnet, via)
            changed = True
    for subnet in sorted(set(have) - set(want)):
        _run("ip", "-4", "route", "del", subnet, "proto", PROTO)
        log.info("pod network: route %s removed", subnet)
        changed = True
    return changed


RULES = (
    # (table, chain, rule): accept the pod range to itself before Docker's own FORWARD rules, and do not
    # masquerade it (a replica sees its peer's own address).
    ("filter", "DOCKER-USER", "ACCEPT"),
    ("nat", "POSTROUTING", "RETURN"),
)


def ensure_rules(cidr: str) -> None:
    """The firewall rules for the pod range `cidr`, each once, first in its chain."""
    ipaddress.IPv4Network(cidr)
    for table, chain, target in RULES:
        rule = ["-s", cidr, "-d", cidr, "-m", "comment", "--comment", COMMENT, "-j", target]
        try:
            _run("iptables", "-w", "5", "-t", table, "-C", chain, *rule)
        except RoutingError:
            _run("iptables", "-w", "5", "-t", table, "-I", chain, "1", *rule)
            log.info("pod network: %s %s rule for %s", table, chain, cidr)
