"""Service discovery, pure: a service's endpoints, and the cluster DNS's answer to a name.

One definition serves both `GET /v1/services/{name}/endpoints` (api/views.py) and the DNS each node
agent serves (worker/dns.py), so the two always agree: an endpoint is a ready replica (running, and
healthy when its service has a check), on the network of the spec it runs.

The DNS answers, for a service on a user-defined `network`, the names `<service>` and
`<service>.<network>` (case-insensitive) with the addresses of its endpoints on that network.
Scoping: a replica's container is known by its address, and gets answers only for services on its
own service's network; an asker no replica has (the host, a container outside the cluster's
networks) gets only the fully qualified `<service>.<network>` form. Anything else is not ours
(None): the DNS forwards it, as if the service did not exist for that asker. Services without a
`network` (Docker's default bridge) are not discoverable.
"""

from __future__ import annotations

import ipaddress
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeGuard

from shared.config import ServiceSpec
from shared.records import ServiceRecord, TaskRecord

MAX_NAME_LENGTH = 254  # a DNS name as text, with its final dot


@dataclass(frozen=True)
class Endpoint:
    """A ready replica of a service, and the spec it runs (the previous one during an update)."""

    task: TaskRecord
    spec: ServiceSpec


def service_endpoints(record: ServiceRecord, tasks: Iterable[TaskRecord]) -> list[Endpoint]:
    """The endpoints of a service by slot; `tasks` may be every task of the cluster."""
    own = sorted((task for task in tasks if task.service == record.name and task.ready()), key=lambda t: t.slot)
    return [Endpoint(task, record.spec_for(task.template)) for task in own]


def is_ipv4(address: str | None) -> TypeGuard[str]:
    """Whether a recorded container address can be answered in an A record (one written by hand
    may hold anything: it is then not answered)."""
    try:
        ipaddress.IPv4Address(address or "")
    except ValueError:
        return False
    return True


class Directory:
    """The cluster's names as its DNS answers them, indexed once per change of the records (a query
    is then a few dict lookups, however many tasks there are). Immutable once built."""

    def __init__(self, services: Iterable[ServiceRecord], tasks: Iterable[TaskRecord]) -> None:
        by_service: dict[str, list[TaskRecord]] = defaultdict(list)
        for task in tasks:
            by_service[task.service].append(task)
        # Service name -> network -> its endpoints' addresses there. A service on a network with no
        # endpoint is there too: its name is ours, answered with no address.
        self._names: dict[str, dict[str, list[str]]] = {}
        # Container address -> the networks the replica there may be on (several only when records
        # disagree, as a previous container's may, mid-update): where its own names are.
        self._askers: dict[str, frozenset[str]] = {}
        for record in services:
            own = by_service.get(record.name, [])
            networks: dict[str, list[str]] = {}
            if record.spec.network is not None:
                networks[record.spec.network] = []
            for endpoint in service_endpoints(record, own):
                network, address = endpoint.spec.network, endpoint.task.address
                if network is not None and is_ipv4(address):
                    networks.setdefault(network, []).append(address)
            if networks:
                self._names[record.name] = {network: list(dict.fromkeys(found)) for network, found in networks.items()}
            self._index_askers(record, own)

    def _index_askers(self, record: ServiceRecord, tasks: list[TaskRecord]) -> None:
        every_spec = {record.spec.network, record.previous_spec.network if record.previous_spec else None}
        for task in tasks:
            # A container may live while its task holds the node (a stopped task's address may since
            # have been given to another container); a start-first slot's previous one lives too.
            if task.address is not None and task.holds_node():
                self._asker(task.address, {record.spec_for(task.template).network})
            previous = task.previous
            if previous is not None and previous.address is not None:
                self._asker(previous.address, every_spec)  # which spec it ran is not recorded

    def _asker(self, address: str, networks: set[str | None]) -> None:
        named = frozenset(network for network in networks if network is not None)
        if named:
            self._askers[address] = self._askers.get(address, frozenset()) | named

    def answer(self, name: str, asker: str | None, rng: random.Random) -> list[str] | None:
        """The addresses to answer `name` with for a client at address `asker` (None: unknown), in
        an order `rng` shuffles (clients connect to the first: a new order per query spreads them);
        an empty list for a service of ours with no endpoint; None when the name is not ours."""
        if len(name) > MAX_NAME_LENGTH or not name.isascii():
            return None  # DNS names are case-insensitive in ASCII only
        service, dot, qualifier = name.lower().removesuffix(".").partition(".")
        networks = self._names.get(service)
        if networks is None:
            return None
        own = self._askers.get(asker, frozenset()) if asker is not None else frozenset()
        if dot:
            chosen = [network for network in networks if network.lower() == qualifier]
            if own:
                chosen = [network for network in chosen if network in own]
        else:
            chosen = [network for network in networks if network in own]
        if not chosen:
            return None
        addresses = [address for network in chosen for address in networks[network]]
        rng.shuffle(addresses)
        return addresses
