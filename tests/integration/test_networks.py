"""A service's network on an engine that several agents share, and replicas whose container never ran.

Reproduced before: two agents of one engine both made a new network at the same moment, Docker kept
both, every start on either was refused as `ambiguous`, and under restart_policy no the replicas
stayed failed for ever."""

from __future__ import annotations

import contextlib

import docker
import httpx

from shared import labels
from shared.podnet import network_name
from shared.records import TaskState
from shared.storage import Store
from tests.integration.test_end_to_end import cluster_api  # noqa: F401 - the fixture: API, scheduler, two agents
from tests.support.procs import TEST_IMAGE, wait_for

GRACEFUL = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]  # stops at once on SIGTERM


def service(name: str, replicas: int, **fields: object) -> dict[str, object]:
    return {"service_name": name, "image": TEST_IMAGE, "replicas": replicas, "command": GRACEFUL,
            "restart_policy": "no", **fields}


def networks_named(name: str) -> list[str]:
    return [n.id for n in docker.from_env().networks.list(names=[name]) if n.name == name]


def all_running(store: Store, service_name: str, replicas: int) -> bool:
    tasks = [task for task in store.tasks() if task.service == service_name]
    return len(tasks) == replicas and all(task.state is TaskState.RUNNING for task in tasks)


def test_a_new_network_is_made_once_by_two_agents_of_one_engine_and_every_replica_runs(
    cluster: str, cluster_api: str, store: Store  # noqa: F811 - the imported fixture
):
    api = cluster_api
    network = network_name(cluster)  # the cluster's network, which every service with a `network` joins
    for round_ in range(1, 5):
        name = f"web{round_}"
        # Eight replicas over two agents: both get their batch in the same pass and make the network at once.
        response = httpx.post(f"{api}/v1/services", json=service(name, 8, network="app"), timeout=5)
        assert response.status_code == 201, response.text
        wait_for(lambda name=name: all_running(store, name, 8), timeout=90, what=f"8 replicas of {name} running")
        assert len(networks_named(network)) == 1
        failed = [e["message"] for e in httpx.get(f"{api}/v1/events", params={"service": name}, timeout=5).json()
                  if e["type"] == "task_failed"]
        assert failed == []
        assert httpx.delete(f"{api}/v1/services/{name}", timeout=5).status_code == 202
        # Gone with its replicas, so the next round's agents race to make it anew.
        wait_for(lambda name=name: not containers_of(cluster, name), timeout=60, what=f"{name}'s containers gone")
        for net in docker.from_env().networks.list(names=[network]):
            net.remove()


def test_a_network_found_twice_is_repaired_and_the_replicas_run(
    cluster: str, cluster_api: str, store: Store  # noqa: F811 - the imported fixture
):
    network = network_name(cluster)
    client = docker.from_env()
    for _ in range(2):  # as two agents racing before the lock would have left it
        client.networks.create(network, driver="bridge", labels={labels.CLUSTER: cluster})
    assert len(networks_named(network)) == 2
    response = httpx.post(f"{cluster_api}/v1/services", json=service("web", 4, network="app"), timeout=5)
    assert response.status_code == 201, response.text
    wait_for(lambda: all_running(store, "web", 4), timeout=60, what="4 replicas running")
    assert len(networks_named(network)) == 1


def containers_of(cluster: str, service_name: str) -> list:
    selector = [f"{labels.CLUSTER}={cluster}", f"{labels.SERVICE}={service_name}"]
    return docker.from_env().containers.list(all=True, filters={"label": selector}, ignore_removed=True)


def test_a_replica_whose_container_never_ran_is_retried_whatever_the_restart_policy(
    cluster: str, cluster_api: str, store: Store  # noqa: F811 - the imported fixture
):
    image = f"gorchester/{cluster}:missing"  # no registry here: the pull fails, the container is never made
    response = httpx.post(f"{cluster_api}/v1/services", json=service("web", 1, image=image), timeout=5)
    assert response.status_code == 201, response.text

    def retried() -> bool:
        [task] = store.tasks() or [None]
        return task is not None and task.restarts >= 2

    wait_for(retried, timeout=60, what="the replica retried twice under restart_policy no")
    task = store.task("web.1")
    assert task.state is not TaskState.RUNNING
    failed = [e for e in httpx.get(f"{cluster_api}/v1/events", params={"service": "web"}, timeout=5).json()
              if e["type"] == "task_failed"]
    assert failed and all("image pull failed" in e["message"] for e in failed)
    client = docker.from_env()
    client.images.get(TEST_IMAGE).tag(image)  # the image appears (as after a registry comes back)
    try:
        wait_for(lambda: all_running(store, "web", 1), timeout=60, what="the replica running once its image exists")
        assert store.task("web.1").reason is None
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(image)
