"""Container logs through the node's agent (the API never opens an engine) and `gorchester logs`, on
real parts: a follow ends and leaves nothing in Redis when its client leaves, never holds up the
node's jobs, and a node whose agent does not answer is a 503 within the bound."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from api.auth import Tokens
from shared.node_requests import ANSWER_SECONDS, MAX_BACKLOG, MAX_NODE_REQUESTS, READER_TTL_SECONDS
from shared.records import NodeRecord, TaskRecord, TaskState
from shared.settings import Settings
from shared.storage import Store
from tests.support.procs import TEST_IMAGE, Processes, free_port, wait_for
from tests.support.tasks import seed

GORCHESTER = str(Path(sys.executable).parent / "gorchester")
MIB = 1024 * 1024
# Prints a numbered line every 0.1 s, on stdout and (every line) a marker on stderr.
TALKER = "i=0; while true; do echo \"line $i\"; echo \"err $i\" >&2; i=$((i+1)); sleep 0.1; done"


def tasks(api: str, service: str) -> list[dict[str, Any]]:
    return httpx.get(f"{api}/v1/tasks", params={"service": service}, timeout=5).json()


@pytest.fixture
def running_api(procs: Processes, cluster: str) -> Iterator[str]:
    api = procs.api(free_port())
    procs.scheduler()
    procs.agent("node-1", "127.0.0.2", cpu=2000, memory=2048 * MIB)
    config = {
        "cluster_name": cluster,
        "services": [
            {"service_name": "talker", "image": TEST_IMAGE, "replicas": 2, "command": ["sh", "-c", TALKER],
             "resources": {"cpu_millicores": 50, "memory_bytes": 16 * MIB}},
            {"service_name": "huge", "image": TEST_IMAGE, "replicas": 1, "command": ["sleep", "60"],
             "resources": {"cpu_millicores": 999_000, "memory_bytes": 16 * MIB}},
        ],
    }
    assert httpx.post(f"{api}/v1/apply", json=config, timeout=10).status_code == 200
    wait_for(lambda: [t["state"] for t in tasks(api, "talker")] == ["running", "running"], timeout=60,
             what="two running talkers")
    yield api


def test_logs_tail_follow_and_errors(running_api: str) -> None:
    api = running_api
    node = httpx.get(f"{api}/v1/nodes/node-1", timeout=5).json()
    assert node["id"] == "node-1"
    wait_for(lambda: httpx.get(f"{api}/v1/tasks/talker.1/logs", params={"tail": "all"}).text.count("line") >= 5,
             what="some output")

    tail = httpx.get(f"{api}/v1/tasks/talker.1/logs", params={"tail": "3"}, timeout=10)
    assert tail.status_code == 200
    assert tail.headers["x-gorchester-node"] == "node-1"
    lines = tail.text.splitlines()
    assert len(lines) == 3 and all(line.startswith(("line ", "err ")) for line in lines)

    # Following: new lines keep coming; the client leaving ends the stream (the next request works).
    seen: list[str] = []
    with httpx.stream("GET", f"{api}/v1/tasks/talker.2/logs", params={"follow": "true", "tail": "0"},
                      timeout=httpx.Timeout(10, read=10)) as stream:
        for line in stream.iter_lines():
            seen.append(line)
            if sum(line.startswith("line ") for line in seen) >= 5:
                break
    numbers = [int(line.split()[1]) for line in seen if line.startswith("line ")]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert any(line.startswith("err ") for line in seen)  # stderr too

    # A follow stream ends by itself when the container stops.
    with httpx.stream("GET", f"{api}/v1/tasks/talker.1/logs", params={"follow": "true", "tail": "1"},
                      timeout=httpx.Timeout(10, read=30)) as stream:
        assert stream.status_code == 200
        assert httpx.post(f"{api}/v1/tasks/talker.1/stop", timeout=10).status_code == 202
        started = time.monotonic()
        for _ in stream.iter_lines():
            pass
        assert time.monotonic() - started < 30

    assert httpx.get(f"{api}/v1/tasks/nope.1/logs").status_code == 404
    pending = httpx.get(f"{api}/v1/tasks/huge.1/logs")
    assert pending.status_code == 409
    assert "no container" in pending.json()["message"]
    assert httpx.get(f"{api}/v1/tasks/talker.2/logs", params={"tail": "-1"}).status_code == 400
    assert httpx.get(f"{api}/v1/tasks/talker.2/logs", params={"follow": "maybe"}).status_code == 400


def test_cli_logs_for_a_service_and_a_task(running_api: str) -> None:
    env_api = ["--api", running_api]
    wait_for(lambda: httpx.get(f"{running_api}/v1/tasks/talker.2/logs", params={"tail": "all"}).text.count("line")
             >= 3, what="some output")
    service = subprocess.run([GORCHESTER, "logs", "talker", "--tail", "2", *env_api],
                             capture_output=True, text=True, timeout=30)
    assert service.returncode == 0, service.stderr
    prefixes = {line.split(" | ")[0].strip() for line in service.stdout.splitlines()}
    assert prefixes == {"talker.1", "talker.2"}
    assert len(service.stdout.splitlines()) == 4

    task = subprocess.run([GORCHESTER, "logs", "talker.2", "--tail", "2", *env_api],
                          capture_output=True, text=True, timeout=30)
    assert task.returncode == 0, task.stderr
    assert len(task.stdout.splitlines()) == 2 and " | " not in task.stdout

    pending = subprocess.run([GORCHESTER, "logs", "huge", *env_api], capture_output=True, text=True, timeout=30)
    assert pending.returncode == 1
    assert "huge.1: no container" in pending.stderr
    unknown = subprocess.run([GORCHESTER, "logs", "ghost", *env_api], capture_output=True, text=True, timeout=30)
    assert unknown.returncode == 1 and "not found" in unknown.stderr

    # --follow streams until interrupted; it shows new lines from both replicas.
    follow = subprocess.Popen([GORCHESTER, "logs", "talker", "-f", "--tail", "0", *env_api],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got: set[str] = set()
        assert follow.stdout is not None
        deadline = time.monotonic() + 30
        while got != {"talker.1", "talker.2"} and time.monotonic() < deadline:
            got.add(follow.stdout.readline().split(" | ")[0].strip())
        assert got >= {"talker.1", "talker.2"}
    finally:
        follow.kill()
        follow.wait()


def reply_keys(store: Store) -> list[str]:
    """Every key of a request's reply (its stream, its reader key) the cluster has in Redis."""
    return sorted(store._client.scan_iter(f"{store._keys.prefix}:reply:*"))


