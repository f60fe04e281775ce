"""A service deleted and created again at once, with real containers: each record of a slot is an
incarnation of its own, in its containers' names and labels, so the new one never collides with, nor
adopts, the old one's containers; those go as strays.

Reproduced before: `Conflict ... container name already in use`, and 0 running under restart_policy no."""

from __future__ import annotations

import docker
import httpx

from shared import labels
from shared.records import TaskState
from shared.storage import Store
from tests.integration.test_end_to_end import cluster_api  # noqa: F401 - the fixture: API, scheduler, two agents
from tests.support.procs import TEST_IMAGE, wait_for

GRACEFUL = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]  # stops at once on SIGTERM
SPEC = {"service_name": "web", "image": TEST_IMAGE, "replicas": 3, "command": GRACEFUL, "restart_policy": "no"}


def containers(cluster: str) -> set[tuple[str, str, str]]:
    """The service's containers as (task, incarnation, gen), whatever their state."""
    selector = [f"{labels.CLUSTER}={cluster}", f"{labels.SERVICE}=web"]
    found = docker.from_env().containers.list(all=True, filters={"label": selector}, ignore_removed=True)
    return {(c.labels[labels.TASK], c.labels[labels.INCARNATION], c.labels[labels.GEN]) for c in found}


def create_when_allowed(api: str) -> None:
    """Create the service as soon as the old one is gone (409 `being deleted` until then)."""

    def created() -> bool:
        response = httpx.post(f"{api}/v1/services", json=SPEC, timeout=5)
        assert response.status_code in (201, 409), response.text
        return response.status_code == 201

    wait_for(created, interval=0.02, what="the service to be created again")


def running_tasks(store: Store) -> set[tuple[str, str, str]]:
    tasks = store.tasks()
    if len(tasks) != 3 or any(task.state is not TaskState.RUNNING for task in tasks):
        return set()
    return {(task.id, task.incarnation, str(task.gen)) for task in tasks}


def test_a_service_deleted_and_created_again_at_once_always_runs_its_replicas(
    cluster: str, cluster_api: str, store: Store  # noqa: F811 - the imported fixture
):
    api = cluster_api
    seen: set[str] = set()
    for _ in range(5):
        create_when_allowed(api)
        current = wait_for(lambda: running_tasks(store), timeout=60, what="3 running replicas")
        incarnations = {incarnation for _, incarnation, _ in current}
        assert not incarnations & seen  # every record of a slot is an incarnation of its own
        seen |= incarnations
        assert current <= containers(cluster)
        assert httpx.delete(f"{api}/v1/services/web", timeout=5).status_code == 202

    create_when_allowed(api)
    current = wait_for(lambda: running_tasks(store), timeout=60, what="3 running replicas")
    wait_for(lambda: containers(cluster) == current, what="no container of an old incarnation left")
    failures = [e["message"] for e in httpx.get(f"{api}/v1/events", timeout=5).json() if e["type"] == "task_failed"]
    assert failures == []
