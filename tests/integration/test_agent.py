"""The node agent on real parts: an `rq worker` process, a real redis-server and the Docker engine.

The test plays the scheduler: it writes service and task records and enqueues jobs as
shared/dispatch.py does, then watches what the agent makes of them.
"""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Any

import docker
import pytest
from rq.job import Job as RQJob

from shared import labels
from shared.config import ServiceSpec
from shared.dispatch import Action, Decision, enqueue
from shared.podnet import gateway as subnet_gateway
from shared.podnet import network_name
from shared.records import PreviousContainer, TaskRecord, TaskState, host_port_keys, template_hash
from shared.storage import Store
from shared.storage.connection import connect
from tests.support.procs import TEST_IMAGE, VENV_BIN, Processes, free_port, wait_for
from tests.support.tasks import seed
from worker.engine import Engine

NODE = "node-a"
ADDRESS = "127.0.0.2"
MIB = 1024 * 1024


@pytest.fixture
def agent(procs: Processes, store: Store) -> Processes:
    procs.agent(NODE, ADDRESS, cpu=2000, memory=2048 * MIB)
    wait_for(lambda: store.node(NODE), what="the agent to register")
    return procs


class Scheduler:
    """Just enough of the scheduler's writes for the agent to act on."""

    def __init__(self, store: Store, redis_url: str):
        self.store = store
        self.rq = connect(redis_url, decode=False)

    def start(self, spec: ServiceSpec, slot: int = 1, gen: int = 1, **fields: Any) -> str:
        if spec.service_name not in self.store.services():
            self.store.create_service(spec, time.time())
        task = TaskRecord(
            id=f"{spec.service_name}.{slot}",
            service=spec.service_name,
            slot=slot,
            gen=gen,
            node=NODE,
            state=TaskState.ASSIGNED,
            template=template_hash(spec),
            cpu_millicores=spec.cpu_request(),
            memory_bytes=spec.memory_request(),
            host_ports=host_port_keys(spec),
            created_at=time.time(),
            assigned_at=time.time(),
            **fields,
        )
        seed(self.store, [task])
        self.send(Action.START, task.id, gen, task.incarnation)
        return task.id

    def send(self, action: Action, task_id: str, gen: int, incarnation: str = "") -> None:
        """A decision about the record of `incarnation` ("" as the records here are made)."""
        enqueue(self.rq, self.store._keys, [Decision(NODE, action, task_id, gen, incarnation)])

    def wait_state(self, task_id: str, *states: TaskState, timeout: float = 30) -> TaskRecord:
        return wait_for(
            lambda: (task := self.store.task(task_id)).state in states and task,
            timeout=timeout,
            what=f"{task_id} to be {'/'.join(states)}",
        )


@pytest.fixture
def scheduler(store: Store, redis_server: Any, agent: Processes) -> Scheduler:
    return Scheduler(store, redis_server.url)


def service(name: str = "web", **fields: Any) -> ServiceSpec:
    return ServiceSpec.model_validate({"service_name": name, "image": TEST_IMAGE, "replicas": 1, **fields})


def task_containers(cluster: str, task_id: str) -> list:
    selector = [f"{labels.CLUSTER}={cluster}", f"{labels.TASK}={task_id}"]
    return docker.from_env().containers.list(all=True, filters={"label": selector})


def test_registers_heartbeats_and_stops_beating_when_killed(agent: Processes, store: Store):
    node = store.node(NODE)
    assert (node.address, node.cpu_millicores, node.memory_bytes) == (ADDRESS, 2000, 2048 * MIB)
    first = node.last_heartbeat
    wait_for(lambda: store.node(NODE).last_heartbeat > first, what="a heartbeat")
    assert [e["data"]["node"] for e in store.events() if e["type"] == "node_added"] == [NODE]

    agent.kill(NODE)
    wait_for(lambda: time.time() - store.node(NODE).last_heartbeat > 2.0, what="heartbeats to stop")