def test_follow_ends_and_leaves_nothing_when_the_client_leaves(running_api: str, procs: Processes,
                                                                store: Store) -> None:
    api = running_api
    with httpx.stream("GET", f"{api}/v1/tasks/talker.1/logs", params={"follow": "true", "tail": "0"},
                      timeout=httpx.Timeout(10, read=10)) as stream:
        assert stream.status_code == 200
        request_id = stream.headers["x-gorchester-request"]
        lines = stream.iter_lines()
        assert next(lines).startswith(("line ", "err "))
        assert store._client.exists(store._keys.reader(request_id))  # the API keeps it alive while it reads
    # The client left: the API deletes the reply, the agent's thread for it ends, nothing is left.
    wait_for(lambda: not reply_keys(store), timeout=15, what="the reply's keys to go")
    wait_for(lambda: f"request {request_id} (logs of talker.1) ended" in procs.log("node-1"), timeout=15,
             what="the agent's thread for the follow to end")
    assert not store._client.exists(store._keys.node_requests("node-1"))


def test_follows_never_hold_up_the_nodes_jobs(running_api: str, store: Store) -> None:
    """Three follows stay open while the same node starts and then removes replicas of another service
    (were a follow a job of the node's queue, no start could run until it ended)."""
    api = running_api
    streams = [httpx.stream("GET", f"{api}/v1/tasks/talker.{slot}/logs", params={"follow": "true", "tail": "0"},
                            timeout=httpx.Timeout(10, read=10)) for slot in (1, 2, 1)]
    opened = [stream.__enter__() for stream in streams]
    try:
        readers = [response.iter_lines() for response in opened]
        for lines in readers:
            assert next(lines)
        body = {"service_name": "extra", "image": TEST_IMAGE, "replicas": 3, "command": ["sleep", "60"],
                "resources": {"cpu_millicores": 50, "memory_bytes": 16 * MIB}}
        assert httpx.post(f"{api}/v1/services", json=body, timeout=10).status_code == 201
        wait_for(lambda: [t["state"] for t in tasks(api, "extra")] == ["running"] * 3, timeout=60,
                 what="three extra replicas running beside the follows")
        assert httpx.delete(f"{api}/v1/services/extra", timeout=10).status_code == 202
        wait_for(lambda: httpx.get(f"{api}/v1/services/extra", timeout=5).status_code == 404, timeout=60,
                 what="the extra replicas stopped and removed beside the follows")
        for lines in readers:  # and the follows kept streaming all along
            assert next(lines)
    finally:
        for stream in streams:
            stream.__exit__(None, None, None)
    wait_for(lambda: not reply_keys(store), timeout=15, what="the follows' keys to go")


