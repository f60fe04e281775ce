"""`gorchester validate`: check a config without starting anything, and show what it declares."""

from __future__ import annotations

import argparse

from cli.configfile import read_config
from shared.config import Config, ServiceSpec


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check a config file and summarise it",
        description="Exit 0 with a summary when valid, 1 listing every error, 2 when unreadable.",
    )
    parser.add_argument("-f", "--config", required=True, metavar="FILE", help="the config.yaml to check")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config, _ = read_config(args.config)
    print(summary(config))
    return 0


def summary(config: Config) -> str:
    lines = [
        f"cluster {config.cluster_name}: valid (env {config.env}, listen_addr {config.listen_addr}, "
        f"data_dir {config.data_dir})",
        f"{len(config.services)} service{'s' if len(config.services) != 1 else ''}:",
    ]
    lines += [f"  {describe(service)}" for service in config.services]
    return "\n".join(lines)


def describe(service: ServiceSpec) -> str:
    ports = ", ".join(
        f"{port.host_port or 'any'}->{port.container_port}/{port.protocol.value}" for port in service.ports
    )
    limits = service.resources
    if limits:
        resources = f"cpu {limits.cpu_millicores}m, memory {mebibytes(limits.memory_bytes)}"
    else:
        resources = "no resource requests"
    return (
        f"{service.service_name}: image {service.image}, "
        f"{'one replica per node (global)' if service.is_global else f'replicas {service.replicas}'}, "
        f"ports {ports or 'none'}, {resources}"
    )


def mebibytes(count: int) -> str:
    return f"{count / 2**20:g}Mi" if count % 2**20 == 0 else f"{count}B"