@pytest.mark.parametrize(
    ("command", "extra"),
    [(["rq", "worker"], {"RQ_WORKER_CLASS": "worker.agent.NodeAgent"}),  # the design card's, literally
     (["gorchester", "agent"], {})],
)
def test_the_agent_commands_run_the_node_agent(
    procs: Processes, store: Store, command: list[str], extra: dict[str, str]
) -> None:
    """Both commands register and beat, and leave on SIGTERM (after the job at hand) with exit 0."""
    proc = procs.start("agent", [str(VENV_BIN / command[0]), *command[1:], NODE],
                       {"GORCHESTER_NODE_ADDRESS": ADDRESS, **extra})
    wait_for(lambda: store.node(NODE), what="the agent to register")
    first = store.node(NODE).last_heartbeat
    wait_for(lambda: store.node(NODE).last_heartbeat > first, what="a heartbeat")
    listening = {store._client.hget(worker, "queues") for worker in store._client.smembers("rq:workers")}
    assert store._keys.queue(NODE) in listening  # the cluster's queue of that node, not a queue named node-a
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, procs.log("agent")[-800:]


def pod_gateway(store: Store, node: str) -> str:
    """The gateway of the pod subnet the control plane gave `node`'s engine: its cluster DNS."""
    return subnet_gateway(store.subnets()[store.node(node).engine_id or ""])


def test_start_makes_the_container_the_spec_describes(scheduler: Scheduler, store: Store, cluster: str):
    fixed = free_port(ADDRESS)
    spec = service(
        env=["GREETING=hello", "MODE=test"],
        command=["httpd", "-f", "-p", "80", "-h", "/www"],
        ports=[{"container_port": 80}, {"container_port": 81, "host_port": fixed}],
        network="app",  # a discovery domain on the cluster's own network (removed with its objects)
        resources={"cpu_millicores": 250, "memory_bytes": 64 * MIB},
    )
    task = scheduler.wait_state(scheduler.start(spec), TaskState.RUNNING)

    [container] = task_containers(cluster, task.id)
    assert task.container_id == container.id
    attrs = container.attrs
    assert container.name == f"{cluster}.web.1.1"
    assert {"GREETING=hello", "MODE=test"} <= set(attrs["Config"]["Env"])
    assert attrs["Config"]["Cmd"] == ["httpd", "-f", "-p", "80", "-h", "/www"]
    assert attrs["Config"]["Hostname"] == "web-1"
    assert attrs["HostConfig"]["Memory"] == 64 * MIB
    assert (attrs["HostConfig"]["CpuPeriod"], attrs["HostConfig"]["CpuQuota"]) == (100_000, 25_000)
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert container.labels[labels.NODE] == NODE
    assert container.labels[labels.GEN] == "1"
    assert container.labels[labels.SERVICE] == "web"
    [network] = attrs["NetworkSettings"]["Networks"]
    assert network == network_name(cluster)  # the cluster's pod network, named by the cluster alone
    assert attrs["HostConfig"]["Dns"][:1] == [pod_gateway(store, NODE)]  # the cluster DNS first
    assert attrs["HostConfig"]["DnsSearch"] == ["app"]

    ports = {port.container_port: port for port in task.ports}
    assert ports[81].host_ip == ADDRESS and ports[81].host_port == fixed
    assert ports[80].host_ip == ADDRESS and ports[80].host_port not in (0, fixed)
    bound = attrs["NetworkSettings"]["Ports"]["80/tcp"][0]
    assert (bound["HostIp"], int(bound["HostPort"])) == (ADDRESS, ports[80].host_port)


def test_running_wakes_the_scheduler_only_when_it_waits_for_that_replica(scheduler: Scheduler, store: Store):
    """A pass per RUNNING report was most of the control plane's work at scale; only a replica that
    releases a previous container, or one of a service being updated, is worth one."""
    pubsub = store._client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(store._keys.changes)

    def started(spec: ServiceSpec, slot: int, **fields: Any) -> list[str]:
        """The agent's notifications while it starts this replica (its job done, so all of them)."""
        task_id = scheduler.start(spec, slot, **fields)
        job_id = store._keys.job_id(Action.START.value, task_id, 1, "")
        wait_for(lambda: not RQJob.exists(job_id, connection=scheduler.rq), what=f"the start job of {task_id} to end")
        store.notify("marker")
        seen: list[str] = []
        wait_for(lambda: (m := pubsub.get_message(timeout=0.1)) and seen.append(m["data"]) or "marker" in seen,
                 what="the marker")
        assert store.task(task_id).state is TaskState.RUNNING
        return [hint for hint in seen if hint == f"node:{NODE}"]

    try:
        sleeper = service(command=["sleep", "3600"])
        assert started(sleeper, 1) == []
        assert len(started(sleeper, 2, previous=PreviousContainer(node=NODE, gen=0))) == 1
        store.update_service(sleeper.model_copy(update={"env": ["V=2"]}), time.time())
        assert store.service("web").updating
        assert len(started(sleeper, 3)) == 1
    finally:
        pubsub.close()


