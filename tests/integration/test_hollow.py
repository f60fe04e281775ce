"""Hollow nodes (worker/hollow.py) run a service to running through the real scheduler and Redis."""

from __future__ import annotations

import sys
import time

from shared.config import validate_service
from shared.records import TaskState
from shared.storage import Store
from tests.support.procs import Processes, wait_for


def test_hollow_nodes_run_a_service_through_the_real_scheduler(procs: Processes, store: Store):
    procs.scheduler()
    procs.start("hollow", [sys.executable, "-m", "worker.hollow", "--prefix", "h-", "--nodes", "3"])
    wait_for(lambda: sorted(n.id for n in store.nodes()) == ["h-0", "h-1", "h-2"], what="3 hollow nodes")
    spec = validate_service({"service_name": "web", "image": "img", "replicas": 7, "ports": [{"container_port": 80}]})
    store.create_service(spec, time.time())

    def running() -> list:
        tasks = store.tasks()
        return tasks if len(tasks) == 7 and all(t.state is TaskState.RUNNING for t in tasks) else []

    tasks = wait_for(running, timeout=30, what="7 running replicas on hollow nodes")
    assert sorted(sum(1 for t in tasks if t.node == n) for n in ("h-0", "h-1", "h-2")) == [2, 2, 3]
    assert all(t.container_id and t.ports and t.ports[0].container_port == 80 for t in tasks)

    # Scaling down sends stop decisions (batched per node) that the hollow agents carry out.
    store.update_service(spec.model_copy(update={"replicas": 2}), time.time())
    wait_for(lambda: len(store.tasks()) == 2, timeout=30, what="the replicas over 2 to be gone")
    assert "Traceback" not in procs.log("hollow")
