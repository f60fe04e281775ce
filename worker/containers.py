"""How a task becomes a container: the docker SDK `containers.create` arguments, as a pure function.

Kept free of any engine call so every field can be unit-tested, and so the agent's adoption logic
can trust that one (task, gen) always maps to one name and one set of labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared import labels
from shared.config import NetworkMode, ServiceSpec, parse_volume
from shared.podnet import PodNetwork
from shared.records import TaskRecord, container_name

CPU_PERIOD = 100_000  # microseconds; with quota = millicores * 100, 1000 millicores is one full CPU


def container_args(
    spec: ServiceSpec,
    task: TaskRecord,
    *,
    cluster: str,
    node_id: str,
    node_address: str,
    pod: PodNetwork | None = None,
    bind_sources: Mapping[str, str] | None = None,
) -> dict:
    """Keyword arguments for `client.containers.create(**kwargs)` for this task at its gen.

    A service with a `network` joins the cluster's network on this engine (`pod`, shared/podnet.py;
    named by id: Docker allows two networks of one name and then refuses the name as ambiguous), and
    resolves names through the cluster DNS at the network's gateway (worker/dns.py), its `network`
    as its search domain: `web` asks for `web.<network>`, the cluster DNS's name for the service.
    `bind_sources` maps a bind mount's source to the path the node checked (worker/host_access.py:
    symlinks resolved); the engine mounts that path.
    """
    args: dict[str, Any] = {
        "image": spec.image,
        "command": spec.command,  # None keeps the image's CMD
        "environment": list(spec.env),
        "name": container_name(cluster, task.id, task.gen, task.incarnation),
        "hostname": task.id.replace(".", "-"),
        "labels": {
            labels.CLUSTER: cluster,
            labels.SERVICE: spec.service_name,
            labels.TASK: task.id,
            labels.NODE: node_id,
            labels.GEN: str(task.gen),
            labels.INCARNATION: task.incarnation,
        },
        "ports": {
            # Publish on the node's own address only; host port None lets the engine pick one.
            f"{port.container_port}/{port.protocol.value}": (node_address, port.host_port or None)
            for port in spec.ports
        },
        # A list, not the SDK's dict keyed by source: one host path may be mounted at two targets.
        "volumes": [
            f"{(bind_sources or {}).get(mount.source, mount.source)}:{mount.target}:{'ro' if mount.read_only else 'rw'}"
            for mount in map(parse_volume, spec.volumes)
        ],
        "dns": list(spec.dns),
        "extra_hosts": dict(item.split(":", 1) for item in spec.extra_hosts),
        # The scheduler applies the restart policy (with back-off and rescheduling), never the engine.
        "restart_policy": {"Name": "no"},
        "detach": True,
    }
    if spec.network is not None:
        if pod is None:
            raise ValueError(f"{spec.service_name}: a service with a network needs the cluster's network")
        args["network"] = pod.id
        args["dns"] = [pod.gateway, *spec.dns]  # the user's servers after the cluster's
        args["dns_search"] = [spec.network]
    else:
        args["network_mode"] = NetworkMode(spec.network_mode).value
    if spec.resources is not None:
        args["cpu_period"] = CPU_PERIOD
        args["cpu_quota"] = spec.resources.cpu_millicores * CPU_PERIOD // 1000
        args["mem_limit"] = spec.resources.memory_bytes
        # No swap on top: the scheduler placed memory_bytes, so that is all the task may use.
        args["memswap_limit"] = spec.resources.memory_bytes
    return args


def named_volumes(spec: ServiceSpec) -> list[str]:
    """The named volumes (not bind mounts) the task needs to exist before its container is created."""
    return [mount.source for mount in map(parse_volume, spec.volumes) if mount.named]