@pytest.mark.parametrize("tasks", [None, {"web.1", "web.2"}])
def test_a_container_removed_while_the_engine_lists_is_skipped(
    cluster: str, docker_cleanup: None, tasks: set[str] | None
):
    """A stop job removing a container while a start batch lists the node's containers failed the
    whole batch (the SDK inspects each listed container, and one was gone): seen in CI."""
    engine = Engine.from_env(cluster, NODE)
    made = [
        engine.client.containers.create(
            TEST_IMAGE, ["sleep", "1"], labels={labels.CLUSTER: cluster, labels.NODE: NODE, labels.TASK: f"web.{slot}"}
        )
        for slot in (1, 2)
    ]
    listing = engine.client.api.containers

    def list_then_remove_one(*args: Any, **kwargs: Any) -> Any:
        found = listing(*args, **kwargs)
        made[0].remove(force=True)  # gone before the SDK inspects what was listed
        return found

    engine.client.api.containers = list_then_remove_one
    assert [container.id for container in engine.containers(tasks)] == [made[1].id]


def test_a_batch_inspects_only_its_own_containers(cluster: str, docker_cleanup: None):
    """A start batch looks for its tasks' containers among the node's: one listing, and an inspect only
    of those it is about (a node running many replicas is not inspected one by one)."""
    engine = Engine.from_env(cluster, NODE)
    made = {
        slot: engine.client.containers.create(
            TEST_IMAGE, ["sleep", "1"], labels={labels.CLUSTER: cluster, labels.NODE: NODE, labels.TASK: f"web.{slot}"}
        )
        for slot in (1, 2, 3)
    }
    inspected: list[str] = []
    inspect = engine.client.api.inspect_container

    def counted(container: str) -> Any:
        inspected.append(container)
        return inspect(container)

    engine.client.api.inspect_container = counted
    assert [container.id for container in engine.containers({"web.2", "web.9"})] == [made[2].id]
    assert inspected == [made[2].id]


def test_the_same_job_twice_makes_one_container(scheduler: Scheduler, store: Store, cluster: str):
    task_id = scheduler.start(service())
    scheduler.send(Action.START, task_id, 1)
    scheduler.wait_state(task_id, TaskState.RUNNING)
    # Jobs run in order: once a later task runs, both copies of the first job have been handled.
    scheduler.wait_state(scheduler.start(service(), slot=2), TaskState.RUNNING)
    assert len(task_containers(cluster, task_id)) == 1
    assert store.task(task_id).state is TaskState.RUNNING


def test_a_missing_image_fails_with_a_reason_naming_it(scheduler: Scheduler):
    image = "gorchester/no-such-image:1"
    task = scheduler.wait_state(scheduler.start(service(image=image)), TaskState.FAILED)
    assert task.reason is not None and task.reason.startswith("image pull failed") and image in task.reason
    assert task.finished_at is not None


def test_a_container_removed_by_hand_fails_its_task(scheduler: Scheduler, cluster: str):
    task = scheduler.wait_state(scheduler.start(service()), TaskState.RUNNING)
    subprocess.run(["docker", "rm", "-f", task.container_id], check=True, capture_output=True)
    failed = scheduler.wait_state(task.id, TaskState.FAILED)
    assert failed.reason == "container removed"


def test_an_exit_becomes_failed_with_its_code(scheduler: Scheduler):
    task_id = scheduler.start(service(command=["sh", "-c", "exit 3"]))
    task = scheduler.wait_state(task_id, TaskState.FAILED)
    assert (task.exit_code, task.reason) == (3, "exited with code 3")


def test_a_clean_exit_becomes_stopped(scheduler: Scheduler):
    task = scheduler.wait_state(scheduler.start(service(command=["true"])), TaskState.STOPPED)
    assert (task.exit_code, task.reason) == (0, "exited with code 0")


def test_a_stop_job_removes_the_container_and_reports_it(scheduler: Scheduler, store: Store, cluster: str):
    task = scheduler.wait_state(scheduler.start(service()), TaskState.RUNNING)
    shutdown = task.model_copy(update={"gen": 2, "state": TaskState.SHUTDOWN})
    seed(store, [shutdown])
    scheduler.send(Action.STOP, task.id, 2)
    # Reported gone (the scheduler then drops the record: tests/unit/test_reconcile.py).
    wait_for(lambda: store.task(task.id).removed, what="the containers to be reported gone")
    assert task_containers(cluster, task.id) == []


