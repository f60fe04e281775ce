"""Redis with replicas and sentinels (cli/redis_local.py, as `gorchester up --redis-replicas 2` makes it),
and the clients every process uses (shared/storage/connection.connect) following a failover by themselves."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import httpx
import pytest
import redis

from scheduler.loop import Scheduler
from shared import labels
from shared.config import validate_service
from shared.records import NodeRecord, ServiceFault, TaskRecord, TaskState
from shared.settings import Settings
from shared.storage import Store
from shared.storage.connection import NotLeader, connect
from tests.support.procs import FAST_SETTINGS, TEST_IMAGE, VENV_BIN, Processes, free_port, wait_for
from tests.support.redis_set import RedisSet


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[RedisSet]:
    made = RedisSet(tmp_path)
    try:
        made.start()
        made.wait_settled()
        yield made
    finally:
        made.close()


def test_a_client_follows_the_master_through_a_failover(replicated: RedisSet) -> None:
    """SIGKILL of the master under a stream of writes: the same client writes again within 5 s, to the
    promoted replica, and every write a replica acknowledged (WAIT 1) is still there."""
    client = connect(replicated.url)
    acknowledged: list[int] = []
    failures: list[float] = []
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            try:
                value = client.incr("counter")
                if client.wait(1, 1000) >= 1:
                    acknowledged.append(int(value))
            except redis.RedisError:
                failures.append(time.monotonic())
                time.sleep(0.05)
            time.sleep(0.01)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    wait_for(lambda: len(acknowledged) > 20, timeout=10, what="writes acknowledged by a replica")
    old = replicated.master()
    replicated.kill("redis")
    killed_at, before = time.monotonic(), len(acknowledged)
    wait_for(lambda: len(acknowledged) > before + 10, timeout=30, what="writes accepted again after the kill")
    stop.set()
    writer.join(timeout=10)
    resumed = [value for value in acknowledged[before:]][0]
    assert replicated.master() != old
    assert int(client.get("counter")) >= max(acknowledged)  # nothing acknowledged is lost
    assert resumed  # a write went through after the kill
    assert failures and failures[-1] - killed_at < 5.0, f"writes failed until {failures[-1] - killed_at:.2f}s"


def test_a_leader_of_the_old_master_writes_nothing_after_the_promotion(replicated: RedisSet) -> None:
    """The lease taken on the master reaches the replicas with it, but only the server that granted it
    honours it (shared/storage/lease.py): after a SIGKILL of the master and the promotion of a replica, the old
    leader's fenced writes are refused there though the key still holds its token, another scheduler
    takes the lease at once (not when it expires), and the old master, back from its files with the
    stale lease, refuses them too, then follows the new master."""
    settings = Settings(redis_url=replicated.url, cluster="fence", leader_lease=60.0)
    old = Scheduler(settings)
    assert old.lead()
    stale = old.lease.token
    assert old.store._client.wait(2, 2000) == 2
    first = replicated.master()
    replicated.kill("redis")
    wait_for(lambda: replicated.master() != first, timeout=30, what="a replica promoted")
    store = Store(connect(replicated.url), "fence")
    assert store._client.get(store._keys.leader) == stale  # replicated, and far from expiring

    def fenced_writes(on: Store) -> list[Callable[[], object]]:
        return [
            lambda: on.write_assignments([("web.1", TaskRecord(id="web.1", service="web", slot=1), None)],
                                         leader_token=stale),
            lambda: on.write_heard_since(1.0, leader_token=stale),
            lambda: on.write_faults({"web": ServiceFault(reason="x", since=1.0, record="r")}, [], leader_token=stale),
        ]

    for write in fenced_writes(store):
        with pytest.raises(NotLeader):
            write()
    new = Scheduler(settings)
    assert new.lead() and new.lease.token != stale
    assert not old.lead()  # the lease is the new leader's now, and valid here
    assert store._client.hgetall(store._keys.assignments) == {} and store._client.hgetall(store._keys.faults) == {}

    replicated.start("redis")  # the old master, from its append-only file: a master until sentinels demote it
    returned = replicated.server(first)
    wait_for(returned.ping, timeout=10, what="the old master to answer")
    on_returned = Store(returned, "fence")
    role = returned.execute_command("ROLE")[0]
    if role == "master":  # not demoted yet: it still holds the stale lease, and refuses its holder
        assert returned.get(on_returned._keys.leader) == stale
    for write in fenced_writes(on_returned):
        with pytest.raises((NotLeader, redis.ReadOnlyError)):
            write()
    wait_for(lambda: returned.get(on_returned._keys.leader) == new.lease.token, timeout=30,
             what="the old master to follow the new one")
    assert returned.execute_command("ROLE")[0] == "slave"
    assert returned.hgetall(on_returned._keys.assignments) == {}


def test_jobs_lost_with_the_old_master_are_sent_again_at_once(
    replicated: RedisSet, cluster: str, tmp_path: Path
) -> None:
    """Start jobs waiting in a node's queue are lost (as when the master dies before its replicas had
    them), then the master is SIGKILLed: the scheduler's first pass on the promoted replica sends them
    again at once, same gen, rather than when the assigned timeout (60 s here) has passed."""
    env = {**os.environ, **FAST_SETTINGS, "GORCHESTER_REDIS_URL": replicated.url, "GORCHESTER_CLUSTER": cluster,
           "GORCHESTER_ASSIGNED_TIMEOUT": "60"}
    env.pop("GORCHESTER_REDIS_PASSWORD_FILE", None)
    procs = Processes(env, tmp_path)
    store = Store(connect(replicated.url), cluster)
    beating = threading.Event()

    def beat() -> None:  # the node's heartbeat (no agent: nothing takes the jobs off its queue)
        while not beating.wait(0.25):
            try:
                store.heartbeat("node-1", time.time())
            except redis.RedisError:
                continue

    store.register_node(NodeRecord(id="node-1", address="127.0.0.2", cpu_millicores=2000, memory_bytes=2**30,
                                   last_heartbeat=time.time(), heartbeat_interval=0.5))
    heart = threading.Thread(target=beat, daemon=True)
    heart.start()
    try:
        procs.scheduler()
        store.create_service(validate_service({"service_name": "web", "image": "img", "replicas": 2}), time.time())
        jobs = connect(replicated.url, decode=False)
        queue = f"rq:queue:{store._keys.queue('node-1')}"
        wait_for(lambda: jobs.llen(queue) >= 1, timeout=30, what="the start jobs on node-1's queue")
        assigned = {task.id: task.gen for task in store.tasks()}
        assert len(assigned) == 2 and all(task.state is TaskState.ASSIGNED for task in store.tasks())
        jobs.delete(queue)
        assert jobs.wait(2, 2000) == 2  # the replicas lost them too
        replicated.kill("redis")
        wait_for(lambda: jobs.llen(queue) >= 1, timeout=30, what="the start jobs sent again")
        assert {task.id: task.gen for task in store.tasks()} == assigned
    finally:
        beating.set()
        heart.join(timeout=5)
        procs.close()


@pytest.fixture
def api(replicated: RedisSet, tmp_path: Path) -> Iterator[str]:
    """The API over the replicated Redis (its URL from the root of the API)."""
    port = free_port()
    env = {**os.environ, "GORCHESTER_REDIS_URL": replicated.url, "GORCHESTER_CLUSTER": "failover"}
    env.pop("GORCHESTER_REDIS_PASSWORD_FILE", None)
    with open(tmp_path / "api.log", "ab") as log:
        proc = subprocess.Popen([str(VENV_BIN / "uvicorn"), "api.app:app", "--port", str(port)], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{url}/v1/health", timeout=2).json().get("redis", {}).get("replicas_in_sync") == 2,
                 timeout=30, what="the API, and two replicas in sync")
        yield url
    finally:
        proc.kill()
        proc.wait()


def test_the_api_reports_the_master_and_answers_through_a_failover(replicated: RedisSet, api: str) -> None:
    """/v1/health names the master and its replicas in sync; while the sentinels promote a replica it
    answers 503 with a reason (never a 500, never a hang), then names the new master."""
    url = f"{api}/v1/health"
    master = replicated.master()
    host, master_port = replicated.address, replicated.port(master)
    assert httpx.get(url, timeout=2).json()["redis"] == {"master": f"{host}:{master_port}", "replicas_in_sync": 2}

    replicated.kill("redis")
    killed_at = time.monotonic()
    seen: list[tuple[int, str]] = []
    while time.monotonic() - killed_at < 30:
        started = time.monotonic()
        response = httpx.get(url, timeout=5)
        assert time.monotonic() - started < 2.0  # never a hang
        assert response.status_code in (200, 503), response.text
        body = response.json()
        seen.append((response.status_code, body["redis"]["master"] if response.status_code == 200 else body["reason"]))
        if response.status_code == 200 and body["redis"]["master"] != f"{host}:{master_port}":
            break
        time.sleep(0.1)
    recovered = time.monotonic() - killed_at
    assert seen[-1][0] == 200 and seen[-1][1] != f"{host}:{master_port}", seen[-5:]
    assert recovered < 5.0, f"the API named the new master {recovered:.2f}s after the kill"


def test_changes_the_api_acknowledged_survive_the_masters_death(replicated: RedisSet, api: str) -> None:
    """Scale changes in a stream while the master is SIGKILLed: every answer is 2xx or 503 (never a 500 or
    a hang), changes are accepted again within 5 s, and the last acknowledged change is what the new
    master holds (a 2xx means a replica had it)."""
    spec = {"service_name": "web", "image": "gorchester/busybox:latest", "replicas": 1, "command": ["sleep", "3600"]}
    assert httpx.post(f"{api}/v1/services", json=spec, timeout=5).status_code == 201
    answers: list[tuple[float, int, int]] = []  # (when, replicas asked, status)

    def scale(replicas: int) -> None:
        started = time.monotonic()
        response = httpx.post(f"{api}/v1/services/web/scale", json={"replicas": replicas}, timeout=5)
        assert time.monotonic() - started < 2.0, "a hang"
        assert response.status_code in (200, 503), response.text
        answers.append((started, replicas, response.status_code))

    for replicas in range(2, 22):
        scale(replicas)
    replicated.kill("redis")
    killed_at = time.monotonic()
    replicas = 22
    while not (answers[-1][2] == 200 and answers[-1][0] > killed_at) and time.monotonic() - killed_at < 30:
        scale(replicas)
        replicas += 1
        time.sleep(0.05)
    for _ in range(10):  # and a few more on the new master
        scale(replicas)
        replicas += 1
    back = next(when for when, _, status in answers if when > killed_at and status == 200) - killed_at
    assert back < 5.0, f"changes accepted again {back:.2f}s after the kill"
    last_acknowledged = [asked for _, asked, status in answers if status == 200][-1]
    assert answers[-1][2] == 200
    assert httpx.get(f"{api}/v1/services/web", timeout=5).json()["replicas"] == last_acknowledged


def test_a_cluster_keeps_its_replicas_through_a_failover(
    replicated: RedisSet, cluster: str, tmp_path: Path, docker_cleanup: None
) -> None:
    """API, scheduler and two agents on the replicated Redis; scale changes and container churn while the
    master is SIGKILLed: afterwards the service runs exactly its last acknowledged count, each replica in
    one container, nothing stuck, and no container beyond it."""
    env = {**os.environ, **FAST_SETTINGS, "GORCHESTER_REDIS_URL": replicated.url, "GORCHESTER_CLUSTER": cluster}
    env.pop("GORCHESTER_REDIS_PASSWORD_FILE", None)
    procs = Processes(env, tmp_path)
    try:
        api = procs.api(free_port())
        wait_for(lambda: httpx.get(f"{api}/v1/health", timeout=2).json()["redis"]["replicas_in_sync"] == 2,
                 timeout=30, what="two replicas in sync")
        procs.scheduler()
        procs.agent("node-1", "127.0.0.2")
        procs.agent("node-2", "127.0.0.3")
        store = Store(connect(replicated.url), cluster)
        spec = {"service_name": "web", "image": TEST_IMAGE, "replicas": 2, "command": ["sleep", "3600"],
                "restart_policy": "always"}
        assert httpx.post(f"{api}/v1/services", json=spec, timeout=5).status_code == 201
        wait_for(lambda: running(store, "web") == 2, timeout=60, what="2 replicas running")

        acknowledged = []
        killed_at = None
        for step in range(40):
            replicas = 2 + step % 5
            response = httpx.post(f"{api}/v1/services/web/scale", json={"replicas": replicas}, timeout=5)
            assert response.status_code in (200, 503), response.text
            if response.status_code == 200:
                acknowledged.append(replicas)
            if step == 10:
                replicated.kill("redis")
                killed_at = time.monotonic()
            time.sleep(0.25)
        assert killed_at is not None
        final = acknowledged[-1]
        wait_for(lambda: running(store, "web") == final and containers(cluster) == final, timeout=90,
                 what=f"{final} replicas running, one container each ({procs.log('scheduler')[-400:]})")
        assert httpx.get(f"{api}/v1/services/web", timeout=5).json()["replicas"] == final
    finally:
        procs.close()


def running(store: Store, service: str) -> int:
    tasks = [task for task in store.tasks() if task.service == service]
    return len(tasks) if all(task.state is TaskState.RUNNING for task in tasks) else -1


def containers(cluster: str) -> int:
    client = docker.from_env()
    try:
        return len(client.containers.list(filters={"label": f"{labels.CLUSTER}={cluster}", "status": "running"}))
    finally:
        client.close()


def test_task_records_that_went_back_in_time_are_set_right_by_what_the_nodes_run(
    procs: Processes, store: Store, cluster: str
) -> None:
    """What a replica promoted with data older than the master's last writes looks like to the cluster:
    the task records go back to an earlier copy (RESTORE of a DUMP) while the services keep the last
    acknowledged spec (the API's changes wait for a replica). Scaled up since the copy: the copy lacks
    the new replicas' records, whose containers still run. Scaled down since: the copy says RUNNING of
    replicas whose containers are gone. Either way the cluster settles on exactly the spec's replicas,
    one container each (a container of a lost record is removed by the new record's start job on its
    node, or by the node's sweep), and forgets no service."""
    api = procs.api(free_port())
    procs.scheduler()
    procs.agent("node-1", "127.0.0.2")
    spec = {"service_name": "web", "image": TEST_IMAGE, "replicas": 2, "command": ["sleep", "3600"]}
    assert httpx.post(f"{api}/v1/services", json=spec, timeout=5).status_code == 201

    def scaled(replicas: int) -> None:
        assert httpx.post(f"{api}/v1/services/web/scale", json={"replicas": replicas}, timeout=5).status_code == 200
        wait_for(lambda: running(store, "web") == replicas and containers(cluster) == replicas, timeout=60,
                 what=f"{replicas} replicas running, one container each")

    wait_for(lambda: running(store, "web") == 2 and containers(cluster) == 2, timeout=60, what="2 replicas")
    raw = connect(procs.env["GORCHESTER_REDIS_URL"], decode=False)
    parts = (store._keys.assignments, store._keys.statuses)
    at_two = [raw.dump(key) for key in parts]
    scaled(4)
    at_four = [raw.dump(key) for key in parts]
    for key, dumped in zip(parts, at_two, strict=True):
        raw.restore(key, 0, dumped, replace=True)  # the records lost replicas 3 and 4
    store.touch()
    store.notify()
    wait_for(lambda: running(store, "web") == 4 and containers(cluster) == 4, timeout=60,
             what="4 replicas again, their containers of lost records removed")
    scaled(2)
    for key, dumped in zip(parts, at_four, strict=True):
        raw.restore(key, 0, dumped, replace=True)  # the records say 3 and 4 still run
    store.touch()
    store.notify()
    wait_for(lambda: running(store, "web") == 2 and containers(cluster) == 2 and len(store.tasks()) == 2,
             timeout=60, what="2 replicas again, the records of gone ones retired")


def scale_answers(api: str, replicas: int) -> int:
    """A scale change's status: 200, or 503 while no master is known (never a 500, never a hang)."""
    started = time.monotonic()
    response = httpx.post(f"{api}/v1/services/web/scale", json={"replicas": replicas}, timeout=5)
    assert time.monotonic() - started < 2.0, "a hang"
    assert response.status_code in (200, 503), response.text
    return response.status_code


def test_a_replica_lost_changes_nothing_and_the_old_master_returns_as_a_replica(
    replicated: RedisSet, api: str
) -> None:
    """SIGKILL of a replica: changes go on being acknowledged (the other replica acknowledges). Then the
    master's SIGKILL: the last replica is promoted, and with no replica of its own it acknowledges no
    change (503). The old master restarted with its own command line and data: the sentinels make it a
    replica of the promoted one, changes are acknowledged again, and it holds what the master holds."""
    spec = {"service_name": "web", "image": TEST_IMAGE, "replicas": 1, "command": ["sleep", "3600"]}
    assert httpx.post(f"{api}/v1/services", json=spec, timeout=5).status_code == 201
    replicated.kill("redis-replica-1")
    for replicas in range(2, 8):
        assert scale_answers(api, replicas) == 200
    wait_for(lambda: httpx.get(f"{api}/v1/health", timeout=2).json()["redis"]["replicas_in_sync"] == 1,
             timeout=30, what="health to count one replica in sync")

    first = replicated.master()
    replicated.kill("redis")
    wait_for(lambda: replicated.master() != first, timeout=30, what="the other replica promoted")
    # The promoted one is the only server left: a change reaches no replica, so none is acknowledged.
    assert scale_answers(api, 8) == 503
    replicated.start("redis")
    returned = replicated.server(first)

    def follows() -> bool:
        info = returned.info("replication")
        return info["role"] == "slave" and info.get("master_link_status") == "up"

    wait_for(follows, timeout=60, what="the old master to become a replica in sync")
    assert replicated.master() != first
    wait_for(lambda: scale_answers(api, 9) == 200, timeout=10, interval=0.1, what="changes acknowledged again")
    assert json.loads(returned.hget("gorchester:failover:services", "web") or "{}")["spec"]["replicas"] == 9
    assert httpx.get(f"{api}/v1/services/web", timeout=5).json()["replicas"] == 9


def test_with_one_sentinel_left_a_lost_master_refuses_writes_and_loses_none(
    replicated: RedisSet, api: str
) -> None:
    """Two of three sentinels SIGKILLed: the master still takes changes. Then the master's SIGKILL: the
    last sentinel alone is no majority, so nobody is promoted and every change is refused (503, never a
    hang, and none applied later: each fails in well under the API's deadline, so no thread left behind
    writes it once the master is back) however long it lasts; once the master is back from its
    append-only file, changes are taken again and the last one acknowledged before its death is there."""
    spec = {"service_name": "web", "image": TEST_IMAGE, "replicas": 1, "command": ["sleep", "3600"]}
    assert httpx.post(f"{api}/v1/services", json=spec, timeout=5).status_code == 201
    replicated.kill("sentinel-2")
    replicated.kill("sentinel-3")
    for replicas in range(2, 6):
        assert scale_answers(api, replicas) == 200
    first = replicated.master()
    replicated.kill("redis")
    refused_until = time.monotonic() + 8.0  # more than twice what a failover takes with a majority
    while time.monotonic() < refused_until:
        assert scale_answers(api, 99) == 503
        time.sleep(0.2)
    assert replicated.master() == first  # nobody promoted
    refused = httpx.post(f"{api}/v1/services/web/scale", json={"replicas": 99}, timeout=5)
    assert refused.status_code == 503 and "no master found" in refused.json()["reason"].lower(), refused.text
    replicated.start("redis")
    wait_for(lambda: httpx.get(f"{api}/v1/services/web", timeout=5).status_code == 200, timeout=30,
             what="the master back")
    assert httpx.get(f"{api}/v1/services/web", timeout=5).json()["replicas"] == 5
    wait_for(lambda: scale_answers(api, 6) == 200, timeout=30, interval=0.2, what="changes taken again")
