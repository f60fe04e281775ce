"""Self-healing under real failures: agents SIGKILLed, containers killed behind the agent's back,
Redis stopped and restarted, nodes drained, replicas crash-looping. Every failure here really happens."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime

import docker
import httpx
import pytest

from shared import labels
from tests.conftest import RedisServer
from tests.integration.test_end_to_end import containers, service, tasks, wait_running
from tests.support.procs import Processes, free_port, wait_for

MIB = 1024 * 1024
SLEEPER = ["sleep", "3600"]
# Exits at once on SIGTERM (busybox sleep as PID 1 ignores it), so stopping it takes no grace period.
GRACEFUL = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
NODES = {"node-1": "127.0.0.2", "node-2": "127.0.0.3"}


def start_agent(procs: Processes, node: str) -> None:
    procs.agent(node, NODES[node], cpu=4000, memory=4096 * MIB)


def node_status(api: str) -> dict[str, str]:
    return {n["id"]: n["status"] for n in httpx.get(f"{api}/v1/nodes", timeout=5).json()}


def event_types(api: str, **params: str) -> list[str]:
    return [e["type"] for e in httpx.get(f"{api}/v1/events", params=params, timeout=5).json()]


def create(api: str, spec: dict) -> None:
    response = httpx.post(f"{api}/v1/services", json=spec, timeout=5)
    assert response.status_code == 201, response.text


def task(api: str, task_id: str) -> dict:
    return httpx.get(f"{api}/v1/tasks/{task_id}", timeout=5).json()


def owned_containers(cluster: str, service_name: str) -> Counter:
    """Running containers of a service by (task, gen): each must be 1, and match a task."""
    return Counter((c.labels[labels.TASK], int(c.labels[labels.GEN])) for c in containers(cluster, service_name))


def assert_one_container_per_task(api: str, cluster: str, service_name: str) -> None:
    expected = Counter((t["id"], t["gen"]) for t in tasks(api, service_name))
    wait_for(lambda: owned_containers(cluster, service_name) == expected, what=f"one container per {service_name} task")


@pytest.fixture
def two_nodes(procs: Processes) -> str:
    api = procs.api(free_port())
    procs.scheduler()
    for node in NODES:
        start_agent(procs, node)
    wait_for(lambda: node_status(api) == {"node-1": "ready", "node-2": "ready"}, what="two ready nodes")
    return api


def test_lost_node_replicas_move_and_its_return_removes_their_old_containers(
    procs: Processes, cluster: str, two_nodes: str
):
    api = two_nodes
    create(api, service("web", 4, command=GRACEFUL, restart_policy="always"))
    before = wait_running(api, "web", 4)
    assert {t["node"] for t in before} == {"node-1", "node-2"}

    procs.kill("node-2")
    wait_for(lambda: node_status(api)["node-2"] == "down", what="node-2 down after missed heartbeats")
    moved = wait_for(
        lambda: len(ts := tasks(api, "web")) == 4
        and all(t["state"] == "running" and t["node"] == "node-1" for t in ts)
        and ts,
        what="every replica running on node-1",
    )
    assert {"node_down", "task_rescheduled"} <= set(event_types(api))
    # The containers the dead agent left behind still run: the node is gone, not its engine.
    assert len(containers(cluster, "web")) > 4

    start_agent(procs, "node-2")
    wait_for(lambda: node_status(api)["node-2"] == "ready", what="node-2 ready again")
    assert_one_container_per_task(api, cluster, "web")
    assert "node_ready" in event_types(api)
    assert {t["id"]: t["container_id"] for t in tasks(api, "web")} == {t["id"]: t["container_id"] for t in moved}


def test_quick_agent_restart_adopts_its_containers_without_restarting_them(procs: Processes, cluster: str):
    # Enough missed beats that a restarted agent is back before its node counts as down.
    procs.env["GORCHESTER_HEARTBEAT_MISSES"] = "20"
    api = procs.api(free_port())
    procs.scheduler()
    start_agent(procs, "node-1")
    wait_for(lambda: node_status(api) == {"node-1": "ready"}, what="node-1 ready")
    create(api, service("steady", 2, command=SLEEPER, restart_policy="always"))
    before = wait_running(api, "steady", 2)

    procs.kill("node-1")
    start_agent(procs, "node-1")
    wait_for(lambda: "registered" in procs.log("node-1"), what="the agent to register again")
    after = wait_running(api, "steady", 2)
    assert [(t["container_id"], t["restarts"], t["gen"]) for t in after] == [
        (t["container_id"], t["restarts"], t["gen"]) for t in before
    ]
    assert node_status(api) == {"node-1": "ready"}
    assert_one_container_per_task(api, cluster, "steady")


@pytest.fixture
def one_node(procs: Processes) -> str:
    api = procs.api(free_port())
    procs.scheduler()
    start_agent(procs, "node-1")
    wait_for(lambda: node_status(api) == {"node-1": "ready"}, what="node-1 ready")
    return api


def test_container_killed_or_removed_is_restarted_under_always(cluster: str, one_node: str):
    api = one_node
    create(api, service("always", 1, command=SLEEPER, restart_policy="always"))
    [first] = wait_running(api, "always", 1)
    engine = docker.from_env()

    engine.containers.get(first["container_id"]).kill()
    second = wait_for(
        lambda: (t := task(api, "always.1"))["state"] == "running" and t["restarts"] == 1 and t,
        what="the killed replica running again",
    )
    assert second["container_id"] != first["container_id"]

    engine.containers.get(second["container_id"]).remove(force=True)
    third = wait_for(
        lambda: (t := task(api, "always.1"))["state"] == "running" and t["restarts"] == 2 and t,
        what="the removed replica running again",
    )
    assert third["container_id"] not in (first["container_id"], second["container_id"])
    assert_one_container_per_task(api, cluster, "always")
    assert event_types(api, service="always").count("task_restarted") == 2


def test_restart_policies_no_and_on_failure(cluster: str, one_node: str):
    api = one_node
    create(api, service("never", 1, command=SLEEPER, restart_policy="no"))
    create(api, service("clean", 1, command=["sh", "-c", "exit 0"], restart_policy="on-failure"))
    create(api, service("crash", 1, command=["sh", "-c", "exit 3"], restart_policy="on-failure"))
    [never] = wait_running(api, "never", 1)

    docker.from_env().containers.get(never["container_id"]).kill()
    failed = wait_for(lambda: (t := task(api, "never.1"))["state"] == "failed" and t, what="the killed task failed")
    assert (failed["exit_code"], failed["reason"], failed["restarts"]) == (137, "exited with code 137", 0)

    stopped = wait_for(lambda: (t := task(api, "clean.1"))["state"] == "stopped" and t, what="a clean exit stopped")
    assert (stopped["exit_code"], stopped["reason"], stopped["restarts"]) == (0, "exited with code 0", 0)

    crashed = wait_for(
        lambda: (t := task(api, "crash.1"))["restarts"] >= 2 and t["state"] == "failed" and t,
        what="a failing exit restarted",
    )
    assert (crashed["exit_code"], crashed["reason"]) == (3, "exited with code 3")
    # Settled: the ones not to restart stayed as they ended.
    assert task(api, "never.1")["restarts"] == 0 and task(api, "never.1")["state"] == "failed"
    assert task(api, "clean.1")["restarts"] == 0 and task(api, "clean.1")["state"] == "stopped"


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory, procs: Processes) -> Iterator[tuple[RedisServer, Processes]]:
    """A redis-server this test may kill (not the session's), and processes wired to it."""
    server = RedisServer(tmp_path_factory.mktemp("own-redis"))
    server.start()
    own = Processes({**procs.env, "GORCHESTER_REDIS_URL": server.url}, procs.log_dir)
    yield server, own
    own.close()
    server.kill()


def test_redis_restart_is_survived_by_every_process(own_redis: tuple[RedisServer, Processes]):
    server, procs = own_redis
    api = procs.api(free_port())
    procs.scheduler()
    start_agent(procs, "node-1")
    wait_for(lambda: node_status(api) == {"node-1": "ready"}, what="node-1 ready")
    create(api, service("kept", 2, command=SLEEPER, restart_policy="always"))
    before = wait_running(api, "kept", 2)

    server.kill()
    started = time.monotonic()
    response = httpx.get(f"{api}/v1/services", timeout=10)
    assert response.status_code == 503 and "redis unavailable" in response.json()["reason"]
    assert time.monotonic() - started < 5
    # Down long enough for every process to notice and start retrying.
    wait_for(lambda: "redis unavailable" in procs.log("scheduler"), what="the scheduler to notice")
    wait_for(lambda: "could not connect to Redis" in procs.log("node-1"), what="the agent to notice")

    server.start()
    wait_for(lambda: httpx.get(f"{api}/v1/services", timeout=5).status_code == 200, what="the API to reconnect")
    assert [s["service_name"] for s in httpx.get(f"{api}/v1/services", timeout=5).json()] == ["kept"]
    assert [(t["id"], t["container_id"]) for t in wait_running(api, "kept", 2)] == [
        (t["id"], t["container_id"]) for t in before
    ]
    wait_for(lambda: node_status(api) == {"node-1": "ready"}, what="node-1 heartbeating again")
    assert all(proc.poll() is None for proc in procs.procs.values()), "a process died of the outage"

    assert httpx.post(f"{api}/v1/services/kept/scale", json={"replicas": 3}, timeout=5).status_code == 200
    wait_running(api, "kept", 3)


def test_agent_killed_mid_work_leaves_one_container_per_task(procs: Processes, cluster: str):
    procs.env["GORCHESTER_HEARTBEAT_MISSES"] = "20"  # the node stays ready: this is about its jobs
    api = procs.api(free_port())
    procs.scheduler()
    start_agent(procs, "node-1")
    wait_for(lambda: node_status(api) == {"node-1": "ready"}, what="node-1 ready")

    create(api, service("busy", 3, command=SLEEPER, restart_policy="always"))
    wait_for(lambda: containers(cluster, "busy"), interval=0.01, what="the first container")
    procs.kill("node-1")
    start_agent(procs, "node-1")

    wait_running(api, "busy", 3)
    assert_one_container_per_task(api, cluster, "busy")


def test_drain_moves_replicas_away_and_activate_takes_work_again(cluster: str, two_nodes: str):
    api = two_nodes
    create(api, service("mobile", 4, command=GRACEFUL, restart_policy="always"))
    wait_running(api, "mobile", 4)

    assert httpx.post(f"{api}/v1/nodes/node-1/drain", timeout=5).status_code == 200
    assert node_status(api)["node-1"] == "draining"
    wait_for(
        lambda: len(ts := tasks(api, "mobile")) == 4
        and all(t["state"] == "running" and t["node"] == "node-2" for t in ts),
        what="every replica moved to node-2",
    )
    assert_one_container_per_task(api, cluster, "mobile")
    create(api, service("newcomer", 2, command=SLEEPER))
    assert {t["node"] for t in wait_running(api, "newcomer", 2)} == {"node-2"}

    assert httpx.post(f"{api}/v1/nodes/node-1/activate", timeout=5).status_code == 200
    assert node_status(api)["node-1"] == "ready"
    assert httpx.post(f"{api}/v1/services/newcomer/scale", json={"replicas": 4}, timeout=5).status_code == 200
    assert {t["node"] for t in wait_running(api, "newcomer", 4)} == {"node-1", "node-2"}


def restart_times(api: str, task_id: str) -> list[float]:
    events = httpx.get(f"{api}/v1/events", params={"limit": "10000"}, timeout=5).json()
    return [
        datetime.fromisoformat(e["time"]).timestamp()
        for e in events
        if e["type"] == "task_restarted" and e["data"].get("task") == task_id
    ]


def test_crash_loop_backs_off_doubling_up_to_the_cap(one_node: str):
    api = one_node
    create(api, service("healthy", 2, command=SLEEPER))
    create(api, service("crashloop", 1, command=["sh", "-c", "exit 1"], restart_policy="always"))
    wait_for(lambda: len(restart_times(api, "crashloop.1")) >= 8, timeout=60, what="eight restarts")
    wait_running(api, "healthy", 2)

    times = restart_times(api, "crashloop.1")[:8]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    # Each gap is the run's own time plus the back-off: 0.2, 0.4, 0.8, then 1.6 and the 2 s cap. A
    # real engine adds noise to each, so compare the early gaps with the late ones: they grew, the
    # capped ones are alike, and none is far above the cap.
    early, late = gaps[:3], gaps[4:]
    assert sum(late) / len(late) > sum(early) / len(early) + 0.8, gaps
    assert max(late) - min(late) < 1.0, gaps
    assert max(gaps) < 2 + 2, gaps
    assert task(api, "crashloop.1")["restarts"] >= 8


def test_a_stop_asked_through_the_api_holds_under_unless_stopped_only(cluster: str, one_node: str):
    api = one_node
    create(api, service("kept-down", 1, command=GRACEFUL, restart_policy="unless-stopped"))
    create(api, service("comes-back", 1, command=GRACEFUL, restart_policy="always"))
    [kept] = wait_running(api, "kept-down", 1)
    [back] = wait_running(api, "comes-back", 1)

    response = httpx.post(f"{api}/v1/tasks/kept-down.1/stop", timeout=5)
    assert response.status_code == 202, response.text
    stopped = wait_for(lambda: (t := task(api, "kept-down.1"))["state"] == "stopped" and t, what="the stop")
    assert (stopped["reason"], stopped["restarts"], stopped["gen"]) == ("stopped on request", 0, kept["gen"])
    # Stopped, not removed.
    assert docker.from_env().containers.get(kept["container_id"]).status == "exited"

    assert httpx.post(f"{api}/v1/tasks/comes-back.1/stop", timeout=5).status_code == 202
    wait_for(
        lambda: (t := task(api, "comes-back.1"))["state"] == "running" and t["restarts"] == 1
        and t["container_id"] != back["container_id"],
        what="always to restart a stopped task",
    )
    # A stop of a task that does not run is refused through the error map.
    assert httpx.post(f"{api}/v1/tasks/kept-down.1/stop", timeout=5).status_code == 409
    assert httpx.post(f"{api}/v1/tasks/nothing.1/stop", timeout=5).status_code == 404
    assert task(api, "kept-down.1")["state"] == "stopped" and "task_stop_requested" in event_types(api)
    assert_one_container_per_task(api, cluster, "comes-back")


def test_a_returning_agent_heartbeats_while_it_still_removes_stale_containers(
    procs: Processes, cluster: str, two_nodes: str, store
):
    """A slow first sweep (SIGTERM-deaf containers take the whole grace period) must not stop the beat."""
    api = two_nodes
    create(api, service("deaf", 4, command=SLEEPER, restart_policy="always"))
    wait_running(api, "deaf", 4)
    procs.kill("node-2")
    wait_for(
        lambda: all(t["node"] == "node-1" and t["state"] == "running" for t in tasks(api, "deaf")),
        what="replicas moved to node-1",
    )
    stale = docker.from_env().containers.list(
        filters={"label": [f"{labels.CLUSTER}={cluster}", f"{labels.NODE}=node-2"]}
    )
    assert stale, "node-2's old containers should still exist while its agent is away"

    restarted_at = time.time()
    start_agent(procs, "node-2")
    registered = wait_for(
        lambda: (node := store.node("node-2")).registered_at > restarted_at and node, what="node-2 registered again"
    )

    def beating_during_sweep() -> bool:
        node = store.node("node-2")
        still_stale = any(c.status == "running" for c in _reloaded(stale))
        return still_stale and node.last_heartbeat > registered.registered_at + 0.4

    wait_for(beating_during_sweep, timeout=5, what="heartbeats while stale containers are still stopping")
    assert node_status(api)["node-2"] == "ready"


def _reloaded(found: list) -> Iterator:
    for container in found:
        try:
            container.reload()
        except docker.errors.NotFound:
            continue
        yield container