def test_a_stale_start_job_does_nothing(scheduler: Scheduler, store: Store, cluster: str):
    task_id = scheduler.start(service(), gen=2)
    scheduler.wait_state(task_id, TaskState.RUNNING)
    scheduler.send(Action.START, task_id, 1)
    scheduler.wait_state(scheduler.start(service(), slot=2), TaskState.RUNNING)
    assert [c.labels[labels.GEN] for c in task_containers(cluster, task_id)] == ["2"]


def test_a_restarted_agent_sweeps_what_changed_while_it_was_down(
    agent: Processes, scheduler: Scheduler, store: Store, cluster: str
):
    removed = scheduler.wait_state(scheduler.start(service()), TaskState.RUNNING)
    orphan = scheduler.wait_state(scheduler.start(service(), slot=2), TaskState.RUNNING)
    agent.kill(NODE)
    subprocess.run(["docker", "rm", "-f", removed.container_id], check=True, capture_output=True)
    store.write_assignments([(orphan.id, None, orphan)])

    agent.agent(NODE, ADDRESS, cpu=2000, memory=2048 * MIB)
    assert scheduler.wait_state(removed.id, TaskState.FAILED).reason == "container removed"
    wait_for(lambda: task_containers(cluster, orphan.id) == [], what="the orphaned container to go")


def test_a_rerun_start_job_adopts_the_container_it_made(
    agent: Processes, scheduler: Scheduler, store: Store, cluster: str
):
    task = scheduler.wait_state(scheduler.start(service()), TaskState.RUNNING)
    agent.kill(NODE)
    # As if the agent died after starting the container but before reporting RUNNING.
    seed(store, [task.model_copy(update={"state": TaskState.STARTING})])

    agent.agent(NODE, ADDRESS, cpu=2000, memory=2048 * MIB)
    scheduler.send(Action.START, task.id, 1)
    adopted = scheduler.wait_state(task.id, TaskState.RUNNING)
    assert adopted.container_id == task.container_id
    assert [c.id for c in task_containers(cluster, task.id)] == [task.container_id]


def test_an_oom_kill_is_reported_as_such(scheduler: Scheduler):
    hog = service(
        command=["sh", "-c", "x=$(yes | head -c 200000000)"],
        resources={"cpu_millicores": 100, "memory_bytes": 16 * MIB},
    )
    task = scheduler.wait_state(scheduler.start(hog), TaskState.FAILED, timeout=60)
    assert (task.reason, task.exit_code) == ("OOM killed", 137)


def test_a_container_of_another_record_of_the_slot_is_never_adopted_and_goes(
    scheduler: Scheduler, store: Store, cluster: str
):
    """The service deleted and made again: its slot's new record starts again at gen 1, and the old
    record's gen-1 container (its stop lost, say) must not be taken for the new one's."""
    old = scheduler.wait_state(scheduler.start(service(), incarnation="0ld"), TaskState.RUNNING)
    store.write_assignments([(old.id, None, old)])  # the record goes, its container stays
    new = scheduler.wait_state(scheduler.start(service(), incarnation="e1"), TaskState.RUNNING)
    assert new.container_id != old.container_id
    [container] = task_containers(cluster, new.id)
    assert (container.id, container.labels[labels.INCARNATION]) == (new.container_id, "e1")
    assert container.name == f"{cluster}.web.1.e1.1"


def test_the_sweep_never_removes_a_container_only_because_its_record_cannot_be_read(
    agent: Processes, scheduler: Scheduler, store: Store, cluster: str
):
    unreadable = scheduler.wait_state(scheduler.start(service()), TaskState.RUNNING)
    stray = scheduler.wait_state(scheduler.start(service(), slot=2), TaskState.RUNNING)
    agent.kill(NODE)
    store._client.hset(store._keys.assignments, unreadable.id, "\x00garbage")
    store.write_assignments([(stray.id, None, stray)])

    agent.agent(NODE, ADDRESS, cpu=2000, memory=2048 * MIB)  # its first sweep runs as it starts
    wait_for(lambda: task_containers(cluster, stray.id) == [], what="the sweep to remove the stray")
    assert [c.id for c in task_containers(cluster, unreadable.id)] == [unreadable.container_id]
    scheduler.wait_state(scheduler.start(service(), slot=3), TaskState.RUNNING)  # and the agent carries on