def test_a_paused_client_holds_the_agent_back_and_loses_nothing(running_api: str, store: Store) -> None:
    """Back-pressure, never loss: a client that stops reading for longer than the reader key's expiry
    (a pager) keeps its stream; meanwhile Redis holds at most the bounded backlog of it."""
    api = running_api
    lines = 3_000_000  # 23 MB: more than every buffer on the way (sockets, the API's read, Redis' backlog)
    body = {"service_name": "counter", "image": TEST_IMAGE, "replicas": 1,
            "command": ["sh", "-c", f"seq 1 {lines}; sleep 3600"],
            "resources": {"cpu_millicores": 50, "memory_bytes": 16 * MIB}}
    assert httpx.post(f"{api}/v1/services", json=body, timeout=10).status_code == 201
    wait_for(lambda: httpx.get(f"{api}/v1/tasks/counter.1/logs", params={"tail": "1"}, timeout=10).text
             == f"{lines}\n", timeout=60, what="all the lines written")
    got = bytearray()
    with httpx.stream("GET", f"{api}/v1/tasks/counter.1/logs", timeout=httpx.Timeout(10, read=30)) as stream:
        reply = store._keys.reply(stream.headers["x-gorchester-request"])
        blocks = stream.iter_raw(64 * 1024)
        while len(got) < MIB:
            got += next(blocks)
        time.sleep(READER_TTL_SECONDS + 3)  # the client pauses: nothing is read
        backlog = store._client.xlen(reply)
        assert 0 < backlog <= MAX_BACKLOG + 1  # the agent waits: at most one entry past the bound
        for block in blocks:
            got += block
    assert got == b"".join(b"%d\n" % n for n in range(1, lines + 1))


def test_an_agent_serves_a_bounded_number_of_requests_at_once(running_api: str, store: Store) -> None:
    api = running_api
    streams = [httpx.stream("GET", f"{api}/v1/tasks/talker.{1 + n % 2}/logs", params={"follow": "true", "tail": "0"},
                            timeout=httpx.Timeout(10, read=10)) for n in range(MAX_NODE_REQUESTS)]
    try:
        for stream in streams:
            assert stream.__enter__().status_code == 200
        over = httpx.get(f"{api}/v1/tasks/talker.1/logs", params={"tail": "1"}, timeout=10)
        assert over.status_code == 503
        assert f"node node-1 serves {MAX_NODE_REQUESTS} log and exec requests already" in over.json()["reason"]
    finally:
        for stream in streams:
            stream.__exit__(None, None, None)
    wait_for(lambda: not reply_keys(store), timeout=15, what="the follows' keys to go")
    assert httpx.get(f"{api}/v1/tasks/talker.1/logs", params={"tail": "1"}, timeout=10).status_code == 200


def test_a_node_whose_agent_does_not_answer_is_503_within_the_bound(redis_server: Any, cluster: str,
                                                                   store: Store) -> None:
    now = time.time()
    store.register_node(NodeRecord(id="far", address="10.9.9.9", cpu_millicores=1000, memory_bytes=1 << 30,
                                   heartbeat_interval=60, last_heartbeat=now))
    store._client.hset(store._keys.node("far"), "engine_url", '"tcp://10.9.9.9:2375"')  # an older version's field
    task = TaskRecord(id="x.1", service="x", slot=1, node="far", state=TaskState.RUNNING, container_id="abc123")
    seed(store, [task])
    app = create_app(Settings(redis_url=redis_server.url, cluster=cluster), Tokens())
    with TestClient(app) as client:
        assert client.get("/v1/nodes/far").json()["status"] == "ready"  # the old field is ignored
        for method, path, body in (("GET", "/v1/tasks/x.1/logs", None),
                                   ("POST", "/v1/tasks/x.1/exec", {"command": ["true"]})):
            started = time.monotonic()
            response = client.request(method, path, json=body)
            took = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert "node far did not answer within 5 s" in response.json()["reason"]
            assert took < ANSWER_SECONDS + 3  # the bound, with slack for a loaded machine
        # Nothing is left behind: the request was taken back, its reply and reader key deleted.
        assert not store._client.exists(store._keys.node_requests("far"))
        assert not reply_keys(store)
        # A node known to be down is refused at once, without asking.
        store.heartbeat("far", now - 3600)
        down = client.get("/v1/tasks/x.1/logs")
        assert down.status_code == 503 and "node far is down" in down.json()["reason"]
