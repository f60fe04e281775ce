"""The node agent's health checks: one thread per running replica of this node whose service has one.

A monitor thread looks at the task records every POLL seconds and keeps one checker thread per
(task, gen, container); checks never run on the job thread, so they never delay the node's queue.

Where http and tcp checks connect, by network mode:
- bridge (every service with a `network`, the default): the container's own address on its
  network, from inspect, at the check's port (a container port; it need not be published). Linux
  routes the host to its bridge networks, so this works whether or not the port is published.
- host: 127.0.0.1 at the check's port (the container shares the node's network).
- none: nothing outside reaches the container, so the check runs inside it with `docker exec`:
  `wget` for http and `nc` for tcp (the image must have them; busybox does).

Only changes of health are written to the task (with the check's output). A replica that turns
unhealthy is reported FAILED with reason `unhealthy: <output>` and its container is stopped; the
scheduler then replaces it like any failed replica (restart back-off applies).
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time

from shared.config import HealthCheck, HealthCheckType, NetworkMode, ServiceSpec
from shared.records import Health, TaskRecord, TaskState
from worker.engine import EngineError, container_address, container_gen, container_incarnation
from worker.health_state import HealthState, observe
from worker.loops import repeat
from worker.node import Node

log = logging.getLogger("rq.worker.gorchester")

POLL = 0.5  # seconds between looks at the task records for replicas to check
FIRST_CHECK_AFTER = 1.0  # the first check comes after min(interval, this): a fresh replica is ready soon
OUTPUT_LIMIT = 200
EXEC_OUTPUT_BYTES = 4096  # of a command check's output, the last ones are kept (then OUTPUT_LIMIT characters)


def http_probe(host: str, port: int, path: str, timeout: float) -> tuple[bool, str]:
    """GET path; 2xx and 3xx pass (redirects are not followed)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "gorchester-health-check"})
        response = conn.getresponse()
        response.read(1024)
        return 200 <= response.status < 400, f"GET {path}: HTTP {response.status}"
    except (OSError, http.client.HTTPException) as exc:
        return False, f"GET http://{host}:{port}{path}: {exc or type(exc).__name__}"
    finally:
        conn.close()


def tcp_probe(host: str, port: int, timeout: float) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"connected to {host}:{port}"
    except OSError as exc:
        return False, f"connect {host}:{port}: {exc}"


def inside_argv(check: HealthCheck, timeout: int) -> list[str]:
    """The probe run inside a container that has no network reachable from the node."""
    assert check.port is not None
    if check.inferred_type() is HealthCheckType.HTTP:
        # No `-T`: busybox 1.35's wget crashes with it; the exec has its own timeout anyway.
        return ["wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{check.port}{check.http_path}"]
    return ["sh", "-c", f"nc -w {timeout} 127.0.0.1 {check.port} </dev/null"]


