"""Logs and exec of replicas on three hosts, each with its own engine (cli/hostbed.py): the API, in the
root namespace, reaches no engine at all; each host's agent reads its own and answers through Redis."""

from __future__ import annotations

import httpx

from shared.records import TaskState
from tests.support.multihost import MultiHost
from tests.support.procs import TEST_IMAGE, wait_for

TALK = "i=0; while true; do echo \"line $i\"; i=$((i+1)); sleep 0.1; done"


def test_logs_tail_and_follow_and_exec_on_every_host(multihost: MultiHost) -> None:
    assert all(host.docker_host.startswith("unix://") for host in multihost.bed.all_hosts())  # no engine on TCP
    api = multihost.start()
    spec = {"service_name": "talk", "image": TEST_IMAGE, "replicas": 3, "command": ["sh", "-c", TALK]}
    assert httpx.post(f"{api}/v1/services", json=spec, timeout=5).status_code == 201

    def running() -> bool:
        tasks = [task for task in multihost.store.tasks() if task.service == "talk"]
        return len(tasks) == 3 and all(task.state is TaskState.RUNNING for task in tasks)

    wait_for(running, timeout=90, what="3 replicas running")
    tasks = [task for task in multihost.store.tasks() if task.service == "talk"]
    assert {task.node for task in tasks} == {multihost.node(host.index) for host in multihost.bed.all_hosts()}
    for task in tasks:
        url = f"{api}/v1/tasks/{task.id}"
        wait_for(lambda url=url: httpx.get(f"{url}/logs", timeout=10).text.count("line") >= 3, what="some output")
        tail = httpx.get(f"{url}/logs", params={"tail": "2"}, timeout=10)
        assert tail.headers["x-gorchester-node"] == task.node
        assert [line.split()[0] for line in tail.text.splitlines()] == ["line", "line"]
        with httpx.stream("GET", f"{url}/logs", params={"follow": "true", "tail": "0"},
                          timeout=httpx.Timeout(10, read=10)) as stream:
            lines = stream.iter_lines()
            first, second = int(next(lines).split()[1]), int(next(lines).split()[1])
            assert second == first + 1
        ran = httpx.post(f"{url}/exec", json={"command": ["hostname"]}, timeout=30)
        assert ran.status_code == 200, ran.text
        assert ran.json()["exit_code"] == 0 and ran.json()["output"] == task.id.replace(".", "-") + "\n"
    wait_for(lambda: not list(multihost.store._client.scan_iter(f"{multihost.store._keys.prefix}:reply:*")),
             timeout=15, what="every reply deleted")
