"""The node's own check of a task's host access, on its host, before the task's container is made.

The API checked the spec against its settings; each node checks again against its own
(GORCHESTER_ALLOWED_HOST_PATHS, GORCHESTER_ALLOW_HOST_NETWORK) with the rules of shared/hostaccess.py,
after resolving every bind source and allow-list entry with realpath here: a symlink under an
allowed directory does not reach /etc. The container is made from the resolved paths, so the
engine mounts what was checked (a symlink swapped in between the check and the mount can still
move it; the check does not chase that race).
"""

from __future__ import annotations

import os

from shared.config import ServiceSpec, parse_volume
from shared.hostaccess import HostAccess, HostAccessRefused, network_refusal, path_refusal


def bind_sources(spec: ServiceSpec, access: HostAccess, node_id: str) -> dict[str, str]:
    """Each bind-mount source of `spec` -> its real path on this host.

    Raises HostAccessRefused, naming the field and this node's setting, for every host access of
    `spec` this node does not grant."""
    where = f"(on node {node_id})"
    allowed = tuple(os.path.realpath(entry) for entry in access.allowed_paths)
    resolved: dict[str, str] = {}
    problems = []
    for index, item in enumerate(spec.volumes):
        mount = parse_volume(item)
        if mount.named:
            continue
        real = os.path.realpath(mount.source)
        why = path_refusal(real, allowed, where)
        if why is not None:
            shown = mount.source if real == mount.source else f"{mount.source} (resolves to {real})"
            problems.append(f"volumes[{index}]: host path {shown} is not allowed; {why}")
        resolved[mount.source] = real
    network = network_refusal(spec, access, where)
    if network is not None:
        problems.append(f"{network[0]}: {network[1]}")
    if problems:
        raise HostAccessRefused(" | ".join(problems))
    return resolved