class Checker:
    """Checks one replica (a task at one gen in one container) until stopped or unhealthy."""

    def __init__(self, node: Node, task: TaskRecord, spec: ServiceSpec):
        assert spec.health_check is not None and task.container_id is not None
        self.node = node
        self.task_id = task.id
        self.gen = task.gen
        self.incarnation = task.incarnation
        self.container_id = task.container_id
        self.key = (task.gen, task.container_id)
        self.check = spec.health_check
        self.network_mode = spec.network_mode
        self.address = task.address
        start = task.health if task.health in (Health.STARTING, Health.HEALTHY) else Health.STARTING
        self.state = HealthState(start, 0, task.health_output or "")
        self.stopping = threading.Event()
        self.done = False
        self.thread = threading.Thread(target=self.run, name=f"health-{task.id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        try:
            delay: float = min(self.check.interval, FIRST_CHECK_AFTER)
            while not self.stopping.wait(delay):
                began = time.monotonic()
                ok, output = self.probe()
                new = observe(self.state, ok, output[:OUTPUT_LIMIT], self.check.retries)
                if new.health is not self.state.health and not self.stopping.is_set() and not self.publish(new):
                    return  # the decision moved on (new gen, stopped): not ours to check any more
                self.state = new
                if new.health is Health.UNHEALTHY:
                    return
                delay = max(self.check.interval - (time.monotonic() - began), 0.0)
        except Exception:  # noqa: BLE001 - a checker dying must not take the agent with it; the monitor restarts it
            log.warning("health check of %s gen %s failed", self.task_id, self.gen, exc_info=True)
        finally:
            self.done = True

    def probe(self) -> tuple[bool, str]:
        check = self.check
        timeout = check.effective_timeout()
        kind = check.inferred_type()
        try:
            if kind is HealthCheckType.COMMAND:
                assert check.command is not None
                return self._exec(check.command, timeout)
            assert check.port is not None
            host = self._host()
            if host is None:
                return self._exec(inside_argv(check, timeout), timeout)
            if kind is HealthCheckType.HTTP:
                assert check.http_path is not None
                return http_probe(host, check.port, check.http_path, timeout)
            return tcp_probe(host, check.port, timeout)
        except EngineError as exc:
            return False, str(exc)

    def _exec(self, argv: list[str], timeout: int) -> tuple[bool, str]:
        result = self.node.engine.exec(self.container_id, argv, timeout, limit=EXEC_OUTPUT_BYTES)
        text = result.output.decode(errors="replace").strip()
        if result.exit_code is None:
            return False, f"timed out after {timeout:g}s"
        return result.exit_code == 0, text or f"exit code {result.exit_code}"

    def _host(self) -> str | None:
        if self.network_mode is NetworkMode.HOST:
            return "127.0.0.1"
        if self.network_mode is NetworkMode.NONE:
            return None
        if self.address is None:
            self.address = container_address(self.node.engine.inspect(self.container_id) or {})
        return self.address

    def publish(self, state: HealthState) -> bool:
        """Write a change of health; unhealthy fails the task and stops its container."""
        if state.health is not Health.UNHEALTHY:
            written = self.node.report(
                self.task_id, self.gen, incarnation=self.incarnation, when=TaskState.RUNNING,
                health=state.health, health_output=state.output,
            )
            return written is not None
        log.warning("%s gen %s unhealthy: %s", self.task_id, self.gen, state.output)
        written = self.node.report(
            self.task_id, self.gen, incarnation=self.incarnation, when=TaskState.RUNNING,
            state=TaskState.FAILED, health=Health.UNHEALTHY, health_output=state.output,
            reason=f"unhealthy: {state.output}", exit_code=None, finished_at=time.time(),
        )
        if written is None:
            return False
        try:
            for container in self.node.engine.containers({self.task_id}):
                if (container_gen(container), container_incarnation(container)) == (self.gen, self.incarnation):
                    self.node.engine.stop(container)
        except EngineError as exc:
            # The replacement's start job (or the sweep) removes it anyway.
            log.warning("stop unhealthy %s gen %s: %s", self.task_id, self.gen, exc)
        return True


class HealthMonitor:
    """Keeps one Checker per running replica of this node whose service has a health check."""

    def __init__(self, node: Node):
        self.node = node
        self.checkers: dict[str, Checker] = {}
        self.seen_revision: str | None = None  # the node's revision at the last full scan

    def run(self, stop: threading.Event) -> None:
        try:
            repeat(stop, POLL, self.scan, "health checks")
        finally:
            for checker in self.checkers.values():
                checker.stop()

    def wanted(self) -> dict[str, tuple[TaskRecord, ServiceSpec]]:
        running = [
            task for task in self.node.store.node_tasks(self.node.id).good.values()
            if task.node == self.node.id and task.state is TaskState.RUNNING and task.container_id is not None
        ]
        services = self.node.store.services_named({task.service for task in running})
        result: dict[str, tuple[TaskRecord, ServiceSpec]] = {}
        for task in running:
            service = services.get(task.service)
            if service is None:
                continue
            spec = service.spec_for(task.template)
            if spec.health_check is not None:
                result[task.id] = (task, spec)
        return result

    def scan(self) -> None:
        # Read the revision before the tasks: a write in between only makes the next scan look again. The
        # node's own: a health check is part of the template, so a change of it is a new gen on the node.
        revision = self.node.store.node_revision(self.node.id)
        unchanged = revision is not None and revision == self.seen_revision
        if unchanged and not any(checker.done for checker in self.checkers.values()):
            return  # nothing was written since the last scan, so the wanted checks are the same
        self.seen_revision = revision
        wanted = self.wanted()
        for task_id, checker in list(self.checkers.items()):
            current = wanted.get(task_id)
            if current is None or (current[0].gen, current[0].container_id) != checker.key or checker.done:
                checker.stop()
                del self.checkers[task_id]
        for task_id, (task, spec) in wanted.items():
            if task_id not in self.checkers:
                checker = Checker(self.node, task, spec)
                self.checkers[task_id] = checker
                checker.start()
