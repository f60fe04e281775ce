"""What of its host a service may use: bind mounts of host paths and the host's network.

As Nomad's Docker driver ships: nothing of the host unless the operator allows it. The API checks
each spec that enters (create, replace, apply) against its own settings; each node agent checks
again against its own, with the paths resolved on its host (worker/host_access.py), before it
creates a container. Pure: paths are compared as given; the caller resolves them.

A bind source S is allowed when an entry E of the allow-list (GORCHESTER_ALLOWED_HOST_PATHS):
- equals S: the operator named that very path, protected or not; or
- lies above S, and no protected path P below E is related to S (S inside or equal to P, or P
  inside S). So `/` grants /srv/data but neither /etc/shadow (inside /etc) nor /var (it holds
  /var/run/docker.sock); `/run` grants /run/user but not /run/docker.sock.
Named volumes are always allowed. `network_mode: host` (or `network: host`, Docker's host network)
needs GORCHESTER_ALLOW_HOST_NETWORK.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.config import Config, ConfigError, NetworkMode, ServiceSpec, parse_volume

PATHS_SETTING = "GORCHESTER_ALLOWED_HOST_PATHS"
NETWORK_SETTING = "GORCHESTER_ALLOW_HOST_NETWORK"
ON_EVERY_PROCESS = "(on the API and on each node agent)"
HOST_NETWORK = "host"  # Docker's built-in network of the host, by name

# Granted only by naming them (or a path inside them) exactly: each one, or a path holding one, is
# root on the host for a container (engine and runtime sockets, kernel interfaces, devices, system
# configuration and binaries, root's home and crontab, the engine's own storage).
PROTECTED_PATHS = (
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/proc",
    "/root",
    "/run",
    "/run/containerd",
    "/run/docker.sock",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lib/containerd",
    "/var/lib/docker",
    "/var/run",
    "/var/run/docker.sock",
    "/var/spool/cron",
)


class HostAccessRefused(Exception):
    """A spec asks for host access this process's settings do not grant; the message says which setting."""


@dataclass(frozen=True)
class HostAccess:
    """The operator's grant: host paths that may be bind-mounted, and whether host networking is allowed."""

    allowed_paths: tuple[str, ...] = ()
    host_network: bool = False


def normal_path(text: str) -> str:
    """An absolute path without empty or '.' parts (`//srv/./data/` is /srv/data); '..' is left to the caller."""
    return "/" + "/".join(part for part in text.split("/") if part not in ("", "."))


def is_within(path: str, ancestor: str) -> bool:
    """`path` is `ancestor` or lies below it (both normal)."""
    return path == ancestor or ancestor == "/" or path.startswith(ancestor + "/")


def path_refusal(source: str, allowed: Sequence[str], where: str = ON_EVERY_PROCESS) -> str | None:
    """None when the bind source `source` is granted by `allowed`; else why not, naming the setting."""
    if source in allowed:
        return None
    broader = [entry for entry in allowed if is_within(source, entry)]
    if not broader:
        return f"bind mounts need {PATHS_SETTING} {where} to name it"
    if any(not _protected_below(entry, source) for entry in broader):
        return None
    related = _protected_below(max(broader, key=len), source)
    if source in related:
        relation = "is protected"
    else:
        inside = [path for path in related if is_within(source, path)]
        relation = f"is inside protected {max(inside, key=len)}" if inside else f"contains protected {related[0]}"
    return f"it {relation}, so {PATHS_SETTING} {where} must name it exactly"


def _protected_below(entry: str, source: str) -> list[str]:
    """The protected paths strictly below `entry` that `source` is inside of or holds."""
    return [
        path
        for path in PROTECTED_PATHS
        if path != entry and is_within(path, entry) and (is_within(source, path) or is_within(path, source))
    ]


def network_refusal(spec: ServiceSpec, access: HostAccess, where: str = ON_EVERY_PROCESS) -> tuple[str, str] | None:
    """(field, reason) when `spec` asks for the host's network and `access` does not grant it."""
    if access.host_network:
        return None
    need = f"host networking needs {NETWORK_SETTING}=true {where}"
    if spec.network_mode is NetworkMode.HOST:
        return "network_mode", f"host is not allowed; {need}"
    if spec.network == HOST_NETWORK:
        return "network", f"host is the host's own network and is not allowed; {need}"
    return None


def refusals(spec: ServiceSpec, access: HostAccess, prefix: str = "") -> list[str]:
    """One `field: reason` line per host access of `spec` that `access` does not grant (as the API sees it)."""
    lines = []
    for index, item in enumerate(spec.volumes):
        mount = parse_volume(item)
        why = None if mount.named else path_refusal(mount.source, access.allowed_paths)
        if why is not None:
            lines.append(f"{prefix}volumes[{index}]: host path {mount.source} is not allowed; {why}")
    network = network_refusal(spec, access)
    if network is not None:
        lines.append(f"{prefix}{network[0]}: {network[1]}")
    return lines


def check_service(spec: ServiceSpec, access: HostAccess) -> None:
    """Raise ConfigError (422) listing every host access of one service that is not granted."""
    lines = refusals(spec, access)
    if lines:
        raise ConfigError(lines)


def check_config(config: Config, access: HostAccess) -> None:
    """Raise ConfigError (422) listing every host access of every service of `config` that is not granted."""
    lines = [
        line for index, spec in enumerate(config.services) for line in refusals(spec, access, f"services[{index}].")
    ]
    if lines:
        raise ConfigError(lines)
