"""container_args: every field of a ServiceSpec lands in the docker SDK create() arguments."""

from __future__ import annotations

from typing import Any

import pytest

from shared import labels
from shared.config import ServiceSpec
from shared.podnet import PodNetwork
from shared.records import TaskRecord
from worker.containers import container_args, named_volumes

TASK = TaskRecord(id="web.2", service="web", slot=2, gen=7, incarnation="5f3a9c1e2b4d0")


def spec(**fields: Any) -> ServiceSpec:
    return ServiceSpec.model_validate({"service_name": "web", "image": "nginx:alpine", "replicas": 1, **fields})


def args(service: ServiceSpec, task: TaskRecord = TASK, pod: PodNetwork | None = None) -> dict:
    return container_args(service, task, cluster="prod", node_id="node-1", node_address="10.0.0.5", pod=pod)


def test_image_name_hostname_and_detach() -> None:
    result = args(spec())
    assert result["image"] == "nginx:alpine"
    assert result["name"] == "prod.web.2.5f3a9c1e2b4d0.7"
    assert result["hostname"] == "web-2"
    assert result["detach"] is True


def test_command_kept_from_the_image_when_absent() -> None:
    assert args(spec())["command"] is None
    assert args(spec(command=["sh", "-c", "exit 3"]))["command"] == ["sh", "-c", "exit 3"]


def test_environment() -> None:
    assert args(spec())["environment"] == []
    assert args(spec(env=["A=1", "B=x=y"]))["environment"] == ["A=1", "B=x=y"]


def test_a_record_made_before_incarnations_keeps_the_old_name() -> None:
    assert args(spec(), TASK.model_copy(update={"incarnation": ""}))["name"] == "prod.web.2.7"


def test_labels_name_cluster_service_task_node_gen_and_incarnation() -> None:
    assert args(spec())["labels"] == {
        labels.CLUSTER: "prod",
        labels.SERVICE: "web",
        labels.TASK: "web.2",
        labels.NODE: "node-1",
        labels.GEN: "7",
        labels.INCARNATION: "5f3a9c1e2b4d0",
    }


def test_ports_bind_the_node_address_and_zero_lets_the_engine_pick() -> None:
    service = spec(
        ports=[
            {"container_port": 80, "host_port": 8080},
            {"container_port": 53, "protocol": "udp"},
        ]
    )
    assert args(service)["ports"] == {"80/tcp": ("10.0.0.5", 8080), "53/udp": ("10.0.0.5", None)}
    assert args(spec())["ports"] == {}


def test_volumes_named_and_bind_with_mode() -> None:
    service = spec(volumes=["data:/var/lib/data", "/srv/conf:/etc/conf:ro", "/srv/logs:/logs:rw", "/srv/conf:/again"])
    assert args(service)["volumes"] == [
        "data:/var/lib/data:rw",
        "/srv/conf:/etc/conf:ro",
        "/srv/logs:/logs:rw",
        "/srv/conf:/again:rw",  # one host path at two targets
    ]
    assert named_volumes(service) == ["data"]


def test_bind_mounts_use_the_sources_the_node_resolved() -> None:
    service = spec(volumes=["data:/data", "/srv/link:/conf:ro"])
    result = container_args(
        service, TASK, cluster="prod", node_id="node-1", node_address="10.0.0.5",
        bind_sources={"/srv/link": "/srv/real"},
    )
    assert result["volumes"] == ["data:/data:rw", "/srv/real:/conf:ro"]


def test_without_a_network_the_container_is_on_dockers_default_bridge() -> None:
    result = args(spec())
    assert result["network_mode"] == "bridge"
    assert "network" not in result and "networking_config" not in result
    assert spec().network_name() == "bridge"


def test_a_service_with_a_network_joins_the_clusters_network_and_asks_the_cluster_dns() -> None:
    pod = PodNetwork("netid123", "10.244.3.0/24")
    result = args(spec(network="backend", dns=["1.1.1.1"]), pod=pod)
    assert result["network"] == "netid123"  # by id: a name may be ambiguous
    assert result["dns"] == ["10.244.3.1", "1.1.1.1"]  # the cluster DNS at the bridge's gateway first
    assert result["dns_search"] == ["backend"]  # `web` is asked as `web.backend`
    assert "networking_config" not in result and "network_mode" not in result
    assert spec(network="backend").network_name() == "backend"
    with pytest.raises(ValueError, match="needs the cluster's network"):
        args(spec(network="backend"))


def test_host_and_none_network_modes() -> None:
    for mode in ("host", "none"):
        result = args(spec(network_mode=mode))
        assert result["network_mode"] == mode
        assert spec(network_mode=mode).network_name() == mode
        assert "network" not in result
        assert "networking_config" not in result


def test_dns_and_extra_hosts() -> None:
    result = args(spec(dns=["1.1.1.1", "8.8.8.8"], extra_hosts=["db:10.0.0.9", "gw:host-gateway", "v6:::1"]))
    assert result["dns"] == ["1.1.1.1", "8.8.8.8"]
    assert result["extra_hosts"] == {"db": "10.0.0.9", "gw": "host-gateway", "v6": "::1"}


def test_resources_become_cpu_quota_and_memory_limit() -> None:
    result = args(spec(resources={"cpu_millicores": 250, "memory_bytes": 64 * 1024 * 1024}))
    assert result["cpu_period"] == 100_000
    assert result["cpu_quota"] == 25_000
    assert result["mem_limit"] == result["memswap_limit"] == 64 * 1024 * 1024


def test_no_resources_means_no_limits() -> None:
    result = args(spec())
    assert not {"cpu_period", "cpu_quota", "mem_limit", "memswap_limit"} & result.keys()


def test_the_engine_never_restarts_containers() -> None:
    assert args(spec(restart_policy="always"))["restart_policy"] == {"Name": "no"}


